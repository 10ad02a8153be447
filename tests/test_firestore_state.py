"""The Firestore adapter against the emulator: the races the in-memory store cannot show."""

from __future__ import annotations

from typing import Any

import pendulum
import pytest
from google.cloud import firestore

from shared.adapters.firestore_state import StateStore
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
