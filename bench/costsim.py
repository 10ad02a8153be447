"""A simulated day of a deployment, in-process, through the project's own planner and chain (shared/testing seam).

Each Cloud SQL instance is simulated on its own fake clock (its chain runs in parallel with the others in
production, and the planner's work per source is independent of the other sources), with Cloud Scheduler's
tick firing on that clock: a tick that falls while the chain sleeps between polls runs the planner and delivers
its work message at that moment, so the message finds the lease held, as it would in production.

What is counted, and how it is billed, is in bench/pricing.py and docs/cost.md.
"""

from __future__ import annotations

import contextlib
import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pendulum

from bench.pricing import billed_seconds
from shared.app.planner import plan_tick
from shared.app.ports import ObjectStat
from shared.app.worker import run_work
from shared.core.config import parse_config
from shared.core.messages import Tick
from shared.core.operations import Operation
from shared.core.tasks import Task
from shared.core.templates import Templates
from shared.core.windows import Window
from shared.testing.fake_sqladmin import FakeAdminApi, InMemoryObjects
from shared.testing.memory_state import InMemoryState
from shared.testing.services import FakeServices

T0 = pendulum.datetime(2026, 11, 2, tz="UTC")
TEMPLATE = "orders.sql"
COLUMNS = "id:bigint event_timestamp:timestamptz customer_id:bigint amount:numeric currency:text note:text"


@dataclass(frozen=True)
class Deployment:
    key: str
    instances: int
    tables: int
    interval: str  # the sources' window, e.g. "1h"
    tick_seconds: float = 300.0  # terraform/variables.tf tick_schedule "*/5 * * * *"
    settle: str = "5m"
    export_seconds: float = 15.0

    @property
    def windows_per_day(self) -> int:
        return 86400 // _seconds(self.interval)


def _seconds(interval: str) -> int:
    unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}[interval[-1]]
    return int(interval[:-1]) * unit


SMALL = Deployment("small", instances=1, tables=10, interval="1h")
LARGE = Deployment("large", instances=5, tables=50, interval="15m")


def table_names(n: int) -> list[str]:
    return [f"t{i:02d}" for i in range(n)]


def config_doc(deployment: Deployment, index: int) -> dict[str, Any]:
    """One source (one Cloud SQL instance) of the deployment; every table exports through templates/orders.sql."""
    return {
        "project": "cdc-cost",
        "region": "europe-west1",
        "bucket": "cdc-cost-exports",
        "sources": [
            {
                "name": f"db{index}",
                "instance": f"cdc-cost:pg-{index}",
                "database": "app",
                "interval": deployment.interval,
                "settle": deployment.settle,
                # One window before the simulated day, so that the day holds exactly windows_per_day due windows.
                "start": T0.subtract(seconds=_seconds(deployment.interval)).isoformat(),
                "tables": [{"name": t, "template": TEMPLATE} for t in table_names(deployment.tables)],
            }
        ],
    }


def content_for(tables: Sequence[str]) -> Callable[[dict[str, Any]], bytes]:
    """What an export writes: the schema snapshot (information_schema rows) for the schema query, else one row."""
    schema = b"".join(
        f"{table},{name},{kind},{i},{'NO' if i < 3 else 'YES'}\n".encode()
        for table in tables
        for i, (name, kind) in enumerate((c.split(":") for c in COLUMNS.split()), start=1)
    )

    def content(body: dict[str, Any]) -> bytes:
        query = body["exportContext"]["csvExportOptions"]["selectQuery"]
        return schema if "information_schema" in query else b"1,2026-11-02T00:00:00Z,3,4.50,EUR,a\n"

    return content


# ---- the seam, instrumented (shared/ is not touched: wrappers and subclasses only) ---------------------


