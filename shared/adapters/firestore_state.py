"""Pipeline state in Firestore: the task queue, watermarks, planning cursors, leases and manifests.

This is the only module that touches Firestore. Collections (names carry the configured prefix):

- `tasks`: one document per (source, window, schema | table), id `<source>.<ts_nodash>.schema` or
  `<source>.<ts_nodash>.table.<name>`, so planning twice creates nothing new.
- `watermarks`: per (source, table): the end of the contiguous run of exported windows, and
  `watermark_log`: one document per advance (from, to, at), the audit trail of every move.
- `cursors`: per source: `planned_through`, the end of the last live window the planner queued.
- `leases`: per instance: the worker chain holding it, its expiry and last heartbeat.
- `manifests`: per (source, window): what landed in the bucket for a complete window.

State changes on a task that a worker owns (claim, running, done, retry) use an update precondition on
the snapshot's update time instead of a transaction: one round trip, and a concurrent change (a forced
backfill) makes the write fail rather than be lost.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

import pendulum
from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from shared.windows import Window

TaskState = Literal["pending", "submitting", "running", "done", "failed"]
TaskKind = Literal["schema", "table"]
OPEN_STATES: tuple[TaskState, ...] = ("pending", "submitting", "running")
LIVE_PRIORITY = 0
BACKFILL_PRIORITY = 1
_BATCH_SIZE = 400
_WATERMARK_WALK_LIMIT = 500


def utc(value: datetime | None) -> pendulum.DateTime | None:
    """Firestore timestamps (aware datetimes) as UTC pendulum DateTimes."""
    return None if value is None else pendulum.instance(value).in_timezone("UTC")


def task_id(source: str, window_low: pendulum.DateTime, table: str | None) -> str:
    """Deterministic task id; `table` None is the window's schema task."""
    ts = window_low.strftime("%Y%m%dT%H%M%S")
    return f"{source}.{ts}.schema" if table is None else f"{source}.{ts}.table.{table}"


@dataclass
class Task:
    """One export of one table (or the schema) for one window of one source."""

    source: str
    instance: str
    database: str
    table: str | None
    low: pendulum.DateTime
    high: pendulum.DateTime
    priority: int = LIVE_PRIORITY
    state: TaskState = "pending"
    backfill: bool = False
    offload: bool = False
    attempts: int = 0
    generation: int = 1
    not_before: pendulum.DateTime | None = None
    operation: str | None = None
    uri: str | None = None
    error: dict[str, Any] | None = None
    force_token: str | None = None
    finalized: bool = False
    created_at: pendulum.DateTime | None = None
    submitted_at: pendulum.DateTime | None = None
    done_at: pendulum.DateTime | None = None
    update_time: Any = field(default=None, compare=False, repr=False)

    @property
    def id(self) -> str:
        return task_id(self.source, self.low, self.table)

    @property
    def kind(self) -> TaskKind:
        return "schema" if self.table is None else "table"

    @property
    def window(self) -> Window:
        return Window(self.low, self.high)

    @property
    def order_key(self) -> str:
        """Priority first (live before backfill), then oldest window, then the schema before tables."""
        table_part = "0" if self.table is None else f"1{self.table}"
        return f"{self.priority}|{self.low.strftime('%Y%m%dT%H%M%S')}|{self.source}|{table_part}"

    def to_doc(self) -> dict[str, Any]:
        doc = asdict(self)
        doc.pop("update_time")
        doc.update(kind=self.kind, order_key=self.order_key, window=self.low.strftime("%Y%m%dT%H%M%S"))
        if doc["created_at"] is None:
            doc["created_at"] = firestore.SERVER_TIMESTAMP
        return doc

    @classmethod
    def from_snapshot(cls, snap: Any) -> Task:
        doc = snap.to_dict()
        names = {f for f in cls.__dataclass_fields__ if f != "update_time"}
        values = {k: v for k, v in doc.items() if k in names}
        for key in ("low", "high", "not_before", "created_at", "submitted_at", "done_at"):
            values[key] = utc(values.get(key))
        return cls(**values, update_time=snap.update_time)


@dataclass(frozen=True)
class CreateResult:
    created: int
    forced: int
    existing: int


@dataclass(frozen=True)
class Lease:
    acquired: bool
    holder: str
    expires: pendulum.DateTime
    heartbeat: pendulum.DateTime
    # Consecutive takeovers of an expired lease with no renewal in between: how often in a row the
    # chain's invocation died before it got going.
    takeovers: int = 0
    # Whose expired lease this acquisition took over (None: the lease was free, handed over, or ours).
    previous_holder: str | None = None


