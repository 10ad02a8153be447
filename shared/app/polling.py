"""When to poll an export's operation: sparsely before the moment it is predicted to end, densely around it.

A poll (`operations.get`) costs quota, shared by every chain of the project (shared/app/budget.py); a poll too late
costs dead time, the instance idling between one export's end and the next one's start. Cloud SQL exports have a
large fixed overhead, so a table's recent durations predict the next one well. Pure: no clock, no I/O.

- `forecast`: from recent durations (seconds from the API accepting an export to its end), the window [low, high]
  in which the next export is expected to end. With three or more durations their own spread sets the margin
  (k draws of a duration fall short of its true range by about range / (k - 1) at each end); with fewer, a
  configured fraction of the median does. Durations far from the median (a retry's wait, a one-off) are left out.
  `predict` chooses the durations: the table's own, joined by the instance's of a similar length while the table
  has few.
- `PollPlan.delay`: at an export's age, how long to wait before the next poll. Before the window: one wait until
  its first poll (at most `poll_sparse_seconds`, so a long export is still looked at now and then). Inside it:
  `calls` polls up to its end, closer together towards the end (`TAPER`). Past it (the forecast was wrong):
  intervals as long as the overrun so far (doubling), from one step up to `poll_max_seconds`. When nothing
  predicts the end: the growing schedule (`poll_fraction` of the age, between `poll_initial_seconds` and
  `poll_max_seconds`).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from shared.core.config import WorkerSettings

MIN_INTERVAL_SECONDS = 0.01
"""No two polls closer than this: below it a poll's own round trip dominates."""
MIN_MARGIN_FRACTION = 0.01
"""However steady the durations, the window is at least this fraction of the duration wide on each side."""
OUTLIER_FACTOR = 2.0
"""Durations more than this factor away from the median are left out of the window."""
SELF_MEASURED = 3
"""From this many durations on, a set measures its own spread (and a table needs no other table's)."""
TAPER = 1.5
"""The k-th of a window's n polls is at `low + width * (1 - (1 - k / n) ** TAPER)`: intervals shrink towards the
window's end. An early poll is paid for whenever the export is still running then (nearly always), a late one only
if it is still running that late; so for an end spread over the window, polls are worth more late than early (the
classic inspection schedule: intervals that shrink as the end draws near). Measured in-process on exports of 20 s
+/- 5 % (bench/polling_curve.py's engine, 60 seeds): at about the same Admin API calls per export, 10 tapered polls
detect the end sooner than 8 evenly spaced ones (median 137 ms against 160 ms, 6.0 calls against 5.8); 1 keeps them
evenly spaced."""
"""From this many durations on, a set measures its own spread (and a table needs no other table's)."""

_EPSILON = 1e-6
"""A poll that lands a hair before its planned time counts as made (float arithmetic, clocks' resolution)."""

Basis = Literal["table", "instance"]


@dataclass(frozen=True)
class Forecast:
    """The export is expected to end between `low` and `high` seconds after the API accepted it."""

    low: float
    high: float
    basis: Basis
    """`table`: the table's own recent exports; `instance`: this chain's recent exports of other tables."""
    samples: int


def forecast(durations: Sequence[float], spread: float, basis: Basis) -> Forecast | None:
    """The window in which the next export ends, from recent durations in seconds; None without any."""
    known = [d for d in durations if d > 0 and math.isfinite(d)]
    if not known:
        return None
    median = statistics.median(known)
    kept = [d for d in known if median / OUTLIER_FACTOR <= d <= median * OUTLIER_FACTOR]
    shortest, longest = min(kept), max(kept)
    if len(kept) >= SELF_MEASURED:
        margin = max((longest - shortest) / (len(kept) - 1), MIN_MARGIN_FRACTION * median)
    else:
        margin = spread * median
    return Forecast(max(0.0, shortest - margin), longest + margin, basis, len(kept))


