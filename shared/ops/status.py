"""`cdc status`: the pipeline at a glance, per source instance and table, read from the StateStore.

It reads as few documents as it shows, so that it stays fast however long the queue is (a 30-day backfill of 50
tables is 36,720 tasks): per source one count aggregation of its pending tasks and its instance's next pending
task (the worker's own query), and for all sources two queries for the tasks it lists (those that carry an error,
failed or pending a retry; those in flight, found through the time their claim wrote: StateStore.tasks_to_show);
plus the watermarks and the instances' leases. On the Firestore emulator, which walks every document a query could
match, the pending count and the next pending task are what a long queue costs (measured on 36,720 tasks: about 1 s of
emulator CPU each, against 0.1-0.3 s for the listed tasks); Firestore serves each from an index. Per-table pending
counts are read only while the source has at most PENDING_DETAIL_LIMIT pending tasks (a long backfill shows its
total and each table's lag instead).
Lag is measured like the planner's freshness log: the clock minus the table's watermark, and a table is
lagging when that exceeds `lag_alert_seconds`.

Every failed task is listed (not one per table). A failed task whose window had been exported before (`done_at`
is kept when a forced backfill re-queues a done task) is a warning, not a failure: the earlier generation's
object is still there and the watermark already covers the window, so nothing is missing downstream.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pendulum

from shared.app.ports import StateStore
from shared.core.config import Config, SourceConfig
from shared.core.tasks import IN_FLIGHT_STATES, UNFINISHED_OR_FAILED, Task
from shared.core.windows import lag_seconds

SCHEMA_ROW = "(schema)"
PENDING_DETAIL_LIMIT = 500
"""Up to this many pending tasks in a source, its pending tasks are read and counted per table."""
READERS = 6
"""Reads in flight at once."""


@dataclass(frozen=True)
class ErrorSeen:
    """The error stored on a task (failed for good, or pending a retry); `reexport` when the window had been
    exported before (a forced re-export failed: the earlier object is still there)."""

    task: str
    state: str
    code: str
    message: str
    at: pendulum.DateTime | None
    instance: str = ""
    window: str = ""
    attempts: int = 0
    generation: int = 1
    reexport: bool = False

    @classmethod
    def of(cls, task: Task) -> ErrorSeen:
        error = task.error or {}
        # `update_time` is the store's version of the document: Firestore's is a time, the in-memory store's a counter
        version = task.update_time
        at = pendulum.instance(version).in_timezone("UTC") if isinstance(version, datetime) else None
        return cls(
            task.id, task.state, str(error.get("code", "")), str(error.get("message", "")), at,
            instance=task.instance, window=f"[{task.low.isoformat()}, {task.high.isoformat()})",
            attempts=task.attempts, generation=task.generation, reexport=is_failed_reexport(task),
        )  # fmt: skip

    @property
    def one_line(self) -> str:
        return " ".join(f"{self.code} {self.message}".split())

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "state": self.state,
            "instance": self.instance,
            "window": self.window,
            "attempts": self.attempts,
            "generation": self.generation,
            "reexport": self.reexport,
            "code": self.code,
            "message": self.message,
            "at": self.at.isoformat() if self.at else None,
        }


def is_failed_reexport(task: Task) -> bool:
    """A failed task whose window was exported before: the earlier generation's object is still in place."""
    return task.state == "failed" and task.done_at is not None


def retry_command(task_ids: list[str]) -> str:
    """The exact command that re-queues these tasks."""
    return "cdc retry " + " ".join(f"--task {tid}" for tid in task_ids)


@dataclass(frozen=True)
class TableStatus:
    table: str
    watermark: pendulum.DateTime | None
    lag_seconds: float | None
    lagging: bool
    pending: int | None
    """None when the source has more than PENDING_DETAIL_LIMIT pending tasks (not counted per table)."""
    running: int
    failed: int
    reexport_failed: int
    last_error: ErrorSeen | None

    def to_json(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "watermark": self.watermark.isoformat() if self.watermark else None,
            "lag_seconds": self.lag_seconds,
            "lagging": self.lagging,
            "pending": self.pending,
            "running": self.running,
            "failed": self.failed,
            "reexport_failed": self.reexport_failed,
            "last_error": self.last_error.to_json() if self.last_error else None,
        }


@dataclass(frozen=True)
class InFlight:
    """The export the instance's chain is waiting for (submitting: the API call is being made)."""

    task: str
    state: str
    operation: str | None
    submitted_at: pendulum.DateTime | None
    age_seconds: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "state": self.state,
            "operation": self.operation,
            "submitted_at": self.submitted_at.isoformat() if self.submitted_at else None,
            "age_seconds": self.age_seconds,
        }


