"""Every time boundary the project uses: windows, the schedule grid, the settle cutoff, due windows, backfill
splits and lag.

All times are UTC pendulum DateTimes. Windows are half-open: `low` is inside (range_start="closed"), `high`
is not (range_end="open"). Naive datetimes are rejected everywhere (`require_aware`).

The grid, by kind of interval:
- a duration (`30s`, `15m`, `1h`, `1h30m`, `1d`): boundaries are whole multiples of the duration counted from
  the Unix epoch (1970-01-01T00:00:00Z). The duration must divide a day evenly (so at most `1d`): then every
  UTC midnight is a boundary and each day's key partition holds whole windows. Longer or irregular
  schedules are written as cron (`0 0 * * 1` for weekly).
- a 5-field cron expression, evaluated in UTC: boundaries are the fire times.
"""

from __future__ import annotations

import calendar
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import pendulum
from croniter import croniter
from pendulum import DateTime, Duration

from shared.core.errors import WindowError

DAY_SECONDS = 86_400
DURATION_HELP = "a duration such as 30s, 15m, 1h, 1h30m or 1d"
INTERVAL_HELP = (
    "a duration that divides a day evenly (30s, 15m, 1h, 1d) or a 5-field cron expression in UTC ('*/15 * * * *')"
)
TIMESTAMP_HELP = "an RFC 3339 timestamp with a UTC offset, e.g. 2026-01-01T00:00:00Z"

_DURATION_RE = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
TS_NODASH_FORMAT = "%Y%m%dT%H%M%S"


def _iso(t: datetime) -> str:
    return t.isoformat()


def ts_nodash(t: datetime) -> str:
    """`20260101T000000`: how a window's low appears in task ids, object keys and document ids."""
    return _ts_nodash(t, t.utcoffset())


@functools.lru_cache(maxsize=4096)
def _ts_nodash(t: datetime, _offset: object) -> str:
    """Cached: a backfill's tasks name the same few window bounds tens of thousands of times, and strftime is
    the planner's costliest call. Keyed by the offset too: equal instants in other zones print other digits."""
    return t.strftime(TS_NODASH_FORMAT)


def lag_seconds(clock: datetime, watermark: datetime) -> float:
    """Freshness: how far a table's watermark is behind the clock (never negative)."""
    return max(0.0, (clock - watermark).total_seconds())


def require_aware(t: object, name: str) -> DateTime:
    """Return `t` as a UTC pendulum DateTime; reject naive datetimes (their instant is ambiguous)."""
    if not isinstance(t, datetime):
        raise WindowError(f"{name} {t!r} is not a datetime", value=t, problem="is not a datetime")
    if t.tzinfo is None or t.utcoffset() is None:
        raise WindowError(
            f"{name} {t.isoformat()} has no UTC offset",
            value=t,
            problem="has no UTC offset (a naive datetime is ambiguous)",
            hint="give an offset, e.g. 2026-01-01T00:00:00+00:00",
        )
    return pendulum.instance(t).in_tz("UTC")


def parse_timestamp(text: object, name: str) -> DateTime:
    """Parse an ISO 8601 / RFC 3339 timestamp that carries an offset (`Z` or `+hh:mm`); fractions beyond
    microseconds are truncated (Pub/Sub publish times have nanoseconds). Naive timestamps are rejected."""
    try:
        parsed = datetime.fromisoformat(text.strip()) if isinstance(text, str) else None
    except ValueError:
        parsed = None
    if parsed is None:
        raise WindowError(f"{name} {text!r} is not {TIMESTAMP_HELP}", value=text, problem=f"is not {TIMESTAMP_HELP}")
    if parsed.tzinfo is None:
        raise WindowError(
            f"{name} {text!r} has no UTC offset",
            value=text,
            problem="has no UTC offset (a naive timestamp is ambiguous)",
            hint="append Z or +00:00",
        )
    return require_aware(parsed, name)


def parse_duration(text: object) -> Duration:
    """Parse `1d2h3m4s`-style durations (each part optional, in that order, at least one). Zero is allowed."""
    match = _DURATION_RE.fullmatch(text) if isinstance(text, str) else None
    if not text or match is None:
        raise WindowError(f"{text!r} is not {DURATION_HELP}", value=text, problem=f"is not {DURATION_HELP}")
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return pendulum.duration(days=days, hours=hours, minutes=minutes, seconds=seconds)


def _epoch_seconds(t: datetime) -> int:
    return calendar.timegm(t.utctimetuple())


def _from_epoch_seconds(seconds: int) -> DateTime:
    return pendulum.from_timestamp(seconds, tz="UTC")