HANDOVER_HOLDER = "handover"


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class StateStore:
    """Typed access to the pipeline's Firestore collections."""

    def __init__(self, client: firestore.Client, prefix: str = "cdc_") -> None:
        self.client = client
        self._tasks = client.collection(f"{prefix}tasks")
        self._watermarks = client.collection(f"{prefix}watermarks")
        self._watermark_log = client.collection(f"{prefix}watermark_log")
        self._cursors = client.collection(f"{prefix}cursors")
        self._leases = client.collection(f"{prefix}leases")
        self._manifests = client.collection(f"{prefix}manifests")

    # ---- tasks: planning -------------------------------------------------------------------------

    def create_tasks(self, tasks: Sequence[Task], *, force_token: str | None = None) -> CreateResult:
        """Create the tasks that do not exist yet; with `force_token`, re-queue finished ones once.

        Re-queuing bumps the generation, so the forced export writes to a new object. The token (the
        backfill message id) is stored on the task: a redelivered forced backfill changes nothing.
        """
        created = forced = existing = 0
        for chunk in _chunks(tasks, _BATCH_SIZE):
            refs = [self._tasks.document(t.id) for t in chunk]
            snaps = {s.id: s for s in self.client.get_all(refs) if s.exists}
            batch = self.client.batch()
            missing = [(t, r) for t, r in zip(chunk, refs, strict=True) if t.id not in snaps]
            for task, ref in missing:
                # A task created by a forced backfill carries its token too: the redelivered request
                # must not force it again.
                batch.create(ref, {**task.to_doc(), "force_token": force_token or task.force_token})
            if missing:
                self._commit_tolerating_races(batch, missing, force_token)
            created += len(missing)
            existing += len(snaps)
            if force_token:
                forced += sum(self._force(snaps[t.id], force_token, t) for t in chunk if t.id in snaps)
        return CreateResult(created=created, forced=forced, existing=existing)

    def _force(self, snap: Any, token: str, requested: Task) -> bool:
        current = Task.from_snapshot(snap)
        if current.force_token == token or current.state not in ("done", "failed"):
            return False
        try:
            snap.reference.update(
                {
                    "state": "pending",
                    "generation": current.generation + 1,
                    "attempts": 0,
                    "not_before": None,
                    "operation": None,
                    "uri": None,
                    "error": None,
                    "finalized": False,
                    "force_token": token,
                    "offload": requested.offload,
                    "updated_at": firestore.SERVER_TIMESTAMP,
                },
                option=self.client.write_option(last_update_time=snap.update_time),
            )
        except gexc.FailedPrecondition:
            return False
        return True

    def _commit_tolerating_races(
        self, batch: Any, missing: Sequence[tuple[Task, Any]], force_token: str | None
    ) -> None:
        """Commit a batch of creates; if another planner raced us, create the rest one by one."""
        try:
            batch.commit()
        except (gexc.AlreadyExists, gexc.Conflict):
            for task, ref in missing:
                try:
                    ref.create({**task.to_doc(), "force_token": force_token or task.force_token})
                except (gexc.AlreadyExists, gexc.Conflict):
                    continue

    def get_tasks(self, ids: Iterable[str]) -> dict[str, Task]:
        refs = [self._tasks.document(i) for i in ids]
        return {s.id: Task.from_snapshot(s) for s in self.client.get_all(refs) if s.exists}

    def get_task(self, tid: str) -> Task | None:
        snap = self._tasks.document(tid).get()
        return Task.from_snapshot(snap) if snap.exists else None

    def _query(self, **equals: Any) -> Any:
        query = self._tasks
        for name, value in equals.items():
            query = query.where(filter=FieldFilter(name, "==", value))
        return query

    def next_pending(self, instance: str, limit: int = 20) -> list[Task]:
        """The instance's pending tasks in queue order (callers check `not_before`)."""
        query = self._query(instance=instance, state="pending").order_by("order_key").limit(limit)
        return [Task.from_snapshot(s) for s in query.stream()]

    def tasks_in_state(self, state: TaskState, *, instance: str | None = None) -> list[Task]:
        query = self._query(state=state) if instance is None else self._query(instance=instance, state=state)
        return [Task.from_snapshot(s) for s in query.stream()]

    def unfinalized(self, instance: str) -> list[Task]:
        """Tasks whose export is done but whose watermark/manifest bookkeeping may not have run."""
        query = self._query(instance=instance, state="done", finalized=False)
        return [Task.from_snapshot(s) for s in query.stream()]

    def has_open_tasks(self, instance: str) -> bool:
        return any(
            next(iter(self._query(instance=instance, state=s).limit(1).stream()), None) for s in OPEN_STATES
        )

    def tasks_from(self, low: pendulum.DateTime) -> list[Task]:
        """Tasks whose window starts at or after `low` (a single-field range: no composite index needed)."""
        query = self._tasks.where(filter=FieldFilter("low", ">=", low))
        return [Task.from_snapshot(s) for s in query.stream()]

    def all_tasks(self, *, source: str | None = None) -> list[Task]:
        query = self._tasks if source is None else self._query(source=source)
        return [Task.from_snapshot(s) for s in query.stream()]

    # ---- tasks: the worker's transitions (precondition on the snapshot's update time) ------------

    def _transition(self, task: Task, changes: dict[str, Any]) -> Task | None:
        """Apply `changes` if nobody else changed the task since it was read; None if somebody did."""
        ref = self._tasks.document(task.id)
        try:
            result = ref.update(
                {**changes, "updated_at": firestore.SERVER_TIMESTAMP},
                option=self.client.write_option(last_update_time=task.update_time),
            )
        except (gexc.FailedPrecondition, gexc.NotFound):
            return None
        values = {k: v for k, v in changes.items() if k in Task.__dataclass_fields__}
        fields = {**asdict(task), **values, "update_time": result.update_time}
        return Task(**fields)

    def claim(self, task: Task, *, uri: str, generation: int, now: pendulum.DateTime) -> Task | None:
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
        )

    def mark_running(self, task: Task, operation: str) -> Task | None:
        return self._transition(task, {"state": "running", "operation": operation})

    def mark_done(self, task: Task, now: pendulum.DateTime) -> Task | None:
        return self._transition(task, {"state": "done", "done_at": now, "finalized": False, "error": None})

    def mark_retry(
        self, task: Task, *, error: dict[str, Any] | None, not_before: pendulum.DateTime, generation: int
    ) -> Task | None:
        return self._transition(
            task,
            {
                "state": "pending",
                "error": error,
                "not_before": not_before,
                "generation": generation,
                "operation": None,
            },
        )

    def mark_failed(self, task: Task, error: dict[str, Any]) -> Task | None:
        return self._transition(task, {"state": "failed", "error": error})

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
                "generation": task.generation + 1,
            }
            if self._transition(task, changes) is not None:
                requeued.append(task.id)
        return requeued

    # ---- watermarks and cursors ------------------------------------------------------------------

    def _watermark_ref(self, source: str, table: str) -> Any:
        return self._watermarks.document(f"{source}.{table}")

    def init_watermark(self, source: str, table: str, value: pendulum.DateTime) -> bool:
        """Create the table's watermark at the first window the planner queued; never overwrite."""
        try:
            self._watermark_ref(source, table).create(
                {"source": source, "table": table, "value": value, "updated_at": value}
            )
        except (gexc.AlreadyExists, gexc.Conflict):
            return False
        return True

    def get_watermark(self, source: str, table: str) -> pendulum.DateTime | None:
        snap = self._watermark_ref(source, table).get()
        return utc(snap.get("value")) if snap.exists else None

    def watermarks(self) -> dict[tuple[str, str], pendulum.DateTime]:
        return {(d.get("source"), d.get("table")): utc(d.get("value")) for d in self._watermarks.stream()}

    def advance_watermark(
        self, source: str, table: str, now: pendulum.DateTime
    ) -> tuple[pendulum.DateTime, pendulum.DateTime] | None:
        """Move the watermark across every consecutive done window; returns (old, new) if it moved.

        It only ever moves forward, and stops at the first window whose task is missing or not done.
        """
        ref = self._watermark_ref(source, table)
        tasks = self._tasks
        log = self._watermark_log

        @firestore.transactional
        def walk(transaction: Any) -> tuple[pendulum.DateTime, pendulum.DateTime] | None:
            snap = ref.get(transaction=transaction)
            if not snap.exists:
                return None
            start = value = utc(snap.get("value"))
            for _ in range(_WATERMARK_WALK_LIMIT):
                task_snap = tasks.document(task_id(source, value, table)).get(transaction=transaction)
                if not task_snap.exists or task_snap.get("state") != "done":
                    break
                value = utc(task_snap.get("high"))
            if value <= start:
                return None
            transaction.update(ref, {"value": value, "updated_at": now})
            entry = {"source": source, "table": table, "from": start, "to": value, "at": now}
            transaction.set(log.document(f"{source}.{table}.{value.strftime('%Y%m%dT%H%M%S')}"), entry)
            return start, value

        return walk(self.client.transaction())

    def watermark_history(self) -> list[dict[str, Any]]:
        entries = [s.to_dict() for s in self._watermark_log.stream()]
        for entry in entries:
            for key in ("from", "to", "at"):
                entry[key] = utc(entry[key])
        return sorted(entries, key=lambda e: (e["source"], e["table"], e["at"], e["to"]))

    def get_cursor(self, source: str) -> pendulum.DateTime | None:
        snap = self._cursors.document(source).get()
        return utc(snap.get("planned_through")) if snap.exists else None

    def advance_cursor(self, source: str, planned_through: pendulum.DateTime) -> None:
        """Record what the planner queued; only moves forward (a late, redelivered tick cannot rewind it)."""
        ref = self._cursors.document(source)

        @firestore.transactional
        def advance(transaction: Any) -> None:
            snap = ref.get(transaction=transaction)
            current = utc(snap.get("planned_through")) if snap.exists else None
            if current is None or planned_through > current:
                transaction.set(ref, {"source": source, "planned_through": planned_through})

        advance(self.client.transaction())

    # ---- leases -----------------------------------------------------------------------------------

    def acquire_lease(self, instance: str, holder: str, ttl: float, now: pendulum.DateTime) -> Lease:
        """Take the instance's lease if it is free, expired, or already ours."""
        ref = self._leases.document(instance)

        @firestore.transactional
        def acquire(transaction: Any) -> Lease:
            snap = ref.get(transaction=transaction)
            takeovers, previous = 0, None
            if snap.exists:
                current = self._lease_of(snap)
                if current.holder != holder and current.expires > now:
                    return current
                if current.holder == HANDOVER_HOLDER:
                    takeovers = current.takeovers
                elif current.holder != holder:
                    takeovers, previous = current.takeovers + 1, current.holder
            lease = Lease(True, holder, now.add(seconds=ttl), now, takeovers, previous)
            transaction.set(
                ref, {"holder": holder, "expires": lease.expires, "heartbeat": now, "takeovers": takeovers}
            )
            return lease

        try:
            return acquire(self.client.transaction())
        except (ValueError, gexc.Aborted) as exc:
            # Firestore gave up on the transaction ("Failed to commit transaction in 5 attempts"): other
            # workers changed the lease at the same moment (duplicates racing for an expired lease). It is
            # not ours: answer with whoever holds it now.
            if isinstance(exc, ValueError) and "transaction" not in str(exc):
                raise
            return self.get_lease(instance) or Lease(False, "", now, now)

    def renew_lease(self, instance: str, holder: str, ttl: float, now: pendulum.DateTime) -> bool:
        """Extend our lease; False if it is no longer ours (we must stop)."""
        lease = self.acquire_lease(instance, holder, ttl, now)
        return lease.acquired

    def release_lease(self, instance: str, holder: str) -> None:
        ref = self._leases.document(instance)

        @firestore.transactional
        def release(transaction: Any) -> None:
            snap = ref.get(transaction=transaction)
            if snap.exists and snap.get("holder") == holder:
                transaction.delete(ref)

        release(self.client.transaction())

    def hand_over_lease(self, instance: str, holder: str, now: pendulum.DateTime) -> None:
        """Give up our lease for a fresh work message to take at once, keeping the takeover count."""
        ref = self._leases.document(instance)

        @firestore.transactional
        def hand_over(transaction: Any) -> None:
            snap = ref.get(transaction=transaction)
            if snap.exists and snap.get("holder") == holder:
                transaction.update(ref, {"holder": HANDOVER_HOLDER, "expires": now})

        hand_over(self.client.transaction())

    @staticmethod
    def _lease_of(snap: Any) -> Lease:
        doc = snap.to_dict()
        return Lease(
            False, doc["holder"], utc(doc["expires"]), utc(doc["heartbeat"]), int(doc.get("takeovers") or 0)
        )

    def get_lease(self, instance: str) -> Lease | None:
        snap = self._leases.document(instance).get()
        return self._lease_of(snap) if snap.exists else None

    # ---- manifests --------------------------------------------------------------------------------

    def save_manifest(self, source: str, window: Window, manifest: dict[str, Any]) -> None:
        self._manifests.document(f"{source}.{window.ts_nodash}").set(manifest)

    def manifests(self, source: str | None = None) -> list[dict[str, Any]]:
        docs = [s.to_dict() for s in self._manifests.stream()]
        return [d for d in docs if source is None or d.get("source") == source]
