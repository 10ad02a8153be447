"""The Firestore adapter against the emulator: the races the in-memory store cannot show."""

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


def test_a_forced_backfill_is_not_skipped_when_the_task_changes_under_it(clean_stack: Any) -> None:
    """Defect (before): the worker finalizing a done task between the planner's read and its conditional write
    made the force fail its precondition, and the window was silently not re-exported."""
    client = firestore.Client(project="cdc-local")
    state = StateStore(client, "race_")
    task = Task("shop", "cdc-local:shop-pg", "shop", "orders", LOW, LOW.add(hours=1), state="done", uri="gs://b/o.csv")
    state.create_tasks([task])
    stale = state._tasks.document(task.id).get()
    state.mark_finalized(task)  # the worker's write lands between the read and the force
    assert state._force(stale, "backfill-1", task) is True
    forced = state.get_task(task.id)
    assert (forced.state, forced.generation, forced.force_token) == ("pending", 2, "backfill-1")
    assert state._force(state._tasks.document(task.id).get(), "backfill-1", task) is False  # once per token


def test_ranks_follow_the_latest_request_live_before_backfill(clean_stack: Any) -> None:
    client = firestore.Client(project="cdc-local")
    state = StateStore(client, "rank_")
    backfill = Task("shop", "cdc-local:shop-pg", "shop", "orders", LOW, LOW.add(hours=1), priority=1, backfill=True)
    state.create_tasks([backfill])
    live = Task("shop", "cdc-local:shop-pg", "shop", "orders", LOW, LOW.add(hours=1))
    state.create_tasks([live])  # a tick plans the same window live: promoted
    promoted = state.get_task(live.id)
    assert (promoted.priority, promoted.backfill) == (0, False)
    assert state._tasks.document(live.id).get().get("order_key").startswith("0|")
    state.mark_failed(promoted, {"code": "X"})
    state.create_tasks([backfill], force_token="bf-2")  # forced by a backfill: behind live work
    forced = state._tasks.document(live.id).get()
    assert (forced.get("priority"), forced.get("state"), forced.get("order_key")[:2]) == (1, "pending", "1|")


def test_a_holder_whose_lease_was_taken_changes_no_task(clean_stack: Any) -> None:
    """Lease epoch: every transition is conditional on the lease, in the same transaction. Defect (before): a holder
    back from a call that hung past its lease claimed and recorded tasks the new holder was working on."""
    client = firestore.Client(project="cdc-local")
    state = StateStore(client, "fence_")
    instance = "cdc-local:shop-pg"
    old = state.acquire_lease(instance, "m1/a", 60, LOW)
    state.create_tasks([Task("shop", instance, "shop", "orders", LOW, LOW.add(hours=1))])
    task = state.next_pending(instance)[0]
    new = state.acquire_lease(instance, "m2/b", 60, LOW.add(seconds=61))  # the old lease expired and was taken
    assert new.acquired and new.epoch > old.epoch
    with pytest.raises(LeaseLost):
        state.claim(task, uri="gs://b/o.csv", generation=1, now=LOW, fence=Fence(instance, "m1/a", old.epoch))
    assert state.get_task(task.id) == task  # unchanged
    assert not state.renew_lease(instance, "m1/a", 60, LOW.add(seconds=62))
    claimed = state.claim(task, uri="gs://b/o.csv", generation=1, now=LOW, fence=Fence(instance, "m2/b", new.epoch))
    assert claimed is not None and state.get_task(task.id) == claimed  # the write's update time is returned
    running = state.mark_running(claimed, "op-1", fence=Fence(instance, "m2/b", new.epoch))
    assert running is not None and running.operation == "op-1"
    assert state.mark_done(claimed, LOW, fence=Fence(instance, "m2/b", new.epoch)) is None  # stale version: refused
    state.release_lease(instance, "m2/b")
    assert not state.renew_lease(instance, "m2/b", 60, LOW.add(seconds=63))  # a released lease is not re-created


def test_live_chains_counts_the_unexpired_leases_with_one_count_query(clean_stack: Any) -> None:
    """What the call budget divides by (shared/app/budget.py): leases expired or handed over are not chains."""
    client = firestore.Client(project="cdc-local")
    state = StateStore(client, "budget_")
    assert state.live_chains(LOW) == 0
    for i in range(3):
        state.acquire_lease(f"cdc-local:pg-{i}", f"m{i}/a", 60, LOW)
    state.acquire_lease("cdc-local:pg-old", "m9/a", 60, LOW.subtract(minutes=5))  # expired
    state.hand_over_lease("cdc-local:pg-2", "m2/a", LOW)  # handed over: expires now
    assert state.live_chains(LOW) == 2
    assert state.live_chains(LOW.add(seconds=61)) == 0
