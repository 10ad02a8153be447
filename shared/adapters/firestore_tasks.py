"""The task queue in Firestore: planning (idempotent creates, forced re-queues), reads, and the worker's
transitions, each conditional on the document's update time (one round trip; a concurrent change, such as a
forced backfill, makes the write fail instead of being lost)."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from datetime import datetime
from typing import Any

import pendulum
from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from shared.adapters.firestore_bulk import WritePacer, create_all
from shared.app.lease import Fence
from shared.core.config import MAX_PACK_WINDOWS
from shared.core.tasks import (
    FINISHED_STATES,
    IN_FLIGHT_STATES,
    OPEN_STATES,
    CreateResult,
    Task,
    TaskState,
    may_promote,
    next_generation,
    rank_changes,
)

BATCH_SIZE = 400
"""Documents per batched read (get_all) of tasks that existed when planned again."""
_FORCE_ATTEMPTS = 5
_QUERIED_WITH_EQUALITY = frozenset({"state", "finalized"})
"""Fields a query compares with `==`: a document without the field would not match, so they are always written."""
_DEFAULTS = {
    f.name: f.default
    for f in dataclasses.fields(Task)
    if f.default is not dataclasses.MISSING and f.name not in _QUERIED_WITH_EQUALITY
}
"""Fields a new task document leaves out while they hold their default (None, 0, False, 1, "export"): the decoder
(`task_from_snapshot`) reads a missing field as the dataclass default, and a query on `error != null` skips a
document without `error` as it skips one where it is null. A smaller document is fewer index entries per create
(Firestore indexes every field) and a third less of the emulator's CPU per create (measured: the load run's 36,720
tasks). Derived values (`kind`, `window`: the table and the window's start say them) are not stored either; the
queue order (`order_key`) is, since the queries order by it."""
_KEEP = object()
"""No field's default: `_DEFAULTS.get(name, _KEEP)` is never a task's value."""
MAX_COMMIT_WRITES = MAX_PACK_WINDOWS
"""Writes one Firestore commit or transaction may hold (500, documented in Firestore's quotas and limits): the cap
on `worker.pack.max_windows`."""
_TIMESTAMP_FIELDS = ("low", "high", "not_before", "created_at", "submitted_at", "done_at")


def utc(value: datetime | None) -> pendulum.DateTime | None:
    """Firestore timestamps (aware datetimes) as UTC pendulum DateTimes."""
    return None if value is None else pendulum.instance(value).in_timezone("UTC")


def task_to_doc(task: Task, *, force_token: str | None = None) -> dict[str, Any]:
    """The task's document, without the fields that still hold their default object (see `_DEFAULTS`; an identity
    test: a value equal to the default but of another type, such as 0 for False, is written). A shallow copy:
    `dataclasses.asdict` deep-copies every window bound, a third of the planner's time on a long backfill.
    `force_token`, when given, replaces the task's own (the forcing request's token)."""
    doc = {name: value for name, value in vars(task).items() if value is not _DEFAULTS.get(name, _KEEP)}
    doc.pop("update_time", None)  # the store's version of the document, not a field of it
    doc["order_key"] = task.order_key
    if force_token is not None:
        doc["force_token"] = force_token
    if doc.get("created_at") is None:
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
    writes_per_second: float | None = None
    """Pace of planning's creates (None: unpaced); set from the configuration by the StateStore."""

    def create_tasks(self, tasks: Sequence[Task], *, force_token: str | None = None) -> CreateResult:
        """Create the tasks that do not exist yet; with `force_token`, re-queue finished ones once.

        Create-only writes (`exists: false`) in non-atomic batches (firestore_bulk.py): a document that exists
        answers ALREADY_EXISTS and is left as it is, so a redelivered plan reads nothing and changes nothing. Only
        the documents that existed are read, and only when the request may change them: a forced backfill, or a
        rank above the lowest (a live window a backfill created first is promoted).

        Re-queuing bumps the generation, so the forced export writes to a new object. The token (the
        backfill message id) is stored on the task: a redelivered forced backfill changes nothing. A pending task
        planned again at a higher priority (a live window a backfill created first) is promoted; a forced one
        takes the forcing request's rank: a backfill never goes before live work, whoever wrote the document.
        """
        pacer = WritePacer(self.writes_per_second) if self.writes_per_second else None
        ids = [t.id for t in tasks]
        documents = (
            # A task created by a forced backfill carries its token too: the redelivered request must not force it.
            (self._tasks.document(tid), task_to_doc(t, force_token=force_token))
            for tid, t in zip(ids, tasks, strict=True)
        )
        outcome = create_all(self.client, documents, pacer=pacer)
        existed = set(outcome.existed)
        again = [
            t for tid, t in zip(ids, tasks, strict=True) if tid in existed and (force_token or may_promote(t))
        ] if existed else []  # fmt: skip
        forced = reads = writes = 0
        for chunk in _chunks(list({t.id: t for t in again}.values()), BATCH_SIZE):
            snaps = {s.id: s for s in self.client.get_all([self._tasks.document(t.id) for t in chunk]) if s.exists}
            reads += len(chunk)
            for task in chunk:
                if task.id not in snaps:
                    continue
                if force_token:
                    changed = self._force(snaps[task.id], force_token, task)
                    forced += changed
                else:
                    changed = self._promote(snaps[task.id], task)
                writes += changed
        return CreateResult(
            created=len(outcome.created),
            forced=forced,
            existing=len(outcome.existed),
            reads=reads,
            writes=outcome.writes + writes,
        )

    def _promote(self, snap: Any, requested: Task) -> bool:
        """A pending task queued again at a higher priority (live before backfill) takes that rank."""
        current = task_from_snapshot(snap)
        if current.state != "pending" or requested.priority >= current.priority:
            return False
        with contextlib.suppress(gexc.FailedPrecondition):  # claimed meanwhile: it is running already
            snap.reference.update(
                rank_changes(current, requested), option=self.client.write_option(last_update_time=snap.update_time)
            )
        return True

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

    def count_tasks(self, state: TaskState, *, source: str) -> int:
        """How many of the source's tasks are in `state`: a count aggregation (no document is read; Firestore
        bills one read per 1,000 index entries counted)."""
        (result,) = self._query(source=source, state=state).count(alias="n").get()
        return int(result[0].value)

    def tasks_to_show(self) -> list[Task]:
        """Tasks that carry an error (failed, or pending a retry) or whose export is in flight: two single-purpose
        queries, run at once.

        Not one OR: an inequality's implicit order applies to every branch of a disjunction, so `error != null OR
        state == running` drops every document without an `error` field (new task documents have none), in
        Firestore as in the emulator (confirmed: the Firebase SDKs' query matcher, "for OR queries, orderBy applies
        to all disjunction terms", firebase-android-sdk core/Query.java; measured on the emulator).

        - `error != null`: the automatic single-field index; a document without `error` has none to show.
        - in flight: `state in (submitting, running)` ordered by `submitted_at`, which every claim writes (claim,
          claim_pack) and nothing clears, so no in-flight task is missing from it; it needs the composite index
          (state, submitted_at) in terraform/firestore.tf. The order limits the emulator's scan to the tasks ever
          claimed (it walks only documents that hold the order's field), not the whole queue."""
        with_error = self._tasks.where(filter=FieldFilter("error", "!=", None))
        in_flight = self._tasks.where(filter=FieldFilter("state", "in", list(IN_FLIGHT_STATES))).order_by(
            "submitted_at"
        )
        with ThreadPoolExecutor(max_workers=2) as pool:
            found = list(pool.map(lambda query: list(query.stream()), (with_error, in_flight)))
        snaps = {snap.id: snap for snap in itertools.chain.from_iterable(found)}
        return [task_from_snapshot(snap) for snap in snaps.values()]

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

    def claim_pack(
        self,
        tasks: Sequence[Task],
        *,
        uris: Sequence[str],
        generations: Sequence[int],
        pack_uri: str | None,
        now: pendulum.DateTime,
        fence: Fence | None = None,
    ) -> list[Task] | None:
        """pending -> submitting for every window of a pack in one commit: each update carries its document's update
        time as a precondition and a commit is atomic, so a window changed meanwhile claims none. With a fence, the
        commit is a transaction that also reads the instance's lease (LeaseLost if it is not the fence's any more)."""
        ids = [t.id for t in tasks]
        changes = [
            {
                "state": "submitting",
                "uri": uri,
                "generation": generation,
                "attempts": task.attempts + 1,
                "operation": None,
                "submitted_at": now,
                "pack_uri": pack_uri,
                "pack_ids": ids if pack_uri else None,
            }
            for task, uri, generation in zip(tasks, uris, generations, strict=True)
        ]
        return self._update_all(tasks, changes, firestore.SERVER_TIMESTAMP, fence)

    def mark_pack_done(
        self,
        tasks: Sequence[Task],
        facts: Sequence[dict[str, Any]],
        now: pendulum.DateTime,
        *,
        fence: Fence | None = None,
    ) -> list[Task] | None:
        """running/submitting -> done for every window of a split pack in one commit (with a fence: a transaction
        that also reads the lease), each update conditional on its document's update time: all or none.

        One commit holds at most MAX_COMMIT_WRITES writes (Firestore's documented limit for a commit or a
        transaction); `updated_at` is the chain's clock rather than a server-timestamp transform, so each window is
        exactly one write and a pack of `worker.pack.max_windows` (at most 500) windows is one commit."""
        if len(tasks) > MAX_COMMIT_WRITES:
            raise ValueError(
                f"a pack of {len(tasks)} windows is more than one Firestore commit holds ({MAX_COMMIT_WRITES}); "
                "worker.pack.max_windows is capped at 500"
            )
        changes = [
            {"state": "done", "done_at": now, "finalized": False, "error": None, "facts": dict(fact)} for fact in facts
        ]
        return self._update_all(tasks, changes, now, fence)

    def _update_all(
        self, tasks: Sequence[Task], changes: Sequence[dict[str, Any]], updated_at: Any, fence: Fence | None
    ) -> list[Task] | None:
        """Apply each task's change in one commit, each conditional on its document's update time: all or none
        (None when a document changed or vanished meanwhile)."""

        def write(writer: Any) -> None:
            for task, change in zip(tasks, changes, strict=True):
                writer.update(
                    self._tasks.document(task.id),
                    {**change, "updated_at": updated_at},
                    option=self.client.write_option(last_update_time=task.update_time),
                )

        try:
            results = self._commit(write, fence)
        except (gexc.FailedPrecondition, gexc.NotFound):
            return None
        return [
            Task(**{**asdict(task), **change, "update_time": result.update_time})
            for task, change, result in zip(tasks, changes, results, strict=True)
        ]

    def _commit(self, write: Callable[[Any], None], fence: Fence | None) -> list[Any]:
        """Run `write` in one commit: a batch, or with a fence a transaction that reads the lease first."""
        if fence is None:
            batch = self.client.batch()
            write(batch)
            return list(batch.commit())
        transaction = self.client.transaction()

        @firestore.transactional
        def fenced(transaction: Any) -> None:
            self.check_fence(transaction, fence)
            write(transaction)

        fenced(transaction)
        return list(transaction.write_results)

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