@dataclass(frozen=True, order=True)
class Window:
    """The half-open interval [low, high) of UTC time; its logical date (Airflow's execution_date) is low."""

    low: DateTime
    high: DateTime

    def __post_init__(self) -> None:
        low = require_aware(self.low, "window low")
        high = require_aware(self.high, "window high")
        if high <= low:
            raise WindowError(
                f"window high {_iso(high)} is not after low {_iso(low)}",
                value=(low, high),
                problem="is empty",
            )
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    @property
    def logical_date(self) -> DateTime:
        return self.low

    @property
    def ds(self) -> str:
        return self.low.strftime("%Y-%m-%d")

    @property
    def ts_nodash(self) -> str:
        return ts_nodash(self.low)

    def contains(self, t: datetime) -> bool:
        return self.low <= require_aware(t, "t") < self.high

    def __str__(self) -> str:
        return f"[{_iso(self.low)}, {_iso(self.high)})"


@dataclass(frozen=True)
class Due:
    """What a tick should plan: `windows` oldest first, and the `gap` left for later ticks beyond the cap."""

    windows: tuple[Window, ...]
    gap: Window | None


@dataclass(frozen=True)
class Schedule:
    """A grid of window boundaries: fixed steps from the epoch (step_seconds) or cron fire times (cron)."""

    text: str
    step_seconds: int | None = None
    cron: str | None = None

    @classmethod
    def parse(cls, interval: object) -> Schedule:
        if isinstance(interval, str) and len(interval.split()) == 5:
            return cls._parse_cron(interval)
        try:
            step = parse_duration(interval)
        except WindowError as e:
            raise WindowError(
                f"interval {interval!r} is not {INTERVAL_HELP}",
                value=interval,
                problem=f"is not {INTERVAL_HELP}",
            ) from e
        seconds = int(step.total_seconds())
        if seconds <= 0 or DAY_SECONDS % seconds:
            problem = "does not divide a day evenly" if seconds > 0 else "is zero"
            raise WindowError(
                f"interval {interval!r} {problem}",
                value=interval,
                problem=f"{problem}; use {INTERVAL_HELP}",
                hint="durations are aligned to the Unix epoch in UTC; write longer schedules as cron",
            )
        return cls(text=str(interval), step_seconds=seconds)

    @classmethod
    def _parse_cron(cls, expr: str) -> Schedule:
        normalized = " ".join(expr.split())
        problem = f"is not {INTERVAL_HELP}"
        if not croniter.is_valid(normalized):
            raise WindowError(f"interval {expr!r} {problem}", value=expr, problem=problem)
        try:
            croniter(normalized, datetime(2000, 1, 1, tzinfo=pendulum.UTC)).get_next(datetime)
        except Exception as e:  # croniter raises several types for expressions that never fire (e.g. 30 Feb)
            raise WindowError(
                f"interval {expr!r} never fires", value=expr, problem="is a cron expression that never fires"
            ) from e
        return cls(text=normalized, cron=normalized)

    def __str__(self) -> str:
        return self.text

    def is_boundary(self, t: datetime) -> bool:
        t = require_aware(t, "t")
        return self.floor(t) == t

    def floor(self, t: datetime) -> DateTime:
        """The greatest boundary <= t."""
        t = require_aware(t, "t")
        if self.step_seconds is not None:
            seconds = _epoch_seconds(t)
            return _from_epoch_seconds(seconds - seconds % self.step_seconds)
        assert self.cron is not None
        if t.second == 0 and t.microsecond == 0 and croniter.match(self.cron, t):
            return t
        return pendulum.instance(croniter(self.cron, t).get_prev(datetime)).in_tz("UTC")

    def next_boundary(self, t: datetime) -> DateTime:
        """The smallest boundary > t."""
        t = require_aware(t, "t")
        if self.step_seconds is not None:
            return self.floor(t).add(seconds=self.step_seconds)
        assert self.cron is not None
        return pendulum.instance(croniter(self.cron, t).get_next(datetime)).in_tz("UTC")

    def previous_boundary(self, t: datetime) -> DateTime:
        """The greatest boundary < t."""
        t = require_aware(t, "t")
        floor = self.floor(t)
        if floor < t:
            return floor
        if self.step_seconds is not None:
            return floor.subtract(seconds=self.step_seconds)
        assert self.cron is not None
        return pendulum.instance(croniter(self.cron, t).get_prev(datetime)).in_tz("UTC")

    def window_at(self, t: datetime) -> Window:
        """The grid window containing t."""
        floor = self.floor(t)
        return Window(floor, self.next_boundary(floor))

    def iter_windows(self, start: datetime) -> Iterator[Window]:
        """Grid windows from the boundary `start` onwards, forever (callers stop)."""
        low = require_aware(start, "start")
        while True:
            high = self.next_boundary(low)
            yield Window(low, high)
            low = high

    def _off_grid(self, name: str, t: DateTime) -> str | None:
        if self.is_boundary(t):
            return None
        return (
            f"{name} {_iso(t)} is not on the {self.text!r} grid "
            f"(nearest grid points {_iso(self.floor(t))} and {_iso(self.next_boundary(t))})"
        )

    def windows_between(self, start: datetime, end: datetime, *, limit: int | None = None) -> tuple[Window, ...]:
        """The grid windows tiling [start, end). Both bounds must be boundaries and end > start; with `limit`,
        more than `limit` windows is an error (checked without building them all)."""
        start = require_aware(start, "start")
        end = require_aware(end, "end")
        if end <= start:
            raise WindowError(
                f"end {_iso(end)} is not after start {_iso(start)}",
                value=(start, end),
                problem="is not after start",
                hint="give start < end; the range is half-open [start, end)",
            )
        off = [m for m in (self._off_grid("start", start), self._off_grid("end", end)) if m]
        if off:
            raise WindowError(
                f"[{_iso(start)}, {_iso(end)}): " + "; ".join(off),
                value=(start, end),
                problem="is not on the grid",
                hint="backfill bounds must be window boundaries of the source's interval",
            )
        if limit is not None and self.step_seconds is not None:
            count = (_epoch_seconds(end) - _epoch_seconds(start)) // self.step_seconds
            if count > limit:
                raise self._too_many(start, end, f"{count} windows", limit)
        windows: list[Window] = []
        for window in self.iter_windows(start):
            if window.low >= end:
                break
            if limit is not None and len(windows) == limit:
                raise self._too_many(start, end, f"more than {limit} windows", limit)
            windows.append(window)
        return tuple(windows)

    def _too_many(self, start: DateTime, end: DateTime, count: str, limit: int) -> WindowError:
        return WindowError(
            f"[{_iso(start)}, {_iso(end)}) spans {count} of {self.text!r}, more than the limit of {limit}",
            value=(start, end),
            problem=f"spans more than {limit} windows",
            hint="split the range into smaller backfills or raise backfill.max_windows",
        )


