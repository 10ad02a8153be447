"""Windows, the schedule grid, due windows and backfill splits (pure; property tests with hypothesis)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone

import pendulum
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.core.errors import WindowError
from shared.core.windows import (
    Schedule,
    Window,
    due_windows,
    parse_duration,
    parse_timestamp,
    require_aware,
    ts_nodash,
)


def utc(*args: int) -> pendulum.DateTime:
    return pendulum.datetime(*args, tz="UTC")


DURATIONS = ["30s", "1m", "5m", "15m", "1h", "1h30m", "2h", "6h", "1d"]
CRONS = ["*/15 * * * *", "0 * * * *", "5 */2 * * *", "0 0 * * 1", "30 9 * * 1-5"]
SCHEDULES = st.sampled_from(DURATIONS + CRONS).map(Schedule.parse)
INSTANTS = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2060, 1, 1), timezones=st.just(UTC)).map(
    lambda t: pendulum.instance(t)
)
FAST = settings(max_examples=60, deadline=None)


# --- parsing ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"), [("0s", 0), ("5m", 300), ("1h30m", 5400), ("1d", 86400), ("2d3h4m5s", 183845)]
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "5", "m", "5 m", "1m1h", "-5m", "1.5h", "5min", None, 300])
def test_parse_duration_rejects(text: object) -> None:
    with pytest.raises(WindowError) as e:
        parse_duration(text)
    assert e.value.value == text
    assert "duration" in e.value.problem


@pytest.mark.parametrize(
    ("interval", "problem"),
    [
        ("7m", "does not divide a day evenly"),
        ("2d", "does not divide a day evenly"),
        ("0m", "is zero"),
        ("hourly", "is not a duration that divides a day"),
        ("* * * * * *", "is not a duration"),  # six fields (seconds) are not accepted
        ("61 * * * *", "is not a duration"),
        ("0 0 30 2 *", "never fires"),
    ],
)
def test_schedule_rejects(interval: str, problem: str) -> None:
    with pytest.raises(WindowError) as e:
        Schedule.parse(interval)
    assert e.value.value == interval
    assert problem in e.value.problem


def test_cron_whitespace_is_normalised() -> None:
    assert Schedule.parse("*/15  *  * * *").text == "*/15 * * * *"


def test_parse_timestamp_variants() -> None:
    assert parse_timestamp("2026-01-01T02:00:00+02:00", "at") == utc(2026, 1, 1)
    assert parse_timestamp("2026-01-01T00:00:00.123456789Z", "at") == utc(2026, 1, 1).add(microseconds=123456)
    assert parse_timestamp("2026-01-01T00:00:00Z", "at").timezone_name == "UTC"


@pytest.mark.parametrize("text", ["2026-01-01T00:00:00", "2026-01-01"])
def test_parse_timestamp_rejects_naive(text: str) -> None:
    with pytest.raises(WindowError) as e:
        parse_timestamp(text, "at")
    assert e.value.value == text
    assert "no UTC offset" in e.value.problem


@pytest.mark.parametrize("text", ["yesterday", "", "2026-13-01T00:00:00Z", 5])
def test_parse_timestamp_rejects_garbage(text: object) -> None:
    with pytest.raises(WindowError) as e:
        parse_timestamp(text, "at")
    assert e.value.value == text
    assert "RFC 3339" in e.value.problem


# --- naive datetimes are rejected everywhere -------------------------------------------------------------


@FAST
@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2060, 1, 1)), SCHEDULES)
def test_naive_rejected_everywhere(naive: datetime, schedule: Schedule) -> None:
    aware = naive.replace(tzinfo=UTC)
    calls = [
        lambda: require_aware(naive, "t"),
        lambda: schedule.floor(naive),
        lambda: schedule.next_boundary(naive),
        lambda: schedule.window_at(naive),
        lambda: schedule.windows_between(naive, aware + timedelta(days=1)),
        lambda: schedule.windows_between(aware, naive + timedelta(days=1)),
        lambda: due_windows(schedule, naive, timedelta(0), None, 1),
        lambda: due_windows(schedule, aware, timedelta(0), naive, 1),
        lambda: Window(naive, aware + timedelta(days=1)),
        lambda: schedule.window_at(aware).contains(naive),
    ]
    for call in calls:
        with pytest.raises(WindowError) as e:
            call()
        assert isinstance(e.value.value, datetime) and e.value.value.tzinfo is None
        assert "no UTC offset" in e.value.problem


def test_other_offsets_are_converted_to_utc() -> None:
    t = datetime(2026, 1, 1, 2, 30, tzinfo=timezone(timedelta(hours=2)))
    assert Schedule.parse("1h").window_at(t) == Window(utc(2026, 1, 1), utc(2026, 1, 1, 1))


# --- Window ----------------------------------------------------------------------------------------------


def test_window_properties() -> None:
    w = Window(utc(2026, 3, 4, 5, 6, 7), utc(2026, 3, 4, 6))
    assert (w.logical_date, w.ds, w.ts_nodash) == (utc(2026, 3, 4, 5, 6, 7), "2026-03-04", "20260304T050607")
    assert w.contains(w.low) and not w.contains(w.high)
    assert str(w) == "[2026-03-04T05:06:07+00:00, 2026-03-04T06:00:00+00:00)"


def test_window_must_not_be_empty() -> None:
    with pytest.raises(WindowError) as e:
        Window(utc(2026, 1, 1), utc(2026, 1, 1))
    assert e.value.value == (utc(2026, 1, 1), utc(2026, 1, 1))


# --- grid --------------------------------------------------------------------------------------------------


def test_duration_grid_is_aligned_to_the_epoch() -> None:
    s = Schedule.parse("1h30m")
    assert s.floor(utc(1970, 1, 1, 1, 29)) == utc(1970, 1, 1)
    assert s.floor(utc(2026, 1, 1, 0, 10)) == utc(2026, 1, 1)  # midnight is a boundary: 90m divides a day
    assert s.next_boundary(utc(2026, 1, 1)) == utc(2026, 1, 1, 1, 30)


def test_cron_grid() -> None:
    s = Schedule.parse("30 9 * * 1-5")  # 09:30 on weekdays; 2026-01-02 is a Friday
    assert s.window_at(utc(2026, 1, 3, 12)) == Window(utc(2026, 1, 2, 9, 30), utc(2026, 1, 5, 9, 30))
    assert s.floor(utc(2026, 1, 5, 9, 30)) == utc(2026, 1, 5, 9, 30)
    assert s.previous_boundary(utc(2026, 1, 5, 9, 30)) == utc(2026, 1, 2, 9, 30)
    assert not s.is_boundary(utc(2026, 1, 5, 9, 30, 1))


@FAST
@given(SCHEDULES, INSTANTS)
def test_window_at_contains_and_consecutive_windows_tile(schedule: Schedule, t: pendulum.DateTime) -> None:
    w = schedule.window_at(t)
    assert w.contains(t)
    assert schedule.is_boundary(w.low) and schedule.is_boundary(w.high)
    following = schedule.window_at(w.high)
    assert following.low == w.high  # no gap, no overlap
    assert schedule.window_at(w.low - timedelta(microseconds=1)).high == w.low
    assert schedule.previous_boundary(w.low) < w.low <= t < w.high == schedule.next_boundary(t)


# --- backfill split ------------------------------------------------------------------------------------------


@FAST
@given(SCHEDULES, INSTANTS, st.integers(min_value=1, max_value=40))
def test_windows_between_covers_exactly(schedule: Schedule, t: pendulum.DateTime, count: int) -> None:
    start = schedule.floor(t)
    end = start
    for _ in range(count):
        end = schedule.next_boundary(end)
    windows = schedule.windows_between(start, end)
    assert len(windows) == count
    assert windows[0].low == start and windows[-1].high == end
    assert all(a.high == b.low for a, b in itertools.pairwise(windows))
    assert windows == tuple(sorted(windows))
    with pytest.raises(WindowError) as e:
        schedule.windows_between(start, end, limit=count - 1) if count > 1 else schedule.windows_between(
            start, end, limit=0
        )
    assert "windows" in e.value.problem


def test_windows_between_rejects_off_grid_naming_both_values_and_neighbours() -> None:
    s = Schedule.parse("1h")
    with pytest.raises(WindowError) as e:
        s.windows_between(utc(2026, 1, 1, 0, 30), utc(2026, 1, 1, 3))
    message = str(e.value)
    assert e.value.value == (utc(2026, 1, 1, 0, 30), utc(2026, 1, 1, 3))
    assert "start 2026-01-01T00:30:00+00:00 is not on the '1h' grid" in message
    assert "2026-01-01T00:00:00+00:00 and 2026-01-01T01:00:00+00:00" in message
    assert "2026-01-01T03:00:00+00:00" in message  # the end is named too
    with pytest.raises(WindowError) as e:
        s.windows_between(utc(2026, 1, 1), utc(2026, 1, 1, 3, 0, 1))
    assert "end 2026-01-01T03:00:01+00:00" in str(e.value)
    assert "2026-01-01T03:00:00+00:00 and 2026-01-01T04:00:00+00:00" in str(e.value)


def test_windows_between_rejects_end_not_after_start() -> None:
    s = Schedule.parse("1h")
    with pytest.raises(WindowError) as e:
        s.windows_between(utc(2026, 1, 2), utc(2026, 1, 1))
    assert e.value.value == (utc(2026, 1, 2), utc(2026, 1, 1))
    assert "2026-01-02T00:00:00+00:00" in str(e.value) and "2026-01-01T00:00:00+00:00" in str(e.value)


def test_windows_between_limit_on_a_huge_range_is_fast() -> None:
    with pytest.raises(WindowError) as e:
        Schedule.parse("1m").windows_between(utc(2000, 1, 1), utc(2030, 1, 1), limit=10)
    assert "15779520 windows" in str(e.value)  # 10958 days of 1440 minutes, counted not built


# --- due windows ----------------------------------------------------------------------------------------


SETTLES = st.sampled_from([timedelta(0), timedelta(minutes=5), timedelta(hours=1)])


@FAST
@given(SCHEDULES, INSTANTS, SETTLES, st.integers(min_value=0, max_value=30), st.integers(min_value=1, max_value=10))
def test_due_windows_are_exactly_the_missing_ones(
    schedule: Schedule, clock: pendulum.DateTime, settle: timedelta, behind: int, cap: int
) -> None:
    last_high = schedule.floor(clock - settle)
    since = last_high
    for _ in range(behind):
        since = schedule.previous_boundary(since)
    due = due_windows(schedule, clock, settle, since, cap)
    assert len(due.windows) == min(behind, cap)
    for window in due.windows:
        assert window.high + settle <= clock  # every planned window is settled
        assert schedule.is_boundary(window.low)
    covered = [*due.windows, *([due.gap] if due.gap else [])]
    if behind:
        assert covered[0].low == since and covered[-1].high == last_high  # from since to the last due window
        assert all(a.high == b.low for a, b in itertools.pairwise(covered))  # no gap, no overlap
        next_window = schedule.window_at(last_high)
        assert next_window.high + settle > clock  # the next window is not due yet
    else:
        assert covered == []
    assert (due.gap is not None) == (behind > cap)


@FAST
@given(SCHEDULES, INSTANTS, SETTLES)
def test_due_without_since_is_the_latest_due_window(
    schedule: Schedule, clock: pendulum.DateTime, settle: timedelta
) -> None:
    due = due_windows(schedule, clock, settle, None, 5)
    (window,) = due.windows
    assert due.gap is None
    assert window.high + settle <= clock < schedule.next_boundary(window.high) + settle


def test_due_windows_example_with_gap() -> None:
    due = due_windows(Schedule.parse("1h"), utc(2026, 1, 2, 0, 4), timedelta(minutes=5), utc(2026, 1, 1), 3)
    assert [w.low.hour for w in due.windows] == [0, 1, 2]
    assert due.gap == Window(utc(2026, 1, 1, 3), utc(2026, 1, 1, 23))  # 23:00-24:00 settles at 00:05


def test_due_windows_since_in_the_future_or_caught_up_is_empty() -> None:
    s = Schedule.parse("1h")
    assert due_windows(s, utc(2026, 1, 1, 5, 10), timedelta(minutes=5), utc(2026, 1, 1, 5), 3).windows == ()
    assert due_windows(s, utc(2026, 1, 1, 5, 10), timedelta(minutes=5), utc(2026, 1, 1, 9), 3).windows == ()


def test_due_windows_off_grid_since_yields_a_short_first_window() -> None:
    # the interval was changed from 15m to 1h: nothing is skipped, nothing exported twice
    due = due_windows(Schedule.parse("1h"), utc(2026, 1, 1, 3, 10), timedelta(minutes=5), utc(2026, 1, 1, 0, 15), 5)
    assert due.windows == (
        Window(utc(2026, 1, 1, 0, 15), utc(2026, 1, 1, 1)),
        Window(utc(2026, 1, 1, 1), utc(2026, 1, 1, 2)),
        Window(utc(2026, 1, 1, 2), utc(2026, 1, 1, 3)),
    )


@pytest.mark.parametrize(("settle", "cap"), [(timedelta(minutes=-1), 1), (timedelta(0), 0)])
def test_due_windows_rejects_bad_settle_and_cap(settle: timedelta, cap: int) -> None:
    with pytest.raises(WindowError) as e:
        due_windows(Schedule.parse("1h"), utc(2026, 1, 1), settle, None, cap)
    assert e.value.value in (settle, cap)


def test_ts_nodash_prints_the_instant_in_its_own_zone_even_when_cached() -> None:
    """ts_nodash is cached; equal instants in other zones must still print their own digits."""
    utc = pendulum.datetime(2026, 1, 1, 12, tz="UTC")
    paris = utc.in_timezone("Europe/Paris")
    assert utc == paris
    assert (ts_nodash(utc), ts_nodash(paris), ts_nodash(utc)) == (
        "20260101T120000",
        "20260101T130000",
        "20260101T120000",
    )