@dataclass(frozen=True)
class NextTask:
    """The instance's next pending task in queue order (what its chain claims next, once `not_before` passed)."""

    task: str
    window: str
    not_before: pendulum.DateTime | None

    @classmethod
    def of(cls, task: Task) -> NextTask:
        return cls(task.id, f"[{task.low.isoformat()}, {task.high.isoformat()})", task.not_before)

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "window": self.window,
            "not_before": self.not_before.isoformat() if self.not_before else None,
        }


@dataclass(frozen=True)
class SourceStatus:
    source: str
    instance: str
    lease_holder: str | None
    lease_expires: pendulum.DateTime | None
    in_flight: InFlight | None
    tables: tuple[TableStatus, ...]
    failures: tuple[ErrorSeen, ...] = ()
    retrying: tuple[ErrorSeen, ...] = ()
    breaker: dict[str, Any] | None = None
    completeness: dict[str, Any] | None = None
    pending: int = 0
    next_task: NextTask | None = None

    @property
    def failed_tasks(self) -> list[ErrorSeen]:
        return [e for e in self.failures if not e.reexport]

    @property
    def warnings(self) -> list[ErrorSeen]:
        return [e for e in self.failures if e.reexport]

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "instance": self.instance,
            "lease": {"holder": self.lease_holder, "expires": self.lease_expires.isoformat()}
            if self.lease_holder and self.lease_expires
            else None,
            "breaker": self.breaker,
            "completeness": self.completeness,
            "in_flight": self.in_flight.to_json() if self.in_flight else None,
            "pending": self.pending,
            "next": self.next_task.to_json() if self.next_task else None,
            "tables": [t.to_json() for t in self.tables],
            "failed_tasks": [e.to_json() for e in self.failed_tasks],
            "reexport_failures": [e.to_json() for e in self.warnings],
            "retrying": [e.to_json() for e in self.retrying],
        }


@dataclass(frozen=True)
class Status:
    clock: pendulum.DateTime
    threshold_seconds: float
    sources: tuple[SourceStatus, ...]

    @property
    def failed(self) -> int:
        return sum(t.failed for s in self.sources for t in s.tables)

    @property
    def warnings(self) -> int:
        return sum(t.reexport_failed for s in self.sources for t in s.tables)

    @property
    def lagging(self) -> list[str]:
        return [f"{s.source}.{t.table}" for s in self.sources for t in s.tables if t.lagging]

    @property
    def healthy(self) -> bool:
        return self.failed == 0 and not self.lagging

    def to_json(self) -> dict[str, Any]:
        return {
            "clock": self.clock.isoformat(),
            "threshold_seconds": self.threshold_seconds,
            "healthy": self.healthy,
            "failed": self.failed,
            "reexport_failed": self.warnings,
            "lagging": self.lagging,
            "sources": [s.to_json() for s in self.sources],
        }


def _table_status(
    name: str,
    tasks: list[Task],
    watermark: pendulum.DateTime | None,
    clock: pendulum.DateTime,
    threshold: float,
    pending: int | None,
) -> TableStatus:
    counts = Counter(t.state for t in tasks)
    with_error = [t for t in tasks if t.error]
    last = max(with_error, key=lambda t: (t.update_time is not None, t.update_time or 0, t.id), default=None)
    lag = lag_seconds(clock, watermark) if watermark else None
    return TableStatus(
        table=name,
        watermark=watermark,
        lag_seconds=lag,
        lagging=lag is not None and lag > threshold,
        pending=pending,
        running=counts["running"] + counts["submitting"],
        failed=counts["failed"] - sum(map(is_failed_reexport, tasks)),
        reexport_failed=sum(map(is_failed_reexport, tasks)),
        last_error=ErrorSeen.of(last) if last else None,
    )


def _in_flight(tasks: list[Task], now: pendulum.DateTime) -> InFlight | None:
    active = [t for t in tasks if t.state in IN_FLIGHT_STATES]
    if not active:
        return None
    task = min(active, key=lambda t: (t.submitted_at or now, t.id))
    age = max(0.0, (now - task.submitted_at).total_seconds()) if task.submitted_at else None
    return InFlight(task.id, task.state, task.operation, task.submitted_at, age)


def instance_breaker(state: StateStore, instance: str) -> dict[str, Any] | None:
    """HOOK for the per-instance breaker (an instance paused with backoff): shown when the state store offers
    `breaker(instance) -> mapping | None`. Until the store has it, there is nothing to show."""
    read = getattr(state, "breaker", None)
    if read is None:
        return None
    record = read(instance)
    return dict(record) if record else None


