"""The planner: turns ticks and backfill requests into tasks in the queue, then wakes the chains.

Deciding what to queue is pure (`live_tasks`, `backfill_tasks`); only `plan_tick` and `plan_backfill`
touch state. The clock is always the message's (publish time or explicit `at`), never the wall clock,
so a redelivered tick plans exactly the same windows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import pendulum

from shared import logs
from shared.clients import Clients
from shared.config import SourceConfig
from shared.errors import MessageError
from shared.messages import Backfill, Tick
from shared.state import BACKFILL_PRIORITY, LIVE_PRIORITY, CreateResult, Task
from shared.windows import Due, Window, due_windows


@dataclass
class PlanResult:
    """What one planner invocation did."""

    created: int = 0
    forced: int = 0
    existing: int = 0
    windows: dict[str, list[Window]] = field(default_factory=dict)
    woken: list[str] = field(default_factory=list)

    def add(self, source: str, windows: list[Window], result: CreateResult) -> None:
        self.windows[source] = windows
        self.created += result.created
        self.forced += result.forced
        self.existing += result.existing


def window_tasks(
    source: SourceConfig,
    windows: Iterable[Window],
    *,
    priority: int,
    tables: Iterable[str] | None = None,
    offload: bool | None = None,
) -> list[Task]:
    """One schema task plus one task per table for each window, in queue order."""
    names = list(tables) if tables else [t.name for t in source.tables]
    backfill = priority == BACKFILL_PRIORITY
    tasks = []
    for window in windows:
        for table in [None, *names]:
            tasks.append(
                Task(
                    source=source.name,
                    instance=source.instance,
                    database=source.database,
                    table=table,
                    low=window.low,
                    high=window.high,
                    priority=priority,
                    backfill=backfill,
                    offload=source.offload if offload is None else offload,
                )
            )
    return tasks


def due_for(source: SourceConfig, clock: pendulum.DateTime, planned_through: pendulum.DateTime | None) -> Due:
    """The live windows a tick at `clock` must queue, starting where planning left off."""
    since = planned_through or source.start
    return due_windows(source.schedule, clock, source.settle, since, source.catchup_cap)


def plan_tick(tick: Tick, clients: Clients) -> PlanResult:
    """Queue every due live window of every source (catch-up included), then wake the chains."""
    state = clients.state
    result = PlanResult()
    for source in clients.config.sources:
        due = due_for(source, tick.clock, state.get_cursor(source.name))
        if due.gap is not None:
            logs.error(
                "catch-up beyond the cap: windows wait for later ticks",
                source=source.name,
                gap_low=due.gap.low,
                gap_high=due.gap.high,
                queued=len(due.windows),
                cap=source.catchup_cap,
                hint=f"they are queued {source.catchup_cap} per tick; to go faster, backfill "
                f"start={due.gap.low.isoformat()} end={due.gap.high.isoformat()}",
            )
        if due.windows:
            created = state.create_tasks(window_tasks(source, due.windows, priority=LIVE_PRIORITY))
            for table in source.tables:
                state.init_watermark(source.name, table.name, due.windows[0].low)
            state.advance_cursor(source.name, due.windows[-1].high)
            result.add(source.name, list(due.windows), created)
            logs.info(
                "live windows planned",
                source=source.name,
                clock=tick.clock,
                first_low=due.windows[0].low,
                last_high=due.windows[-1].high,
                windows=len(due.windows),
                tasks_created=created.created,
            )
        _log_lag(clients, source, tick.clock)
    result.woken = _wake(clients, clients.config.instances())
    return result


def _log_lag(clients: Clients, source: SourceConfig, clock: pendulum.DateTime) -> None:
    """Freshness: each table's lag behind the clock; over the threshold it is an ERROR (alerted on)."""
    threshold = clients.config.lag_alert_seconds
    for table in source.tables:
        watermark = clients.state.get_watermark(source.name, table.name)
        if watermark is None:
            continue
        lag = max(0.0, (clock - watermark).total_seconds())
        severity = "ERROR" if lag > threshold else "INFO"
        logs.log(
            severity,
            "table lag" if severity == "INFO" else "table lag over threshold",
            source=source.name,
            table=table.name,
            watermark=watermark,
            lag_seconds=lag,
            threshold_seconds=threshold,
        )


def plan_backfill(request: Backfill, clients: Clients) -> PlanResult:
    """Queue a backfill behind live work. It never touches cursors or watermarks."""
    config = clients.config
    sources = [config.source(request.source)] if request.source else list(config.sources)
    result = PlanResult()
    for source in sources:
        windows = source.schedule.windows_between(request.start, request.end)
        latest_due_high = request.published.subtract(seconds=source.settle.total_seconds())
        if windows and windows[-1].high > latest_due_high:
            raise MessageError(
                f"backfill end {request.end.isoformat()} is later than the last settled window end "
                f"for source {source.name!r} at {request.published.isoformat()}: rows may still be arriving",
                message_id=request.message_id,
                hint="end the backfill at or before a window that is due; the live schedule covers the rest",
            )
        tasks = window_tasks(
            source, windows, priority=BACKFILL_PRIORITY, tables=request.tables, offload=request.offload
        )
        created = clients.state.create_tasks(tasks, force_token=request.message_id if request.force else None)
        result.add(source.name, list(windows), created)
        logs.info(
            "backfill planned",
            source=source.name,
            start=request.start,
            end=request.end,
            windows=len(windows),
            tasks_created=created.created,
            tasks_forced=created.forced,
            tasks_existing=created.existing,
            message_id=request.message_id,
        )
    result.woken = _wake(clients, sorted({s.instance for s in sources}))
    return result


def _wake(clients: Clients, instances: Iterable[str]) -> list[str]:
    """One `work` message per instance that has open tasks (also resumes a stalled chain)."""
    woken = []
    for instance in instances:
        if clients.state.has_open_tasks(instance):
            clients.bus.publish_work(instance)
            woken.append(instance)
    return woken