class SimClock:
    """A fake clock (follows shared.app.ports.Clock) on which Cloud Scheduler ticks every `every` seconds.

    Time moves only when somebody sleeps or the simulation advances it; crossing a tick calls `on_tick` with the
    tick's time before moving on (ticks fired while a tick is being handled would nest, so they wait)."""

    def __init__(self, start: pendulum.DateTime, every: float) -> None:
        self.start = start
        self.every = every
        self.elapsed = 0.0
        self.next_tick = 0.0
        self.on_tick: Callable[[float], None] | None = None
        self._in_tick = False

    def now(self) -> pendulum.DateTime:
        return self.start.add(microseconds=round(self.elapsed * 1_000_000))

    def monotonic(self) -> float:
        return self.elapsed

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"sleep length must be non-negative, not {seconds}")
        target = self.elapsed + seconds
        while not self._in_tick and self.on_tick is not None and self.next_tick <= target:
            self.elapsed = max(self.elapsed, self.next_tick)
            tick, self.next_tick = self.next_tick, self.next_tick + self.every
            self._in_tick = True
            try:
                self.on_tick(tick)
            finally:
                self._in_tick = False
        self.elapsed = max(self.elapsed, target)


class QuickAdminApi(FakeAdminApi):
    """FakeAdminApi whose operations finish in O(running operations) per call, not O(every operation ever):
    a simulated day holds thousands of operations and tens of thousands of polls. Answers are unchanged (times
    included)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._running: dict[str, Any] = {}

    def _start(self, instance: str, uri: str | None, duration: float, **fields: Any) -> Any:
        op = super()._start(instance, uri, duration, **fields)
        self._running[op.name] = op
        return op

    def _advance(self) -> None:
        now = self.clock.monotonic()
        due = [op for op in self._running.values() if now >= op.inserted + op.duration]
        if not due:
            return
        operations, self._operations = self._operations, {op.name: op for op in due}
        try:
            super()._advance()
        finally:
            self._operations = operations
        for op in due:
            del self._running[op.name]

    def _resource(self, op: Any) -> Any:
        # The base class formats its times with pendulum on every poll; format them once per operation (the end
        # time once it is DONE: the chain's polling forecasts from the API's own times).
        if "insert_time" not in op.extra:
            op.extra["insert_time"] = super()._resource(op).insert_time
        if op.finished and "end_time" not in op.extra:
            op.extra["end_time"] = super()._resource(op).end_time
        elapsed = self.clock.monotonic() - op.inserted
        status = "DONE" if op.finished else ("PENDING" if elapsed < min(0.1, op.duration / 2) else "RUNNING")
        error = op.error if op.finished else None
        return Operation(
            name=op.name,
            status=status,
            uri=op.uri,
            error_code=error[0] if error else None,
            error_message=error[1] if error else None,
            insert_time=op.extra["insert_time"],
            start_time=op.extra["insert_time"],
            end_time=op.extra.get("end_time"),
        )

    def export(self, project: str, instance: str, body: dict[str, Any]) -> Any:
        # The base class checks "another operation running on this instance" over every operation: keep the
        # check, over the running ones only.
        operations, self._operations = self._operations, dict(self._running)
        try:
            return super().export(project, instance, body)
        finally:
            added = {k: v for k, v in self._operations.items() if k not in operations}
            self._operations = {**operations, **added}


class CountingObjects:
    """The bucket, counting Cloud Storage operations: metadata and object gets are Class B, inserts Class A."""

    def __init__(self, inner: InMemoryObjects) -> None:
        self.inner = inner
        self.bucket_name = inner.bucket_name
        self.ops: Counter[str] = Counter()

    def exists(self, key: str) -> bool:
        self.ops["B"] += 1
        return self.inner.exists(key)

    def stat(self, key: str) -> ObjectStat | None:
        self.ops["B"] += 1
        return self.inner.stat(key)

    def stream(self, key: str) -> Iterable[bytes]:
        self.ops["B"] += 1
        return self.inner.stream(key)

    def create_json(self, key: str, document: dict[str, Any]) -> bool:
        self.ops["A"] += 1
        return self.inner.create_json(key, document)

    def create_bytes(self, key: str, data: bytes, content_type: str) -> ObjectStat | None:
        self.ops["A"] += 1
        return self.inner.create_bytes(key, data, content_type)

    def key_of(self, uri: str) -> str:
        return self.inner.key_of(uri)


class CountingState:
    """InMemoryState behind a counter of the Firestore documents each call would read, write and delete with the
    real adapters (shared/adapters/firestore_*.py): documents returned by gets and queries (a query that returns
    nothing is still billed one read), one write per created or updated document, transactions read what they
    check. Counts are kept per role ("planner" or "worker"), which the simulation sets."""

    def __init__(self, inner: InMemoryState, step_seconds: int) -> None:
        self.inner = inner
        self.step_seconds = step_seconds
        self.role = "worker"
        self.counts: Counter[tuple[str, str]] = Counter()
        self.created = 0

    def prune(self) -> int:
        """Drop, from the in-memory store only, finished tasks that nothing reads again: done, finalized and behind
        every watermark of their source (as a TTL would). Counting is unaffected; without it the fake store's
        linear scans make a simulated day quadratic."""
        inner = self.inner
        lowest: dict[str, pendulum.DateTime] = {}
        for (source, _), value in inner.watermarks().items():
            lowest[source] = min(value, lowest.get(source, value))
        old = [
            tid
            for tid, t in inner.tasks.items()
            if t.state == "done" and t.finalized and t.source in lowest and t.high < lowest[t.source]
        ]
        for tid in old:
            del inner.tasks[tid]
        return len(old)

    def _n(self, kind: str, n: int) -> None:
        self.counts[(self.role, kind)] += n

    def _query(self, result: Sequence[Any]) -> Any:
        self._n("read", max(1, len(result)))
        return result

    # tasks: planning and reading
    def create_tasks(self, tasks: Sequence[Task], *, force_token: str | None = None) -> Any:
        result = self.inner.create_tasks(tasks, force_token=force_token)
        # Create-only writes (one per task) and a read of the tasks that existed only when the request may change
        # them: what the adapter reports. A create refused because the document exists is counted as a write,
        # an upper bound: a failed RPC is not billed, per a Firestore maintainer (googleapis/google-cloud-go#2765).
        self._n("read", result.reads)
        self._n("write", result.writes)
        self.created += result.created
        return result

    def get_tasks(self, ids: Iterable[str]) -> dict[str, Task]:
        ids = list(ids)
        self._n("read", len(ids))
        return self.inner.get_tasks(ids)

    def get_task(self, tid: str) -> Task | None:
        self._n("read", 1)
        return self.inner.get_task(tid)

    def next_pending(self, instance: str, limit: int = 10) -> list[Task]:
        return self._query(self.inner.next_pending(instance, limit))

    def pending_from(self, instance: str, low: pendulum.DateTime, limit: int = 10) -> list[Task]:
        return self._query(self.inner.pending_from(instance, low, limit))

    def tasks_in_state(self, state: Any, *, instance: str | None = None) -> list[Task]:
        return self._query(self.inner.tasks_in_state(state, instance=instance))

    def unfinalized(self, instance: str) -> list[Task]:
        return self._query(self.inner.unfinalized(instance))

    def has_open_tasks(self, instance: str) -> bool:
        # The adapter asks one limit(1) query per open state until one answers.
        from shared.core.tasks import OPEN_STATES

        for state in OPEN_STATES:
            self._n("read", 1)
            if self.inner.tasks_in_state(state, instance=instance):
                return True
        return False

    def tasks_from(self, low: pendulum.DateTime) -> list[Task]:
        return self._query(self.inner.tasks_from(low))

    def all_tasks(self, *, source: str | None = None) -> list[Task]:
        return self._query(self.inner.all_tasks(source=source))

    def count_tasks(self, state: Any, *, source: str) -> int:
        count = self.inner.count_tasks(state, source=source)
        self._n("read", max(1, -(-count // 1000)))  # an aggregation: one read per 1,000 index entries (or fewer)
        return count

    def tasks_to_show(self) -> list[Task]:
        return self._query(self.inner.tasks_to_show())

    # tasks: transitions (a write with an update-time precondition; fenced by the lease holder: in a transaction
    # that also reads the lease document)
    def _write(self, result: Any, fenced: bool = False) -> Any:
        self._n("write", 1)
        if fenced:
            self._n("read", 1)
        return result

    def claim(self, task: Task, **kwargs: Any) -> Task | None:
        return self._write(self.inner.claim(task, **kwargs), kwargs.get("fence") is not None)

    def claim_pack(self, tasks: Sequence[Task], **kwargs: Any) -> list[Task] | None:
        self._n("write", len(tasks))
        return self.inner.claim_pack(tasks, **kwargs)

    def mark_pack_done(self, tasks: Sequence[Task], facts: Sequence[dict[str, Any]], now: Any, **kwargs: Any) -> Any:
        self._n("write", len(tasks))  # one commit: a write per window (and the lease's read when fenced)
        if kwargs.get("fence") is not None:
            self._n("read", 1)
        return self.inner.mark_pack_done(tasks, facts, now, **kwargs)

    def mark_running(self, task: Task, operation: str, **kwargs: Any) -> Task | None:
        return self._write(self.inner.mark_running(task, operation, **kwargs), kwargs.get("fence") is not None)

    def mark_done(self, task: Task, now: pendulum.DateTime, **kwargs: Any) -> Task | None:
        return self._write(self.inner.mark_done(task, now, **kwargs), kwargs.get("fence") is not None)

    def mark_retry(self, task: Task, **kwargs: Any) -> Task | None:
        return self._write(self.inner.mark_retry(task, **kwargs), kwargs.get("fence") is not None)

    def mark_failed(self, task: Task, error: dict[str, Any], **kwargs: Any) -> Task | None:
        return self._write(self.inner.mark_failed(task, error, **kwargs), kwargs.get("fence") is not None)

    def mark_finalized(self, task: Task) -> None:
        return self._write(self.inner.mark_finalized(task))

    def requeue_failed(self, ids: Iterable[str] | None = None) -> list[str]:
        requeued = self.inner.requeue_failed(ids)
        self._n("read", 1)
        self._n("write", len(requeued))
        return requeued

    # watermarks and cursors
    def init_watermark(self, source: str, table: str, value: pendulum.DateTime) -> bool:
        self._n("write", 1)  # a create with exists=False precondition: billed whether or not it succeeds
        return self.inner.init_watermark(source, table, value)

    def get_watermark(self, source: str, table: str) -> pendulum.DateTime | None:
        self._n("read", 1)
        return self.inner.get_watermark(source, table)

    def watermarks(self) -> dict[tuple[str, str], pendulum.DateTime]:
        result = self.inner.watermarks()
        self._n("read", max(1, len(result)))
        return result

    def advance_watermark(self, source: str, table: str, now: pendulum.DateTime) -> Any:
        moved = self.inner.advance_watermark(source, table, now)
        # A transaction: the watermark, then each task of the walk (the windows moved over plus the one that
        # stops it); when it moves, the watermark's update and a log entry.
        walked = 0 if moved is None else round((moved[1] - moved[0]).total_seconds() / self.step_seconds)
        self._n("read", 2 + walked)
        if moved is not None:
            self._n("write", 2)
        return moved

    def watermark_history(self) -> list[dict[str, Any]]:
        return self._query(self.inner.watermark_history())

    def get_cursor(self, source: str) -> pendulum.DateTime | None:
        self._n("read", 1)
        return self.inner.get_cursor(source)

    def advance_cursor(self, source: str, planned_through: pendulum.DateTime) -> None:
        self._n("read", 1)
        self._n("write", 1)
        return self.inner.advance_cursor(source, planned_through)

    # leases (transactions: read the lease, write it when taken or renewed, delete it on release)
    def acquire_lease(self, instance: str, holder: str, ttl: float, now: pendulum.DateTime) -> Any:
        lease = self.inner.acquire_lease(instance, holder, ttl, now)
        self._n("read", 1)
        self._n("write", 1 if lease.acquired else 0)
        return lease

    def renew_lease(self, instance: str, holder: str, ttl: float, now: pendulum.DateTime) -> bool:
        return self.acquire_lease(instance, holder, ttl, now).acquired

    def release_lease(self, instance: str, holder: str) -> None:
        self._n("read", 1)
        self._n("delete", 1)
        return self.inner.release_lease(instance, holder)

    def hand_over_lease(self, instance: str, holder: str, now: pendulum.DateTime) -> None:
        self._n("read", 1)
        self._n("write", 1)
        return self.inner.hand_over_lease(instance, holder, now)

    def get_lease(self, instance: str) -> Any:
        self._n("read", 1)
        return self.inner.get_lease(instance)

    def live_chains(self, now: pendulum.DateTime) -> int:
        self._n("read", 1)  # a count aggregation: one read per 1,000 index entries
        return self.inner.live_chains(now)

    # manifests
    def save_manifest(self, source: str, window: Window, manifest: dict[str, Any]) -> None:
        self._n("write", 1)
        return self.inner.save_manifest(source, window, manifest)

    def get_manifest(self, source: str, window: Window) -> dict[str, Any] | None:
        self._n("read", 1)
        return self.inner.get_manifest(source, window)

    def manifests(self, source: str | None = None) -> list[dict[str, Any]]:
        return self._query(self.inner.manifests(source))

    def breaker(self, instance: str) -> dict[str, Any] | None:
        self._n("read", 1)
        return self.inner.breaker(instance)

    def save_breaker(self, instance: str, record: dict[str, Any]) -> None:
        self._n("write", 1)
        self.inner.save_breaker(instance, record)

    def clear_breaker(self, instance: str) -> None:
        self._n("delete", 1)
        self.inner.clear_breaker(instance)


class LogSink:
    """Stands in for stdout while the simulation runs: counts the structured log lines and their bytes."""

    def __init__(self) -> None:
        self.lines = 0
        self.bytes = 0

    def write(self, text: str) -> int:
        self.lines += text.count("\n")
        self.bytes += len(text.encode())
        return len(text)

    def flush(self) -> None:
        pass


class ShapeMemoTemplates(Templates):
    """Templates that parse each table's export query once: its output columns do not depend on the window (only
    the timestamps in its WHERE clause do), and parsing thousands of rendered queries would dominate the run."""

    def __init__(self) -> None:
        super().__init__()
        self._shapes: dict[tuple[str, str], Any] = {}

    def output_shape(self, source: Any, table: Any, window: Window) -> Any:
        key = (source.name, table if isinstance(table, str) else table.name)
        if key not in self._shapes:
            self._shapes[key] = super().output_shape(source, table, window)
        return self._shapes[key]


# ---- the simulation -------------------------------------------------------------------------------------


@dataclass
class Counts:
    """What one deployment did in the simulated span (all instances together)."""

    hours: float = 0.0
    ticks: int = 0
    planner_invocations: int = 0
    worker_invocations: int = 0
    worker_refused: int = 0  # work messages that found the chain running and were acknowledged
    worker_busy_seconds: float = 0.0  # fake-clock time inside run_work
    work_messages: int = 0  # published by the planner and by the workers (continuations)
    exports: int = 0
    api_calls: Counter[str] = field(default_factory=Counter)
    firestore: Counter[tuple[str, str]] = field(default_factory=Counter)
    gcs_class_a: int = 0
    gcs_class_b: int = 0
    log_lines: int = 0
    log_bytes: int = 0
    tasks_created: int = 0
    tasks_open_at_end: int = 0
    worker_invocation_seconds: list[float] = field(default_factory=list)

    def merge(self, other: Counts) -> None:
        for name in (
            "planner_invocations",
            "worker_invocations",
            "worker_refused",
            "worker_busy_seconds",
            "work_messages",
            "exports",
            "gcs_class_a",
            "gcs_class_b",
            "log_lines",
            "log_bytes",
            "tasks_created",
            "tasks_open_at_end",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.api_calls.update(other.api_calls)
        self.firestore.update(other.firestore)
        self.worker_invocation_seconds.extend(other.worker_invocation_seconds)

    def firestore_total(self, kind: str) -> int:
        return sum(n for (_, k), n in self.firestore.items() if k == kind)


def simulate_instance(deployment: Deployment, index: int, hours: float, templates: Templates) -> Counts:
    """One Cloud SQL instance's source for `hours` of fake time: ticks, planner, chain, continuations."""
    config = parse_config(config_doc(deployment, index))
    instance = config.sources[0].instance
    content = content_for(table_names(deployment.tables))
    svc = FakeServices(config, start=T0, duration=deployment.export_seconds, content=content)
    clock = SimClock(T0, deployment.tick_seconds)
    raw_objects = svc.objects
    state = CountingState(svc.state, _seconds(deployment.interval))
    objects = CountingObjects(raw_objects)
    svc.clock = clock  # type: ignore[assignment]
    svc.sqladmin = QuickAdminApi(clock, raw_objects, duration=deployment.export_seconds, content=content)  # type: ignore[arg-type]
    svc.state = state  # type: ignore[assignment]
    svc.objects = objects  # type: ignore[assignment]

    counts = Counts(hours=hours)
    chain_running = False

    def invoke(message_instance: str) -> None:
        counts.worker_invocations += 1
        state.role = "worker"
        began = clock.monotonic()
        stats = run_work(svc.work(message_instance), svc, templates)
        spent = clock.monotonic() - began
        counts.worker_busy_seconds += spent
        counts.worker_invocation_seconds.append(spent)
        counts.worker_refused += stats is None

    def on_tick(at: float) -> None:
        state.prune()
        counts.ticks += 1
        counts.planner_invocations += 1
        role, state.role = state.role, "planner"
        before = len(svc.bus.published)
        when = T0.add(microseconds=round(at * 1_000_000))
        plan_tick(Tick(f"tick-{counts.ticks}", when, when), svc)
        state.role = role
        counts.work_messages += len(svc.bus.published) - before
        if chain_running:
            # Pub/Sub pushes the tick's work message now, while this instance's chain holds the lease.
            woken = svc.bus.published[before:]
            del svc.bus.published[before:]
            for message_instance in woken:
                invoke(message_instance)

    clock.on_tick = on_tick
    end = hours * 3600
    sink = LogSink()
    with contextlib.redirect_stdout(sink):  # type: ignore[type-var]
        while clock.monotonic() < end:
            if svc.bus.published:
                message_instance = svc.bus.published.pop(0)
                chain_running = True
                published = len(svc.bus.published)
                invoke(message_instance)
                chain_running = False
                counts.work_messages += len(svc.bus.published) - published  # continuations, hand-overs
            else:
                clock.advance(min(clock.next_tick, end) - clock.monotonic() if clock.next_tick < end else 0)
                if clock.next_tick >= end and not svc.bus.published:
                    break
    counts.exports = len(svc.sqladmin.exported)
    counts.api_calls = Counter(svc.sqladmin.calls)
    counts.firestore = state.counts
    counts.gcs_class_a = objects.ops["A"] + counts.exports  # every export's object is an insert into the bucket
    counts.gcs_class_b = objects.ops["B"]
    counts.log_lines, counts.log_bytes = sink.lines, sink.bytes
    counts.tasks_created = state.created
    counts.tasks_open_at_end = sum(t.state != "done" for t in state.inner.tasks.values() if t.instance == instance)
    return counts