def completeness(state: StateStore, source: str, tables: tuple[str, ...]) -> dict[str, Any]:
    """Verification, manifests and schema drift of a source, from its windows' manifest records: per table the
    last verification and how many windows it repaired; manifests that could not be written; recent drift."""
    verified: dict[str, dict[str, Any]] = {t: {"last_verified_at": None, "windows": 0, "repaired": 0} for t in tables}
    failed, drift = [], []
    for record in sorted(state.manifests(source), key=lambda r: str((r.get("window") or {}).get("low", ""))):
        low = (
            (record.get("window") or {}).get("low") if isinstance(record.get("window"), dict) else record.get("window")
        )
        for table in record.get("verified") or {}:
            entry = verified.setdefault(table, {"last_verified_at": None, "windows": 0, "repaired": 0})
            entry["windows"] += 1
            entry["last_verified_at"] = max(filter(None, [entry["last_verified_at"], record.get("verified_at")]))
        reason = record.get("replaced_because") or record.get("pending_reason")
        if reason and reason.get("by") == "verification":
            verified.setdefault(reason["table"], {"last_verified_at": None, "windows": 0, "repaired": 0})
            verified[reason["table"]]["repaired"] += 1
        if record.get("status") == "failed":
            failed.append({"window": low, "error": (record.get("error") or {}).get("message")})
        drift.extend({"window_low": low, **change} for change in record.get("schema_drift") or [])
    return {"verification": verified, "failed_manifests": failed, "schema_drift": drift[-20:]}


def _completeness_lines(source: SourceStatus) -> list[str]:
    info = source.completeness or {}
    lines = []
    checked = [(t, v) for t, v in (info.get("verification") or {}).items() if v["windows"] or v["repaired"]]
    if checked:
        lines.append(
            "  verified: "
            + "; ".join(
                f"{t} {v['windows']} window(s), last {v['last_verified_at']}, {v['repaired']} repaired"
                for t, v in checked
            )
        )
    for item in info.get("failed_manifests") or []:
        lines.append(
            f"  manifest not written for window {item['window']}: {' '.join(str(item['error']).split())[:200]}"
        )
    for change in info.get("schema_drift") or []:
        lines.append(
            f"  schema drift at {change['window_low']}: {change['table']}.{change['column']} {change['change']} "
            f"({change['type_before'] or '-'} -> {change['type_after'] or '-'}, {change['severity']})"
        )
    return lines


def _errors(tasks: list[Task], state: str) -> tuple[ErrorSeen, ...]:
    chosen = [t for t in tasks if t.state == state and (t.error or state == "failed")]
    return tuple(ErrorSeen.of(t) for t in sorted(chosen, key=lambda t: (t.low, t.table or "", t.id)))


def _pending_by_table(state: StateStore, source: SourceConfig, total: int) -> Counter[str | None] | None:
    """The source's pending tasks per table (None: the schema), read only while there are few of them."""
    if total > PENDING_DETAIL_LIMIT:
        return None
    pending = state.tasks_in_state("pending", instance=source.instance)
    return Counter(t.table for t in pending if t.source == source.name)


@dataclass(frozen=True)
class _SourceReads:
    """What status reads for one source, fetched concurrently (each a query or a document read)."""

    pending: int
    lease: Any
    breaker: dict[str, Any] | None
    completeness: dict[str, Any]


def _read_source(state: StateStore, source: SourceConfig) -> _SourceReads:
    with ThreadPoolExecutor(max_workers=READERS) as pool:
        pending = pool.submit(state.count_tasks, "pending", source=source.name)
        lease = pool.submit(state.get_lease, source.instance)
        breaker = pool.submit(instance_breaker, state, source.instance)
        done = pool.submit(completeness, state, source.name, source.table_names)
        return _SourceReads(pending.result(), lease.result(), breaker.result(), done.result())