def settled_high(schedule: Schedule, clock: datetime, settle: timedelta) -> DateTime:
    """The settle cutoff: the end of the latest window that is due at `clock` (high + settle <= clock)."""
    clock = require_aware(clock, "clock")
    if settle < timedelta(0):
        raise WindowError(f"settle {settle} is negative", value=settle, problem="is negative")
    return schedule.floor(clock - settle)


def latest_settled_window(schedule: Schedule, clock: datetime, settle: timedelta) -> Window:
    """The latest window that is due at `clock`."""
    high = settled_high(schedule, clock, settle)
    return Window(schedule.previous_boundary(high), high)


def backfill_windows(
    schedule: Schedule,
    start: datetime,
    end: datetime,
    *,
    clock: datetime,
    settle: timedelta,
    limit: int | None,
    clock_name: str = "clock",
) -> tuple[Window, ...]:
    """The windows a backfill of [start, end) requested at `clock` covers: on the grid, at most `limit`, and
    ending no later than the latest settled window (later rows may still be arriving: the live schedule
    exports them)."""
    windows = schedule.windows_between(start, end, limit=limit)
    latest = latest_settled_window(schedule, clock, settle)
    if windows[-1].high > latest.high:
        raise WindowError(
            f"end {_iso(end)} is after the latest settled window {latest} at {clock_name} "
            f"{_iso(require_aware(clock, 'clock'))}",
            value=end,
            problem=f"is after the latest settled window {latest}",
            hint="windows after it are exported by the live schedule",
        )
    return windows


def due_windows(schedule: Schedule, clock: datetime, settle: timedelta, since: datetime | None, cap: int) -> Due:
    """The windows a tick at `clock` should plan: every window with high + settle <= clock, from `since`
    (the end of what was already planned) on, oldest first, at most `cap`; the rest is `gap`, which later
    ticks plan (never skipped). `since=None` plans only the latest due window.

    A `since` that is off the grid (the interval was changed) yields one short first window [since, next
    boundary) so that nothing is skipped and nothing is exported twice.
    """
    if cap < 1:
        raise WindowError(f"cap {cap} is less than 1", value=cap, problem="is less than 1")
    last_high = settled_high(schedule, clock, settle)
    if since is None:
        return Due(windows=(latest_settled_window(schedule, clock, settle),), gap=None)
    since = require_aware(since, "since")
    if since >= last_high:
        return Due(windows=(), gap=None)
    windows: list[Window] = []
    low = since
    if not schedule.is_boundary(since):
        high = schedule.next_boundary(since)  # <= last_high: that is a boundary after since
        windows.append(Window(since, high))
        low = high
    for window in schedule.iter_windows(low):
        if window.low >= last_high or len(windows) == cap:
            break
        windows.append(window)
    gap_low = windows[-1].high
    gap = Window(gap_low, last_high) if gap_low < last_high else None
    return Due(windows=tuple(windows), gap=gap)