def simulate(deployment: Deployment, hours: float = 24.0) -> Counts:
    """Every instance of the deployment (the planner's per-tick invocation is counted once, not per instance)."""
    templates = ShapeMemoTemplates()
    total = Counts(hours=hours)
    for index in range(deployment.instances):
        one = simulate_instance(deployment, index, hours, templates)
        if index == 0:
            total.ticks = one.ticks
        one.planner_invocations = 0 if index else one.planner_invocations
        total.merge(one)
    return total


def scaled(counts: Counts, factor: float) -> Counts:
    """Counts of a span `factor` times as long (the steady state repeats). Per-invocation times are dropped:
    bill them (worker_billed_seconds) before scaling."""
    if factor == 1:
        return counts
    out = replace(counts, api_calls=Counter(), firestore=Counter(), worker_invocation_seconds=[])
    for name in (
        "ticks",
        "planner_invocations",
        "worker_invocations",
        "worker_refused",
        "work_messages",
        "exports",
        "gcs_class_a",
        "gcs_class_b",
        "log_lines",
        "log_bytes",
        "tasks_created",
    ):
        setattr(out, name, round(getattr(counts, name) * factor))
    out.worker_busy_seconds = counts.worker_busy_seconds * factor
    out.hours = counts.hours * factor
    out.api_calls = Counter({k: round(v * factor) for k, v in counts.api_calls.items()})
    out.firestore = Counter({k: round(v * factor) for k, v in counts.firestore.items()})
    return out


def worker_billed_seconds(counts: Counts, overhead: float) -> float:
    """Each worker invocation is billed its fake-clock time plus `overhead`, rounded up to 100 ms."""
    return math.fsum(billed_seconds(s + overhead) for s in counts.worker_invocation_seconds)
