"""The planner: turns ticks and backfill requests into tasks in the queue, then wakes the chains.

What to queue is decided by the windows module (`due_windows`, `backfill_windows`) and core/tasks
(`window_tasks`); only `plan_tick` and `plan_backfill` touch state. The clock is always the message's
(publish time or explicit `at`), never the wall clock, so a redelivered tick plans exactly the same windows.
"""

from __future__ import annotations

from collections.abc import Iterable

import pendulum

from shared.app.ports import Services
from shared.core import logs
from shared.core.config import SourceConfig, VerifyRule
from shared.core.messages import Backfill, Tick, Verify
from shared.core.tasks import BACKFILL_PRIORITY, LIVE_PRIORITY, verify_tasks, window_tasks
from shared.core.windows import Due, backfill_windows, due_windows, lag_seconds, settled_high


def due_for(source: SourceConfig, clock: pendulum.DateTime, planned_through: pendulum.DateTime | None) -> Due:
    """The live windows a tick at `clock` must queue, starting where planning left off."""
    since = planned_through or source.start
    return due_windows(source.schedule, clock, source.settle, since, source.catchup_cap)


def plan_tick(tick: Tick, services: Services) -> None:
    """Queue every due live window of every source (catch-up included), then wake the chains."""
    state = services.state
    for source in services.config.sources:
        due = due_for(source, tick.clock, state.get_cursor(source.name))
        if due.gap is not None:
            logs.error(
                "catch-up beyond the cap: windows wait for later ticks",
                source=source.name,
                instance=source.instance,
                gap_low=due.gap.low,
                gap_high=due.gap.high,
                queued=len(due.windows),
                cap=source.catchup_cap,
                hint=f"they are queued {source.catchup_cap} per tick; to go faster, backfill "
                f"start={due.gap.low.isoformat()} end={due.gap.high.isoformat()}",
            )
        if due.windows:
            tasks = window_tasks(source, due.windows, priority=LIVE_PRIORITY, offload=source.offload)
            created = state.create_tasks(tasks)
            for table in source.tables:
                state.init_watermark(source.name, table.name, due.windows[0].low)
            state.advance_cursor(source.name, due.windows[-1].high)
            logs.info(
                "live windows planned",
                source=source.name,
                instance=source.instance,
                clock=tick.clock,
                first_low=due.windows[0].low,
                last_high=due.windows[-1].high,
                windows=len(due.windows),
                tasks_created=created.created,
            )
        _plan_scheduled_verification(services, source, tick.clock)
        _log_lag(services, source, tick.clock)
    _wake(services, services.config.instances())


def verification_range(
    source: SourceConfig, rule: VerifyRule, clock: pendulum.DateTime
) -> tuple[pendulum.DateTime, pendulum.DateTime] | None:
    """The range a verification rule covers at `clock`: the `lookback` before the latest multiple of `every` that
    is settled (epoch-aligned, so every tick until the next multiple names the same range: planning is idempotent),
    never before the source's start."""
    settled = settled_high(source.schedule, clock, source.settle)
    every = int(rule.every.total_seconds())
    mark = pendulum.from_timestamp(settled.int_timestamp - settled.int_timestamp % every, tz="UTC")
    mark = source.schedule.floor(mark)
    low = source.schedule.floor(mark.subtract(seconds=rule.lookback.total_seconds()))
    if source.start is not None:
        low = max(low, source.start)
    return (low, mark) if low < mark else None


def _plan_scheduled_verification(services: Services, source: SourceConfig, clock: pendulum.DateTime) -> None:
    for rule in source.verify:
        span = verification_range(source, rule, clock)
        if span is None:
            continue
        created = services.state.create_tasks(verify_tasks(source, *span, source.table_names))
        if created.created:
            logs.info(
                "verification planned",
                source=source.name,
                instance=source.instance,
                window_low=span[0],
                window_high=span[1],
                tables=len(source.tables),
                every_seconds=rule.every.total_seconds(),
            )


def plan_verify(request: Verify, services: Services) -> None:
    """Queue an on-demand verification (`cdc verify`) behind live work."""
    source = services.config.source(request.source)
    tasks = verify_tasks(source, request.start, request.end, request.tables, run=request.message_id)
    created = services.state.create_tasks(tasks)
    logs.info(
        "verification planned",
        source=source.name,
        instance=source.instance,
        window_low=request.start,
        window_high=request.end,
        tables=len(request.tables),
        tasks_created=created.created,
        message_id=request.message_id,
    )
    _wake(services, [source.instance])


def _log_lag(services: Services, source: SourceConfig, clock: pendulum.DateTime) -> None:
    """Freshness: each table's lag behind the clock; over the threshold it is an ERROR (alerted on)."""
    threshold = services.config.lag_alert_seconds
    for table in source.tables:
        watermark = services.state.get_watermark(source.name, table.name)
        if watermark is None:
            continue
        lag = lag_seconds(clock, watermark)
        severity = "ERROR" if lag > threshold else "INFO"
        logs.log(
            severity,
            "table lag" if severity == "INFO" else "table lag over threshold",
            source=source.name,
            instance=source.instance,
            table=table.name,
            watermark=watermark,
            lag_seconds=lag,
            threshold_seconds=threshold,
        )


def plan_backfill(request: Backfill, services: Services) -> None:
    """Queue a backfill behind live work. It never touches cursors or watermarks."""
    config = services.config
    started = services.clock.monotonic()
    source = config.source(request.source)
    windows = backfill_windows(
        source.schedule,
        request.start,
        request.end,
        clock=request.published,
        settle=source.settle,
        limit=config.backfill_max_windows,
    )
    tasks = window_tasks(source, windows, priority=BACKFILL_PRIORITY, offload=request.offload, tables=request.tables)
    created = services.state.create_tasks(tasks, force_token=request.message_id if request.force else None)
    logs.info(
        "backfill planned",
        source=source.name,
        instance=source.instance,
        start=request.start,
        end=request.end,
        windows=len(windows),
        tasks_created=created.created,
        tasks_forced=created.forced,
        tasks_existing=created.existing,
        document_reads=created.reads,
        document_writes=created.writes,
        seconds=round(services.clock.monotonic() - started, 3),
        message_id=request.message_id,
    )
    _wake(services, [source.instance])


def _wake(services: Services, instances: Iterable[str]) -> None:
    """One `work` message per instance that has open tasks (also resumes a stalled chain)."""
    for instance in instances:
        if services.state.has_open_tasks(instance):
            services.bus.publish_work(instance)
