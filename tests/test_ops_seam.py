"""The operator commands' logic in-process, on the in-memory state store (shared/testing): every failed task
listed with its retry command, failed re-exports as warnings, backfill bookkeeping and progress, the report's
first window and lag-over-time series, time expressions. The CLI as a subprocess is tested in test_cli*.py."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pendulum
import pytest

from shared.core.config import Config, parse_config
from shared.core.tasks import LIVE_PRIORITY, Task, window_tasks
from shared.core.windows import Window
from shared.ops import backfill, report, status
from shared.ops.timeexpr import parse_time
from shared.testing.memory_state import InMemoryState
from tests.test_chain import config_doc

T0 = pendulum.datetime(2026, 1, 1, tz="UTC")
HOUR = pendulum.duration(hours=1)
CONFIG: Config = parse_config(config_doc())
SOURCE = CONFIG.sources[0]
NOW = T0 + HOUR * 5


def queue(state: InMemoryState, hours: int) -> list[Task]:
    tasks = window_tasks(SOURCE, [Window(T0 + HOUR * i, T0 + HOUR * (i + 1)) for i in range(hours)],
                         priority=LIVE_PRIORITY, offload=False)  # fmt: skip
    state.create_tasks(tasks)
    for table in SOURCE.table_names:
        state.init_watermark(SOURCE.name, table, T0)
    return tasks


def finish(state: InMemoryState, tid: str, error: dict[str, Any] | None = None, at: pendulum.DateTime = NOW) -> None:
    task = state.get_task(tid)
    assert task is not None
    claimed = state.claim(task, uri=f"gs://b/{tid}.g{task.generation}.csv", generation=task.generation, now=at)
    assert claimed is not None
    if error:
        state.mark_failed(claimed, error)
    else:
        running = state.mark_running(claimed, f"op-{tid}")
        assert running is not None
        state.mark_done(running, at)


def test_status_lists_every_failed_task_and_the_command_that_retries_them() -> None:
    state = InMemoryState()
    tasks = queue(state, 3)
    failed = ["shop.20260101T000000.table.orders", "shop.20260101T010000.table.orders",
              "shop.20260101T020000.table.payments"]  # fmt: skip
    for task in tasks:
        finish(state, task.id, {"code": "INTERNAL_ERROR", "message": f"boom {task.id}"} if task.id in failed else None)
    result = status.collect_status(CONFIG, state, clock=T0 + HOUR)
    text = status.format_status(result)
    assert result.failed == 3 and not result.healthy
    for tid in failed:
        assert f"    {tid}  attempt 1: INTERNAL_ERROR boom {tid}" in text
    assert f"  to retry them: cdc retry --task {failed[0]} --task {failed[1]} --task {failed[2]}" in text
    assert [e["task"] for e in result.to_json()["sources"][0]["failed_tasks"]] == failed
    assert text.endswith("status: UNHEALTHY (3 failed task(s))")


def test_a_failed_forced_reexport_is_a_warning_not_a_failure() -> None:
    state = InMemoryState()
    tasks = queue(state, 2)
    for task in tasks:
        finish(state, task.id)
    for table in SOURCE.table_names:
        state.advance_watermark(SOURCE.name, table, NOW)
    tid = "shop.20260101T000000.table.orders"
    forced = state.create_tasks([t for t in tasks if t.id == tid], force_token="backfill-7")
    assert forced.forced == 1
    finish(state, tid, {"code": "INTERNAL_ERROR", "message": "re-export broke"})
    result = status.collect_status(CONFIG, state, clock=T0 + HOUR * 3)
    assert result.healthy and result.failed == 0 and result.warnings == 1
    text = status.format_status(result)
    assert f"  warning: re-export {tid} (generation 2) failed; the window's earlier export is still in place" in text
    assert "failed tasks" not in text and text.endswith("status: OK, 1 warning(s)")
    (warning,) = result.to_json()["sources"][0]["reexport_failures"]
    assert warning["task"] == tid and warning["reexport"] is True


def test_status_shows_the_instance_breaker_when_the_store_has_one() -> None:
    class WithBreaker(InMemoryState):
        def breaker(self, instance: str) -> dict[str, Any] | None:
            return {"state": "open", "until": "2026-01-01T06:00:00+00:00", "reason": "instance stopped"}

    state = WithBreaker()
    queue(state, 1)
    result = status.collect_status(CONFIG, state, clock=NOW)
    assert "  breaker: state open, until 2026-01-01T06:00:00+00:00, reason instance stopped" in status.format_status(
        result
    )
    assert result.to_json()["sources"][0]["breaker"]["state"] == "open"
    assert status.collect_status(CONFIG, InMemoryState(), clock=NOW).sources[0].breaker is None


def test_backfill_bookkeeping_done_windows_and_failures() -> None:
    state = InMemoryState()
    tasks = queue(state, 3)
    ids = [t.id for t in tasks]
    per_window = 1 + len(SOURCE.table_names)
    assert backfill.windows_done(state, ids, per_window) == 0
    for task in tasks[: per_window * 2]:
        finish(state, task.id)
    finish(state, tasks[-1].id, {"code": "X", "message": "no"})
    assert backfill.windows_done(state, ids, per_window) == 2
    (failure,) = backfill.failures(state, ids)
    assert failure.task == tasks[-1].id and failure.one_line == "X no" and failure.instance == SOURCE.instance


def test_progress_shows_elapsed_and_eta() -> None:
    progress = backfill.Progress(total=10, states=Counter(done=4, pending=6), elapsed=65.0, eta=97.5)
    assert progress.line() == "[############------------------] 4/10  4 done, 6 pending  1m05s elapsed, eta 1m37s"
    done = backfill.Progress(total=2, states=Counter(done=2), elapsed=3.0)
    assert done.line().endswith("2/2  2 done  3s elapsed")


def test_wait_measures_eta_from_the_rate_seen() -> None:
    state = InMemoryState()
    tasks = queue(state, 1)
    seen: list[backfill.Progress] = []

    def report_and_work(progress: backfill.Progress) -> None:
        seen.append(progress)
        pending = [t for t in tasks if state.get_task(t.id).state == "pending"]  # type: ignore[union-attr]
        if pending:
            finish(state, pending[0].id)

    final = backfill.wait(state, [t.id for t in tasks], force_token=None, stale=set(), timeout=30,
                          report=report_and_work, poll_seconds=0.01)  # fmt: skip
    assert final.complete and final.states["done"] == len(tasks)
    assert seen[0].eta is None  # nothing finished yet: no rate
    assert all(p.eta is not None for p in seen[1:-1])


def test_report_starts_at_the_pipelines_first_window_and_draws_lag_from_the_watermark_log() -> None:
    state = InMemoryState()
    tasks = queue(state, 3)
    moves = {}
    for i, task in enumerate(tasks):
        at = T0 + HOUR * (task.low.hour + 1) + pendulum.duration(minutes=10 + i)
        finish(state, task.id, at=at)
        if task.table:
            moved = state.advance_watermark(SOURCE.name, task.table, at)
            assert moved is not None
            moves.setdefault(task.table, []).append((at, moved))
    state.advance_cursor(SOURCE.name, T0 + HOUR * 3)
    clock = T0 + HOUR * 4
    data = report.collect_report(CONFIG, state, windows=48, clock=clock)
    (timeline,) = data.timelines
    assert timeline.first_window == T0 and timeline.windows == (T0, T0 + HOUR, T0 + HOUR * 2)
    assert {c.state for _, cells in timeline.rows for c in cells} == {"done"}  # no 45 grey "missing" windows
    lag = dict(timeline.lag)
    expected = [(T0, 0.0)]
    for at, (old, new) in moves["orders"]:
        expected += [(at, (at - old).total_seconds()), (at, (at - new).total_seconds())]
    expected.append((clock, (clock - moves["orders"][-1][1][1]).total_seconds()))
    assert list(lag["orders"]) == expected
    html = report.render_html(data)
    assert html.count('class="lag-line"') == len(SOURCE.table_names)
    assert f'data-threshold-seconds="{CONFIG.lag_alert_seconds:g}"' in html

    since = report.collect_report(CONFIG, state, since=T0 - HOUR * 2, clock=clock)
    states = [c.state for c in dict(since.timelines[0].rows)["orders"]]
    assert states == ["before", "before", "done", "done", "done"]


def test_report_of_a_pipeline_that_never_ran() -> None:
    data = report.collect_report(CONFIG, InMemoryState(), windows=6, clock=NOW)
    assert data.cells == 0 and data.timelines[0].lag == (("orders", ()), ("payments", ()))
    assert "no windows planned yet" in report.render_html(data) and "no lag recorded yet" in report.render_html(data)
    assert report.plural(1, "error") == "1 error" and report.plural(0, "error") == "0 errors"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", NOW),
        ("NOW", NOW),
        ("today", T0),
        ("yesterday", T0 - HOUR * 24),
        ("2025-12-30", pendulum.datetime(2025, 12, 30, tz="UTC")),
        ("-2h", NOW - HOUR * 2),
        ("+30m", NOW.add(minutes=30)),
        ("-1d2h30m", NOW.subtract(days=1, hours=2, minutes=30)),
        ("-1w", NOW.subtract(weeks=1)),
        ("2026-01-01T03:00:00+02:00", T0 + HOUR),
    ],
)
def test_time_expressions(text: str, expected: pendulum.DateTime) -> None:
    parsed = parse_time(text, NOW)
    assert parsed == expected and parsed.timezone_name == "UTC"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("2026-01-01T03:00:00", "has no UTC offset"),
        ("-2x", "accepted: now, today, yesterday"),
        ("-2m1h", "largest first"),
        ("-1h1h", "repeats a unit"),
        ("2026-13-01", "is not a calendar date"),
        ("tomorrowish", "accepted: now, today"),
    ],
)
def test_bad_time_expressions_say_what_is_accepted(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as caught:
        parse_time(text, NOW)
    assert repr(text) in str(caught.value)
