"""Planning against the Firestore emulator: create-only writes, so a redelivered plan reads nothing and changes
nothing, and a plan that meets existing documents creates only the missing ones."""

from __future__ import annotations

from typing import Any

import pendulum
import pytest
from google.cloud import firestore

from shared.adapters.firestore_state import StateStore
from shared.core.tasks import BACKFILL_PRIORITY, LIVE_PRIORITY, Task

pytestmark = pytest.mark.stack

LOW = pendulum.datetime(2026, 1, 1, tz="UTC")
INSTANCE = "cdc-local:shop-pg"


def _tasks(windows: int, tables: tuple[str | None, ...], priority: int = BACKFILL_PRIORITY) -> list[Task]:
    return [
        Task("shop", INSTANCE, "shop", table, LOW.add(hours=h), LOW.add(hours=h + 1), priority=priority,
             backfill=priority == BACKFILL_PRIORITY)
        for h in range(windows)
        for table in tables
    ]  # fmt: skip


class _CountingReads:
    """The client, counting the documents planning reads (get_all) by id."""

    def __init__(self, client: firestore.Client) -> None:
        self._client = client
        self.read_ids: list[str] = []

    def get_all(self, refs: Any, *args: Any, **kwargs: Any) -> Any:
        refs = list(refs)
        self.read_ids.extend(r.id for r in refs)
        return self._client.get_all(refs, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def _store(prefix: str) -> tuple[StateStore, _CountingReads]:
    client = firestore.Client(project="cdc-local")
    state = StateStore(client, prefix)
    spy = _CountingReads(client)
    state.client = spy  # type: ignore[assignment]
    return state, spy


def test_a_redelivered_backfill_reads_no_document_and_changes_none(clean_stack: Any) -> None:
    """Defect (before): planning read every task by id before writing (36,720 reads for the load run's backfill,
    and as many again on each redelivery)."""
    state, spy = _store("redeliver_")
    tasks = _tasks(30, (None, "orders", "payments"))
    first = state.create_tasks(tasks)
    assert (first.created, first.existing, first.reads) == (90, 0, 0)
    claimed = state.claim(state.next_pending(INSTANCE)[0], uri="gs://b/o.csv", generation=1, now=LOW)
    assert claimed is not None
    before = {s.id: s.update_time for s in state._tasks.stream()}

    again = state.create_tasks(tasks)

    assert (again.created, again.existing, again.forced, again.reads) == (0, 90, 0, 0)
    assert spy.read_ids == []
    assert {s.id: s.update_time for s in state._tasks.stream()} == before
    assert state.get_task(claimed.id) == claimed  # its state, attempts and uri are kept


def test_a_plan_meeting_existing_documents_creates_only_the_missing_ones(clean_stack: Any) -> None:
    state, _ = _store("partial_")
    tasks = _tasks(4, ("orders",))
    state.create_tasks(tasks[1:3])
    done = state.get_task(tasks[1].id)
    assert done is not None
    state.mark_done(done, LOW)
    kept = {t.id: state.get_task(t.id) for t in tasks[1:3]}

    result = state.create_tasks(tasks)

    assert (result.created, result.existing, result.reads) == (2, 2, 0)
    assert {t.id: state.get_task(t.id) for t in tasks[1:3]} == kept
    assert {t.id for t in state.all_tasks()} == {t.id for t in tasks}


def test_a_live_plan_reads_only_the_tasks_that_existed_and_promotes_them(clean_stack: Any) -> None:
    state, spy = _store("promote_")
    state.create_tasks(_tasks(2, ("orders",)))  # a backfill queued them first
    live = _tasks(3, ("orders",), priority=LIVE_PRIORITY)

    result = state.create_tasks(live)

    assert (result.created, result.existing) == (1, 2)
    assert sorted(spy.read_ids) == sorted(t.id for t in live[:2])  # the created one is not read
    assert {(t.priority, t.backfill) for t in state.all_tasks()} == {(LIVE_PRIORITY, False)}


def test_a_new_task_document_leaves_out_its_default_fields_and_reads_back_whole(clean_stack: Any) -> None:
    """Planning writes only what differs from a task's defaults (a smaller document costs fewer index entries); the
    reader fills the rest in, the transitions add fields as they go, and the queries find the same tasks."""
    state, _ = _store("slim_")
    live, schema = _tasks(1, ("orders", None), priority=LIVE_PRIORITY)
    state.create_tasks([live, schema])

    stored = state._tasks.document(live.id).get().to_dict()
    left_out = {"attempts", "generation", "error", "uri", "not_before", "backfill", "priority", "kind", "window"}
    assert left_out.isdisjoint(stored)
    assert (stored["state"], stored["finalized"], stored["order_key"]) == ("pending", False, live.order_key)
    assert state._tasks.document(schema.id).get().to_dict()["table"] is None  # a required field, kept
    read = state.get_task(live.id)
    assert read is not None and (read.attempts, read.generation, read.error, read.priority) == (0, 1, None, 0)
    assert read.created_at is not None  # the server's time of the create
    assert state.tasks_to_show() == []  # no `error` field: not a task with an error

    claimed = state.claim(read, uri="gs://b/o.csv", generation=1, now=LOW)
    assert claimed is not None
    retry = state.mark_retry(claimed, error={"code": "X", "message": "boom"}, not_before=LOW, generation=2)
    assert retry is not None and state.get_task(live.id) == retry
    assert [t.id for t in state.tasks_to_show()] == [live.id]
    assert [t.id for t in state.next_pending(INSTANCE)] == [schema.id, live.id]


def test_status_finds_tasks_in_flight_that_never_carried_an_error(clean_stack: Any) -> None:
    """Defect (with the one OR query it replaces): `error != null OR state in flight` is ordered by `error` in every
    branch, so an in-flight task whose document has no `error` field (every new task's) was not shown."""
    state, _ = _store("flight_")
    tasks = _tasks(2, ("orders",), priority=LIVE_PRIORITY)
    state.create_tasks(tasks)
    first, second = (state.get_task(t.id) for t in tasks)
    assert first is not None and second is not None
    submitting = state.claim(first, uri="gs://b/a.csv", generation=1, now=LOW)
    claimed = state.claim(second, uri="gs://b/b.csv", generation=1, now=LOW)
    assert submitting is not None and claimed is not None
    running = state.mark_running(claimed, "op-1")
    assert running is not None

    shown = {t.id: t for t in state.tasks_to_show()}

    assert shown == {submitting.id: submitting, running.id: running}
