"""The task queue in Firestore: planning (idempotent creates, forced re-queues), reads, and the worker's
transitions, each conditional on the document's update time (one round trip; a concurrent change, such as a
forced backfill, makes the write fail instead of being lost)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any

import pendulum
from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from shared.app.lease import Fence
from shared.core.tasks import (
    FINISHED_STATES,
    OPEN_STATES,
    CreateResult,
    Task,
    TaskState,
    next_generation,
    rank_changes,
)
from shared.core.windows import ts_nodash

BATCH_SIZE = 400
_FORCE_ATTEMPTS = 5
"""Tasks per batched commit (Firestore allows 500 writes per commit)."""
_TIMESTAMP_FIELDS = ("low", "high", "not_before", "created_at", "submitted_at", "done_at")


def utc(value: datetime | None) -> pendulum.DateTime | None:
    """Firestore timestamps (aware datetimes) as UTC pendulum DateTimes."""
    return None if value is None else pendulum.instance(value).in_timezone("UTC")


def task_to_doc(task: Task) -> dict[str, Any]:
    doc = asdict(task)
    doc.pop("update_time")
    doc.update(kind=task.kind, order_key=task.order_key, window=ts_nodash(task.low))
    if doc["created_at"] is None:
        doc["created_at"] = firestore.SERVER_TIMESTAMP
    return doc


def task_from_snapshot(snap: Any) -> Task:
    doc = snap.to_dict()
    names = {f for f in Task.__dataclass_fields__ if f != "update_time"}
    values = {k: v for k, v in doc.items() if k in names}
    for key in _TIMESTAMP_FIELDS:
        values[key] = utc(values.get(key))
    return Task(**values, update_time=snap.update_time)


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class FirestoreTasks:
    """The `tasks` collection."""

    client: firestore.Client
    _tasks: Any
    check_fence: Callable[[Any, Fence], None]
    """From FirestoreLeases: the fence's check inside a transaction."""

    def create_tasks(self, tasks: Sequence[Task], *, force_token: str | None = None) -> CreateResult:
        """Create the tasks that do not exist yet; with `force_token`, re-queue finished ones once.

        Re-queuing bumps the generation, so the forced export writes to a new object. The token (the
        backfill message id) is stored on the task: a redelivered forced backfill changes nothing. A pending task
        planned again at a higher priority (a live window a backfill created first) is promoted; a forced one
        takes the forcing request's rank: a backfill never goes before live work, whoever wrote the document.
        """
        created = forced = existing = 0
        for chunk in _chunks(tasks, BATCH_SIZE):
            refs = [self._tasks.document(t.id) for t in chunk]
            snaps = {s.id: s for s in self.client.get_all(refs) if s.exists}
            batch = self.client.batch()
            missing = [(t, r) for t, r in zip(chunk, refs, strict=True) if t.id not in snaps]
            for task, ref in missing:
                # A task created by a forced backfill carries its token too: the redelivered request
                # must not force it again.
                batch.create(ref, {**task_to_doc(task), "force_token": force_token or task.force_token})
            if missing:
                self._commit_tolerating_races(batch, missing, force_token)
            created += len(missing)
            existing += len(snaps)
            if force_token:
                forced += sum(self._force(snaps[t.id], force_token, t) for t in chunk if t.id in snaps)
            else:
                for task in chunk:
                    if task.id in snaps:
                        self._promote(snaps[task.id], task)
        return CreateResult(created=created, forced=forced, existing=existing)

    def _promote(self, snap: Any, requested: Task) -> None:
        """A pending task queued again at a higher priority (live before backfill) takes that rank."""
        current = task_from_snapshot(snap)
        if current.state != "pending" or requested.priority >= current.priority:
            return
        with contextlib.suppress(gexc.FailedPrecondition):  # claimed meanwhile: it is running already
            snap.reference.update(
                rank_changes(current, requested), option=self.client.write_option(last_update_time=snap.update_time)
            )

    def _force(self, snap: Any, token: str, requested: Task) -> bool:
        """Re-queue a finished task once per token. A concurrent change (the worker finalizing it) makes the
        conditional update fail: read it again and retry, so a forced window is never silently skipped."""
        for _ in range(_FORCE_ATTEMPTS):
            current = task_from_snapshot(snap)
            if current.force_token == token or current.state not in FINISHED_STATES:
                return False
            try:
                snap.reference.update(
                    {
                        "state": "pending",
                        "generation": next_generation(current),
                        "attempts": 0,
                        "not_before": None,
                        "operation": None,
                        "uri": None,
                        "error": None,
                        "finalized": False,
                        "force_token": token,
                        "offload": requested.offload,
                        **rank_changes(current, requested),
                        "updated_at": firestore.SERVER_TIMESTAMP,
                    },
                    option=self.client.write_option(last_update_time=snap.update_time),
                )
            except gexc.FailedPrecondition:
                snap = snap.reference.get()
                continue
            return True
        raise gexc.Aborted(f"task {requested.id} kept changing while a forced backfill re-queued it")

    def _commit_tolerating_races(
        self, batch: Any, missing: Sequence[tuple[Task, Any]], force_token: str | None
    ) -> None:
        """Commit a batch of creates; if another planner raced us, create the rest one by one."""
        try:
            batch.commit()
        except (gexc.AlreadyExists, gexc.Conflict):
            for task, ref in missing:
                try:
                    ref.create({**task_to_doc(task), "force_token": force_token or task.force_token})
                except (gexc.AlreadyExists, gexc.Conflict):
                    continue

    def get_tasks(self, ids: Iterable[str]) -> dict[str, Task]:
        refs = [self._tasks.document(i) for i in ids]
        return {s.id: task_from_snapshot(s) for s in self.client.get_all(refs) if s.exists}

    def get_task(self, tid: str) -> Task | None:
        snap = self._tasks.document(tid).get()
        return task_from_snapshot(snap) if snap.exists else None

    def _query(self, **equals: Any) -> Any:
        query = self._tasks
        for name, value in equals.items():
            query = query.where(filter=FieldFilter(name, "==", value))
        return query

    def next_pending(self, instance: str, limit: int = 10) -> list[Task]:
        """The instance's pending tasks in queue order (callers check `not_before`)."""
        query = self._query(instance=instance, state="pending").order_by("order_key").limit(limit)
        return [task_from_snapshot(s) for s in query.stream()]

    def pending_from(self, instance: str, low: pendulum.DateTime, limit: int = 10) -> list[Task]:
        """The instance's first pending tasks whose window starts at or after `low` (its live windows, wherever
        queued), oldest window first then queue order; bounded, since every document read is billed."""
        query = self._query(instance=instance, state="pending").where(filter=FieldFilter("low", ">=", low))
        query = query.order_by("low").order_by("order_key").limit(limit)
        return [task_from_snapshot(s) for s in query.stream()]

    def tasks_in_state(self, state: TaskState, *, instance: str | None = None) -> list[Task]:
        query = self._query(state=state) if instance is None else self._query(instance=instance, state=state)
        return [task_from_snapshot(s) for s in query.stream()]

    def unfinalized(self, instance: str) -> list[Task]:
        """Tasks whose export is done but whose watermark/manifest bookkeeping may not have run."""
        query = self._query(instance=instance, state="done", finalized=False)
        return [task_from_snapshot(s) for s in query.stream()]

    def has_open_tasks(self, instance: str) -> bool:
        return any(next(iter(self._query(instance=instance, state=s).limit(1).stream()), None) for s in OPEN_STATES)

    def tasks_from(self, low: pendulum.DateTime) -> list[Task]:
        """Tasks whose window starts at or after `low` (a single-field range: no composite index needed)."""
        query = self._tasks.where(filter=FieldFilter("low", ">=", low))
        return [task_from_snapshot(s) for s in query.stream()]

    def all_tasks(self, *, source: str | None = None) -> list[Task]:
        query = self._tasks if source is None else self._query(source=source)
        return [task_from_snapshot(s) for s in query.stream()]

    def _transition(self, task: Task, changes: dict[str, Any], fence: Fence | None = None) -> Task | None:
        """Apply `changes` if nobody else changed the task since it was read; None if somebody did.

        With a fence, in one transaction with a read of the instance's lease: LeaseLost if it is not the fence's
        any more (one more read and round trip per transition, the price of a holder that can change nothing
        once its lease was taken, however long its calls hung).
        """
        ref = self._tasks.document(task.id)
        update = {**changes, "updated_at": firestore.SERVER_TIMESTAMP}
        option = self.client.write_option(last_update_time=task.update_time)
        try:
            if fence is None:
                update_time = ref.update(update, option=option).update_time
            else:
                transaction = self.client.transaction()

                @firestore.transactional
                def fenced(transaction: Any) -> None:
                    self.check_fence(transaction, fence)
                    transaction.update(ref, update, option=option)

                fenced(transaction)
                update_time = transaction.write_results[0].update_time
        except (gexc.FailedPrecondition, gexc.NotFound):
            return None
        values = {k: v for k, v in changes.items() if k in Task.__dataclass_fields__}
        fields = {**asdict(task), **values, "update_time": update_time}
        return Task(**fields)

    def claim(
        self, task: Task, *, uri: str, generation: int, now: pendulum.DateTime, fence: Fence | None = None
    ) -> Task | None:
        """pending -> submitting: reserve the export uri before the API call (crash recovery finds it)."""
        return self._transition(
            task,
            {
                "state": "submitting",
                "uri": uri,
                "generation": generation,
                "attempts": task.attempts + 1,
                "operation": None,
                "submitted_at": now,
            },
            fence,
        )

    def mark_running(self, task: Task, operation: str, *, fence: Fence | None = None) -> Task | None:
        return self._transition(task, {"state": "running", "operation": operation}, fence)

    def mark_done(self, task: Task, now: pendulum.DateTime, *, fence: Fence | None = None) -> Task | None:
        return self._transition(task, {"state": "done", "done_at": now, "finalized": False, "error": None}, fence)

    def mark_retry(
        self,
        task: Task,
        *,
        error: dict[str, Any] | None,
        not_before: pendulum.DateTime,
        generation: int,
        refund: bool = False,
        fence: Fence | None = None,
    ) -> Task | None:
        """running/submitting -> pending; `refund` gives back the attempt the claim counted."""
        return self._transition(
            task,
            {
                "state": "pending",
                "error": error,
                "not_before": not_before,
                "generation": generation,
                "operation": None,
                "attempts": max(0, task.attempts - 1) if refund else task.attempts,
            },
            fence,
        )

    def mark_failed(self, task: Task, error: dict[str, Any], *, fence: Fence | None = None) -> Task | None:
        return self._transition(task, {"state": "failed", "error": error}, fence)

    def mark_finalized(self, task: Task) -> None:
        self._tasks.document(task.id).update({"finalized": True})

    def requeue_failed(self, ids: Iterable[str] | None = None) -> list[str]:
        """failed -> pending (attempts reset); returns the ids re-queued. Used by operators."""
        tasks = self.get_tasks(ids).values() if ids is not None else self.tasks_in_state("failed")
        requeued = []
        for task in tasks:
            if task.state != "failed":
                continue
            changes = {
                "state": "pending",
                "attempts": 0,
                "not_before": None,
                "generation": next_generation(task),
            }
            if self._transition(task, changes) is not None:
                requeued.append(task.id)
        return requeued
