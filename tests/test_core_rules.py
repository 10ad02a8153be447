"""The core's rules at their edges: every WindowError's value, problem, hint and message, half-open bounds, the
settle cutoff and cap, and the task helpers (ids, queue rows, readiness, log fields, the watermark walk)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pendulum
import pytest

from shared.core.config import parse_config
from shared.core.errors import WindowError
from shared.core.tasks import (
    BACKFILL_PRIORITY,
    LIVE_PRIORITY,
    Task,
    task_id,
    verify_tasks,
    walk_watermark,
    window_tasks,
)
from shared.core.windows import (
    Schedule,
    Window,
    backfill_windows,
    due_windows,
    lag_seconds,
    parse_duration,
    parse_timestamp,
    require_aware,
    settled_high,
)

T0 = pendulum.datetime(2026, 1, 1, tz="UTC")
HOURLY = Schedule.parse("1h")
NAIVE = datetime(2026, 1, 1)


def error(call, *args, **kwargs) -> WindowError:  # type: ignore[no-untyped-def]
    with pytest.raises(WindowError) as e:
        call(*args, **kwargs)
    return e.value


# --- windows: errors carry the value, the problem and the hint -----------------------------------------------


def test_require_aware_names_what_it_got() -> None:
    e = error(require_aware, "2026", "start")
    assert (str(e).split(". ")[0], e.value, e.problem) == (
        "start '2026' is not a datetime",
        "2026",
        "is not a datetime",
    )
    e = error(require_aware, NAIVE, "end")
    assert str(e).startswith("end 2026-01-01T00:00:00 has no UTC offset")
    assert (e.value, e.problem) == (NAIVE, "has no UTC offset (a naive datetime is ambiguous)")
    assert e.hint == "give an offset, e.g. 2026-01-01T00:00:00+00:00"
    converted = require_aware(datetime(2026, 1, 1, 2, tzinfo=pendulum.timezone("Europe/Paris")), "t")
    assert converted == pendulum.datetime(2026, 1, 1, 1, tz="UTC") and converted.timezone_name == "UTC"


def test_parse_timestamp_and_duration_errors() -> None:
    e = error(parse_timestamp, "noon", "at")
    assert str(e).startswith("at 'noon' is not an RFC 3339 timestamp with a UTC offset")
    assert (e.value, e.problem) == ("noon", "is not an RFC 3339 timestamp with a UTC offset, e.g. 2026-01-01T00:00:00Z")
    e = error(parse_timestamp, "2026-01-01T00:00:00", "at")
    assert str(e).startswith("at '2026-01-01T00:00:00' has no UTC offset")
    assert parse_timestamp(" 2026-01-01T01:00:00+01:00 ", "at") == T0
    e = error(parse_duration, "5x")
    assert str(e).startswith("'5x' is not a duration such as 30s")
    assert e.problem == "is not a duration such as 30s, 15m, 1h, 1h30m or 1d"


def test_schedule_errors_explain_the_grid() -> None:
    e = error(Schedule.parse, "7m")
    assert str(e).startswith("interval '7m' does not divide a day evenly")
    assert e.problem.startswith("does not divide a day evenly; use a duration that divides a day evenly")
    assert e.hint == "durations are aligned to the Unix epoch in UTC; write longer schedules as cron"
    assert error(Schedule.parse, "0s").problem.startswith("is zero; use")
    assert Schedule.parse("1s").step_seconds == 1  # the smallest step
    e = error(Schedule.parse, "often")
    assert str(e).startswith("interval 'often' is not a duration that divides a day evenly")
    assert e.problem.startswith("is not a duration that divides a day evenly")
    e = error(Schedule.parse, "61 * * * *")
    assert str(e).startswith("interval '61 * * * *' is not") and e.value == "61 * * * *"
    e = error(Schedule.parse, "0 0 30 2 *")
    assert str(e).startswith("interval '0 0 30 2 *' never fires")
    assert e.problem == "is a cron expression that never fires"


def test_a_window_names_its_empty_bounds_and_converts_them_to_utc() -> None:
    e = error(Window, T0, T0)
    assert str(e).startswith("window high 2026-01-01T00:00:00+00:00 is not after low 2026-01-01T00:00:00+00:00")
    assert (e.value, e.problem) == ((T0, T0), "is empty")
    assert str(error(Window, NAIVE, T0)).startswith("window low ")
    assert str(error(Window, T0, NAIVE)).startswith("window high ")
    paris = pendulum.datetime(2026, 1, 1, 1, tz="Europe/Paris")
    window = Window(paris, paris.add(hours=1))
    assert (window.low.timezone_name, window.high.timezone_name) == ("UTC", "UTC")
    assert window.low == T0
    assert window.contains(T0) and window.contains(T0.add(minutes=59)) and not window.contains(T0.add(hours=1))
    assert str(error(window.contains, NAIVE)).startswith("t ")


def test_grid_helpers_name_their_argument_and_answer_in_utc() -> None:
    cron = Schedule.parse("0 * * * *")
    for call in (HOURLY.floor, HOURLY.next_boundary, HOURLY.previous_boundary, cron.floor, cron.next_boundary):
        assert str(error(call, NAIVE)).startswith("t ")
    for schedule in (HOURLY, cron):
        t = pendulum.datetime(2026, 1, 1, 0, 30, tz="UTC")
        for value in (schedule.floor(t), schedule.next_boundary(t), schedule.previous_boundary(T0)):
            assert value.timezone_name == "UTC"
    assert cron.previous_boundary(T0) == T0.subtract(hours=1)
    assert str(error(next, HOURLY.iter_windows(NAIVE))).startswith("start ")


def test_windows_between_errors() -> None:
    e = error(HOURLY.windows_between, T0, T0)
    assert str(e).startswith("end 2026-01-01T00:00:00+00:00 is not after start 2026-01-01T00:00:00+00:00")
    assert (e.value, e.problem) == ((T0, T0), "is not after start")
    assert e.hint == "give start < end; the range is half-open [start, end)"
    assert len(HOURLY.windows_between(T0, T0.add(hours=1))) == 1
    off1, off2 = T0.add(minutes=10), T0.add(hours=2, minutes=10)
    e = error(HOURLY.windows_between, off1, off2)
    assert str(e).startswith(
        "[2026-01-01T00:10:00+00:00, 2026-01-01T02:10:00+00:00): start 2026-01-01T00:10:00+00:00 is not on the "
        "'1h' grid (nearest grid points 2026-01-01T00:00:00+00:00 and 2026-01-01T01:00:00+00:00); end "
    )
    assert (e.value, e.problem) == ((off1, off2), "is not on the grid")
    assert e.hint == "backfill bounds must be window boundaries of the source's interval"
    assert str(error(HOURLY.windows_between, NAIVE, T0)).startswith("start ")
    assert str(error(HOURLY.windows_between, T0, NAIVE)).startswith("end ")


@pytest.mark.parametrize("schedule", [HOURLY, Schedule.parse("0 * * * *")])
def test_the_window_limit_is_inclusive_and_named(schedule: Schedule) -> None:
    assert len(schedule.windows_between(T0, T0.add(hours=3), limit=3)) == 3
    e = error(schedule.windows_between, T0, T0.add(hours=4), limit=3)
    assert (e.value, e.problem) == ((T0, T0.add(hours=4)), "spans more than 3 windows")
    count = "4 windows" if schedule.step_seconds else "more than 3 windows"
    assert str(e).startswith(
        f"[2026-01-01T00:00:00+00:00, 2026-01-01T04:00:00+00:00) spans {count} of {schedule.text!r}, "
        "more than the limit of 3"
    )
    assert e.hint == "split the range into smaller backfills or raise backfill.max_windows"


def test_settle_cutoff_and_its_errors() -> None:
    assert settled_high(HOURLY, T0.add(hours=1, minutes=5), timedelta(minutes=5)) == T0.add(hours=1)
    assert settled_high(HOURLY, T0.add(hours=1, minutes=4), timedelta(minutes=5)) == T0
    e = error(settled_high, HOURLY, T0, timedelta(seconds=-1))
    assert str(e).startswith("settle -1 day, 23:59:59 is negative") and e.problem == "is negative"
    assert e.value == timedelta(seconds=-1)
    assert str(error(settled_high, HOURLY, NAIVE, timedelta(0))).startswith("clock ")
    e = error(due_windows, HOURLY, T0, timedelta(0), None, 0)
    assert str(e).startswith("cap 0 is less than 1") and (e.value, e.problem) == (0, "is less than 1")
    assert str(error(due_windows, HOURLY, T0.add(hours=3), timedelta(0), NAIVE, 1)).startswith("since ")


def test_a_backfill_may_end_at_the_latest_settled_window_and_no_later() -> None:
    clock = T0.add(hours=3, minutes=5)
    settle = timedelta(minutes=5)
    assert backfill_windows(HOURLY, T0, T0.add(hours=3), clock=clock, settle=settle, limit=None)[-1].high == T0.add(
        hours=3
    )
    e = error(backfill_windows, HOURLY, T0, T0.add(hours=4), clock=clock, settle=settle, limit=None)
    latest = "[2026-01-01T02:00:00+00:00, 2026-01-01T03:00:00+00:00)"
    assert str(e).startswith(
        f"end 2026-01-01T04:00:00+00:00 is after the latest settled window {latest} at clock 2026-01-01T03:05:00+00:00"
    )
    assert (e.value, e.problem) == (T0.add(hours=4), f"is after the latest settled window {latest}")
    assert e.hint == "windows after it are exported by the live schedule"
    e = error(backfill_windows, HOURLY, T0, T0.add(hours=4), clock=clock, settle=settle, limit=None, clock_name="now")
    assert " at now 2026-01-01T03:05:00+00:00" in str(e)
    e = error(backfill_windows, HOURLY, T0, T0.add(hours=3), clock=clock, settle=settle, limit=2)
    assert e.problem == "spans more than 2 windows"


def test_an_on_grid_since_plans_whole_windows_only() -> None:
    due = due_windows(HOURLY, T0.add(hours=3, minutes=5), timedelta(minutes=5), T0.add(hours=1), 10)
    assert [(w.low, w.high) for w in due.windows] == [
        (T0.add(hours=1), T0.add(hours=2)),
        (T0.add(hours=2), T0.add(hours=3)),
    ]


def test_lag_is_exact_and_never_negative() -> None:
    assert lag_seconds(T0.add(seconds=0.5), T0) == 0.5
    assert lag_seconds(T0, T0.add(hours=1)) == 0.0


# --- tasks ---------------------------------------------------------------------------------------------------------


SOURCE = parse_config(
    {
        "project": "cdc-local",
        "region": "europe-west1",
        "bucket": "cdc-exports",
        "sources": [
            {
                "name": "shop",
                "instance": "cdc-local:shop-pg",
                "database": "shopdb",
                "interval": "1h",
                "offload": True,
                "tables": [{"name": "orders"}, {"name": "payments"}],
            }
        ],
    }
).sources[0]


def test_window_tasks_are_the_schema_then_each_table_with_the_sources_identity() -> None:
    windows = [Window(T0, T0.add(hours=1)), Window(T0.add(hours=1), T0.add(hours=2))]
    tasks = window_tasks(SOURCE, windows, priority=LIVE_PRIORITY, offload=False)
    assert [t.id for t in tasks] == [
        "shop.20260101T000000.schema",
        "shop.20260101T000000.table.orders",
        "shop.20260101T000000.table.payments",
        "shop.20260101T010000.schema",
        "shop.20260101T010000.table.orders",
        "shop.20260101T010000.table.payments",
    ]
    assert {(t.instance, t.database, t.priority, t.backfill, t.offload) for t in tasks} == {
        ("cdc-local:shop-pg", "shopdb", LIVE_PRIORITY, False, False)
    }
    backfill = window_tasks(SOURCE, windows[:1], priority=BACKFILL_PRIORITY, offload=True, tables=["payments"])
    assert [(t.table, t.backfill, t.offload, t.priority) for t in backfill] == [
        (None, True, True, BACKFILL_PRIORITY),
        ("payments", True, True, BACKFILL_PRIORITY),
    ]


def test_verify_tasks_queue_behind_live_work_with_the_sources_identity() -> None:
    tasks = verify_tasks(SOURCE, T0, T0.add(hours=3), ["orders"])
    [task] = tasks
    assert (task.purpose, task.kind, task.table, task.low, task.high) == (
        "verify",
        "verify",
        "orders",
        T0,
        T0.add(hours=3),
    )
    assert (task.instance, task.database, task.priority, task.backfill, task.offload) == (
        "cdc-local:shop-pg",
        "shopdb",
        BACKFILL_PRIORITY,
        True,
        True,
    )


def test_task_ids_and_readiness() -> None:
    assert task_id("shop", T0, None) == "shop.20260101T000000.schema"
    assert task_id("shop", T0, "orders") == "shop.20260101T000000.table.orders"
    task = Task("shop", "i", "d", "orders", T0, T0.add(hours=1), not_before=T0.add(seconds=5))
    assert not task.ready(T0.add(seconds=4)) and task.ready(T0.add(seconds=5))
    assert Task("shop", "i", "d", "orders", T0, T0.add(hours=1)).ready(T0)


def test_log_fields_name_the_task_its_instance_operation_object_and_window() -> None:
    task = Task("shop", "cdc-local:shop-pg", "d", "orders", T0, T0.add(hours=1), operation="op-1", uri="gs://b/k")
    assert task.log_fields() == {
        "task": "shop.20260101T000000.table.orders",
        "instance": "cdc-local:shop-pg",
        "operation": "op-1",
        "uri": "gs://b/k",
        "window_low": T0,
        "window_high": T0.add(hours=1),
    }


def test_the_watermark_walk_reads_the_tables_own_tasks() -> None:
    done = {task_id("shop", T0.add(hours=h), "orders"): ("done", T0.add(hours=h + 1)) for h in range(3)}
    done[task_id("shop", T0, None)] = ("pending", T0.add(hours=1))  # the schema task does not hold a table back
    assert walk_watermark("shop", "orders", T0, done.get) == T0.add(hours=3)


def test_an_invalid_cron_expression_has_the_interval_problem() -> None:
    e = error(Schedule.parse, "61 * * * *")
    assert e.problem.startswith("is not a duration that divides a day evenly (30s, 15m, 1h, 1d) or a 5-field cron")