def predict(table: Sequence[float], instance: Sequence[float], spread: float) -> Forecast | None:
    """The forecast from a table's own recent durations and the instance's (other tables, newest first).

    While the table has fewer than `SELF_MEASURED` durations of its own, the instance's durations of a similar
    length (within `OUTLIER_FACTOR` of the table's median) join them: exports of similar tables on one instance
    vary alike, and more durations measure the spread instead of assuming it. A table with no duration of its own
    is forecast from the instance's alone."""
    own = [d for d in table if d > 0 and math.isfinite(d)]
    if not own:
        return forecast(instance, spread, "instance")
    if len(own) < SELF_MEASURED:
        median = statistics.median(own)
        own += [d for d in instance if median / OUTLIER_FACTOR <= d <= median * OUTLIER_FACTOR]
    return forecast(own, spread, "table")


def window_calls(wanted: int, affordable: float) -> int:
    """How many polls to spread over the window: as configured, fewer if the chain's share of the call budget
    cannot pay for them before the window ends (at least one)."""
    return max(1, min(wanted, math.floor(affordable)))


@dataclass(frozen=True)
class PollPlan:
    """One export's polling schedule."""

    forecast: Forecast | None
    calls: int
    settings: WorkerSettings

    @property
    def step(self) -> float:
        """The mean interval between two polls inside the forecast window (its first is longer, its last shorter)."""
        if self.forecast is None:
            return self.settings.poll_initial_seconds
        return max(MIN_INTERVAL_SECONDS, (self.forecast.high - self.forecast.low) / max(1, self.calls))

    def dense_at(self, k: int) -> float:
        """The age of the window's k-th poll (1 to `calls`); the last one is at the window's end."""
        f = self.forecast
        assert f is not None, "dense polls need a forecast"
        n = max(1, self.calls)
        return f.low + (f.high - f.low) * (1.0 - (1.0 - min(k, n) / n) ** TAPER)

    def _dense_passed(self, age: float) -> int:
        """How many of the window's polls are planned at or before `age`."""
        f = self.forecast
        assert f is not None, "dense polls need a forecast"
        n = max(1, self.calls)
        if f.high <= f.low:
            return n if age + _EPSILON >= f.low else 0
        x = (age - f.low) / (f.high - f.low)
        if x < 0:
            return 0
        if x >= 1:
            return n
        k = math.floor(n * (1.0 - (1.0 - x) ** (1.0 / TAPER)) + _EPSILON)
        while k < n and self.dense_at(k + 1) <= age + _EPSILON:  # float rounding of the inversion
            k += 1
        while k > 0 and self.dense_at(k) > age + _EPSILON:
            k -= 1
        return k

    def opens_by(self, age: float) -> bool:
        """Whether the export may end by `age`: its forecast window has opened (always, without a forecast). The
        chain claims the next task from then on, so that only its export call is left for the moment it ends."""
        return self.forecast is None or age + _EPSILON >= self.forecast.low

    def delay(self, age: float, *, first: bool = False) -> float:
        """Seconds to wait before the next poll of an export accepted `age` seconds ago. `first`: nothing was read
        yet; an export that may already be over (a resumed one) is read at once."""
        f = self.forecast
        if first and age >= (f.low if f is not None else self.settings.poll_initial_seconds):
            return 0.0
        if f is None:
            return self._growing(age)
        passed = self._dense_passed(age)
        if passed < 1:
            wait = min(self.dense_at(1) - age, self.settings.poll_sparse_seconds)
        elif passed < self.calls:
            wait = self.dense_at(passed + 1) - age
        else:  # overrun: back off from the window's end, doubling (as long as it has overrun), up to poll_max
            wait = max(self.step, min(age - f.high, self.settings.poll_max_seconds))
        return max(MIN_INTERVAL_SECONDS, wait)

    def _growing(self, age: float) -> float:
        s = self.settings
        return min(s.poll_max_seconds, max(s.poll_initial_seconds, age * s.poll_fraction))
