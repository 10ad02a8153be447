"""The pack claim on the Firestore emulator (shared/adapters/firestore_tasks.claim_pack): one batched write with an
update-time precondition per task, so a pack is claimed whole or not at all."""

from __future__ import annotations

from typing import Any

import pendulum
import pytest
from google.cloud import firestore

from shared.adapters.firestore_state import StateStore
from shared.app.lease import Fence
from shared.core.errors import LeaseLost
from shared.core.tasks import Task

pytestmark = pytest.mark.stack

LOW = pendulum.datetime(2026, 1, 1, tz="UTC")


def windows(n: int) -> list[Task]:
    return [
        Task("shop", "cdc-local:shop-pg", "shop", "orders", LOW.add(hours=h), LOW.add(hours=h + 1), priority=1)
        for h in range(n)
    ]


def test_a_pack_is_claimed_whole_or_not_at_all(clean_stack: Any) -> None:
    state = StateStore(firestore.Client(project="cdc-local"), "packs_")
    state.create_tasks(windows(3))
    read = [state.get_task(t.id) for t in windows(3)]
    state.mark_failed(read[1], {"code": "X"})  # changed after the chain read it
    uris = [f"gs://b/{i}.csv" for i in range(3)]
    assert state.claim_pack(read, uris=uris, generations=[1, 1, 1], pack_uri="gs://b/p.csv", now=LOW) is None
    after = [state.get_task(t.id) for t in windows(3)]
    assert [t.state for t in after] == ["pending", "failed", "pending"]  # nothing claimed
    assert all(t.pack_uri is None and t.attempts == 0 for t in after)

    fresh = [after[0], after[2]]
    claimed = state.claim_pack(fresh, uris=uris[:2], generations=[1, 2], pack_uri="gs://b/p.csv", now=LOW)
    assert claimed is not None
    stored = [state.get_task(t.id) for t in fresh]
    assert [(t.state, t.uri, t.generation, t.attempts, t.pack_uri, t.pack_ids) for t in stored] == [
        ("submitting", uris[0], 1, 1, "gs://b/p.csv", [t.id for t in fresh]),
        ("submitting", uris[1], 2, 1, "gs://b/p.csv", [t.id for t in fresh]),
    ]
    assert [t.update_time for t in claimed] == [t.update_time for t in stored]  # the next transition's precondition
    assert state.mark_running(claimed[0], "op-1") is not None

    # Claimed alone (pack_uri None): what an earlier pack left on the task is cleared.
    retried = state.mark_retry(stored[1], error={"pack": "gs://b/p.csv"}, not_before=LOW, generation=2)
    [alone] = state.claim_pack([retried], uris=[uris[1]], generations=[2], pack_uri=None, now=LOW)  # type: ignore[list-item]
    assert (alone.pack_uri, alone.pack_ids, alone.attempts) == (None, None, 2)
    assert state.get_task(alone.id).pack_uri is None  # type: ignore[union-attr]


def test_a_pack_claim_is_fenced_by_the_lease(clean_stack: Any) -> None:
    """A holder whose lease was taken claims nothing: the fence is read in the same transaction as the claim."""
    state = StateStore(firestore.Client(project="cdc-local"), "packfence_")
    state.create_tasks(windows(2))
    read = [state.get_task(t.id) for t in windows(2)]
    lease = state.acquire_lease("cdc-local:shop-pg", "holder/1", 60, pendulum.now("UTC"))
    assert lease.acquired
    stale = Fence("cdc-local:shop-pg", "holder/1", lease.epoch - 1)  # the epoch of an earlier takeover
    uris = ["gs://b/0.csv", "gs://b/1.csv"]
    with pytest.raises(LeaseLost):
        state.claim_pack(read, uris=uris, generations=[1, 1], pack_uri="gs://b/p.csv", now=LOW, fence=stale)
    assert [state.get_task(t.id).state for t in windows(2)] == ["pending", "pending"]  # type: ignore[union-attr]
    current = Fence("cdc-local:shop-pg", "holder/1", lease.epoch)
    claimed = state.claim_pack(read, uris=uris, generations=[1, 1], pack_uri="gs://b/p.csv", now=LOW, fence=current)
    assert claimed is not None and [t.state for t in claimed] == ["submitting", "submitting"]


def test_a_split_packs_windows_are_marked_done_in_one_fenced_commit_with_their_facts(clean_stack: Any) -> None:
    """mark_pack_done: one transaction (the lease read, then an update per window with its update-time precondition),
    all or none; each window keeps the facts of its object for the manifest."""
    state = StateStore(firestore.Client(project="cdc-local"), "packdone_")
    state.create_tasks(windows(3))
    lease = state.acquire_lease("cdc-local:shop-pg", "holder/1", 60, pendulum.now("UTC"))
    fence = Fence("cdc-local:shop-pg", "holder/1", lease.epoch)
    read = [state.get_task(t.id) for t in windows(3)]
    uris = [f"gs://b/{i}.csv" for i in range(3)]
    claimed = state.claim_pack(read, uris=uris, generations=[1, 1, 1], pack_uri="gs://b/p.csv", now=LOW, fence=fence)
    assert claimed is not None
    facts = [{"uri": u, "bytes": 10 + i, "rows": i, "crc32c": "AAAAAA==", "md5": f"m{i}"} for i, u in enumerate(uris)]
    with pytest.raises(LeaseLost):
        state.mark_pack_done(claimed, facts, LOW, fence=Fence("cdc-local:shop-pg", "holder/1", lease.epoch - 1))
    changed = state.mark_running(claimed[1], "op-1", fence=fence)  # changed after the chain read it
    assert state.mark_pack_done(claimed, facts, LOW, fence=fence) is None
    assert [state.get_task(t.id).state for t in claimed] == ["submitting", "running", "submitting"]  # type: ignore[union-attr]
    done = state.mark_pack_done([claimed[0], changed, claimed[2]], facts, LOW, fence=fence)  # type: ignore[list-item]
    assert done is not None
    stored = [state.get_task(t.id) for t in claimed]
    assert [(t.state, t.facts, t.finalized, t.done_at) for t in stored] == [  # type: ignore[union-attr]
        ("done", f, False, LOW) for f in facts
    ]
    assert [t.update_time for t in done] == [t.update_time for t in stored]  # type: ignore[union-attr]
