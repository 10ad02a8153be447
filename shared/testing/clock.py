"""A fake clock: time moves only when somebody sleeps (or a test advances it), so hours pass in microseconds."""

from __future__ import annotations

import pendulum


class FakeClock:
    """Follows shared.app.ports.Clock. `now` and `monotonic` move together."""

    def __init__(self, start: pendulum.DateTime | None = None) -> None:
        self._start = start or pendulum.datetime(2026, 1, 1, tz="UTC")
        self._elapsed = 0.0
        self.slept = 0.0

    def now(self) -> pendulum.DateTime:
        return self._start.add(microseconds=round(self._elapsed * 1_000_000))

    def monotonic(self) -> float:
        return self._elapsed

    def sleep(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"sleep length must be non-negative, not {seconds}")
        self._elapsed += seconds
        self.slept += seconds

    def advance(self, seconds: float) -> None:
        """Time passing outside the code under test (another worker, the scheduler)."""
        self._elapsed += seconds