def collect_status(config: Config, state: StateStore, *, clock: pendulum.DateTime | None = None) -> Status:
    """The status of every configured source; `clock` (default now) is what lag is measured against.
    Operation ages are always measured against the wall clock. The reads run concurrently: each query costs a
    round trip (and, on the emulator, a scan of the collection)."""
    now = pendulum.now("UTC")
    clock = clock or now
    threshold = config.lag_alert_seconds
    with ThreadPoolExecutor(max_workers=READERS) as pool:
        shown_future = pool.submit(state.tasks_to_show)
        watermarks_future = pool.submit(state.watermarks)
        reads_futures = [pool.submit(_read_source, state, source) for source in config.sources]
        # The instance's next task, once per instance: sources that share an instance share its queue (and on the
        # emulator each of these queries walks every pending task).
        upcoming_futures = {
            instance: pool.submit(state.next_pending, instance, limit=1)
            for instance in dict.fromkeys(source.instance for source in config.sources)
        }
        shown = [t for t in shown_future.result() if t.state in UNFINISHED_OR_FAILED]
        watermarks = watermarks_future.result()
        all_reads = [f.result() for f in reads_futures]
        upcoming = {instance: future.result() for instance, future in upcoming_futures.items()}
    sources = []
    for source, reads in zip(config.sources, all_reads, strict=True):
        mine = [t for t in shown if t.source == source.name]
        by_table = _pending_by_table(state, source, reads.pending)
        rows = [
            _table_status(
                SCHEMA_ROW, [t for t in mine if t.table is None], None, clock, threshold,
                by_table[None] if by_table is not None else None,
            )
        ]  # fmt: skip
        for table in source.table_names:
            tasks = [t for t in mine if t.table == table]
            count = by_table[table] if by_table is not None else None
            rows.append(_table_status(table, tasks, watermarks.get((source.name, table)), clock, threshold, count))
        lease = reads.lease
        live_lease = lease is not None and lease.expires > now
        sources.append(
            SourceStatus(
                source=source.name,
                instance=source.instance,
                lease_holder=lease.holder if lease and live_lease else None,
                lease_expires=lease.expires if lease and live_lease else None,
                in_flight=_in_flight(mine, now),
                tables=tuple(rows),
                failures=_errors(mine, "failed"),
                retrying=_errors(mine, "pending"),
                breaker=reads.breaker,
                completeness=reads.completeness,
                pending=reads.pending,
                next_task=NextTask.of(upcoming[source.instance][0]) if upcoming[source.instance] else None,
            )
        )
    return Status(clock=clock, threshold_seconds=threshold, sources=tuple(sources))


def human_seconds(seconds: float | None) -> str:
    """12s, 5m03s, 2h05m, 3d04h: the two largest units."""
    if seconds is None:
        return "-"
    total = int(seconds)
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def _error_lines(source: SourceStatus) -> list[str]:
    lines = []
    failed = source.failed_tasks
    if failed:
        lines.append(f"  failed tasks ({len(failed)}):")
        lines.extend(f"    {e.task}  attempt {e.attempts}: {e.one_line[:200]}" for e in failed)
        lines.append(f"  to retry them: {retry_command([e.task for e in failed])}")
    for e in source.warnings:
        lines.append(
            f"  warning: re-export {e.task} (generation {e.generation}) failed; the window's earlier export is "
            f"still in place: {e.one_line[:160]}"
        )
    for e in source.retrying:
        lines.append(f"  retrying {e.task} after attempt {e.attempts}: {e.one_line[:200]}")
    return lines


def format_status(status: Status) -> str:
    """The text `cdc status` prints."""
    lines = [f"clock {status.clock.isoformat()}   lag threshold {human_seconds(status.threshold_seconds)}"]
    for source in status.sources:
        lease = (
            f"lease held by {source.lease_holder} until {source.lease_expires.isoformat()}"
            if source.lease_holder and source.lease_expires
            else "no lease held"
        )
        lines.append("")
        lines.append(f"source {source.source}  instance {source.instance}  {lease}")
        if source.breaker:
            lines.append("  breaker: " + ", ".join(f"{k} {v}" for k, v in source.breaker.items()))
        flight = source.in_flight
        if flight:
            lines.append(
                f"  in flight: {flight.task} ({flight.state}) operation {flight.operation or '-'} "
                f"age {human_seconds(flight.age_seconds)}"
            )
        else:
            lines.append("  in flight: nothing")
        queue = f"  queue: {source.pending:,} pending"
        if source.next_task:
            upcoming = source.next_task
            queue += f", next {upcoming.task}"
            if upcoming.not_before:
                queue += f" (not before {upcoming.not_before.isoformat()})"
        if any(t.pending is None for t in source.tables):
            queue += f"; per table counted up to {PENDING_DETAIL_LIMIT:,} pending"
        lines.append(queue)
        lines.append(f"  {'TABLE':<12} {'WATERMARK':<26} {'LAG':>7}  {'PENDING':>7} {'RUNNING':>7} {'FAILED':>6}")
        for t in source.tables:
            watermark = t.watermark.isoformat() if t.watermark else "-"
            flag = "  LAGGING" if t.lagging else ""
            lines.append(
                f"  {t.table:<12} {watermark:<26} {human_seconds(t.lag_seconds):>7}  "
                f"{'-' if t.pending is None else t.pending:>7} {t.running:>7} {t.failed:>6}{flag}"
            )
        lines.extend(_error_lines(source))
        lines.extend(_completeness_lines(source))
    lines.append("")
    problems = []
    if status.failed:
        problems.append(f"{status.failed} failed task(s)")
    if status.lagging:
        problems.append(f"lagging: {', '.join(status.lagging)}")
    verdict = "OK" if status.healthy else "UNHEALTHY (" + "; ".join(problems) + ")"
    if status.warnings:
        verdict += f", {status.warnings} warning(s)"
    lines.append("status: " + verdict)
    return "\n".join(lines)
