"""Chain figures from the Admin API emulator's operation log: dead time, utilisation, span."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any


def timestamp(rfc3339: str) -> float:
    """Seconds since the epoch of an API time such as `2026-01-02T03:04:05.123Z`."""
    return datetime.fromisoformat(rfc3339).timestamp()


def percentile(values: Sequence[float], fraction: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class ChainFigures:
    """One run of consecutive operations on one instance."""

    operations: int
    dead: tuple[float, ...]  # previous endTime -> next insertTime, seconds
    busy_seconds: float  # sum of insertTime -> endTime
    span_seconds: float  # first insertTime -> last endTime
    first_insert: float
    last_end: float

    @property
    def dead_median(self) -> float:
        return percentile(self.dead, 0.5)

    @property
    def dead_p95(self) -> float:
        return percentile(self.dead, 0.95)

    @property
    def utilisation(self) -> float:
        return self.busy_seconds / self.span_seconds if self.span_seconds > 0 else math.nan


def chain_figures(operations: Sequence[dict[str, Any]]) -> ChainFigures:
    """Figures of finished operations (emulator summaries) on one instance, taken in insertion order."""
    ops = sorted(operations, key=lambda op: timestamp(op["insertTime"]))
    if not ops:
        raise ValueError("no operations to measure")
    unfinished = [op["name"] for op in ops if not op.get("endTime")]
    if unfinished:
        raise ValueError(f"{len(unfinished)} operation(s) never finished: {unfinished[:3]}")
    inserts = [timestamp(op["insertTime"]) for op in ops]
    ends = [timestamp(op["endTime"]) for op in ops]
    dead = tuple(nxt - prev for prev, nxt in zip(ends, inserts[1:], strict=False))
    busy = sum(end - start for start, end in zip(inserts, ends, strict=True))
    return ChainFigures(len(ops), dead, busy, ends[-1] - inserts[0], inserts[0], ends[-1])


def calls_by_export(calls: Sequence[dict[str, Any]]) -> list[int]:
    """How many Admin API calls each export cost, from the emulator's call log of one instance: an export's calls
    run from its accepted `export` call up to the next one (its polls, listings, and the refused submissions of the
    next); the first export also owns whatever came before it."""
    counts, exported = [0], False
    for call in sorted(calls, key=lambda c: c["at"]):
        accepted = call["verb"] == "export" and call["status"] == 200
        if accepted and exported:
            counts.append(0)
        exported = exported or accepted
        counts[-1] += 1
    return counts if exported else []


def busiest_minute(times: Sequence[float]) -> int:
    """The most calls in any 60 s (times in seconds)."""
    ordered, best, first = sorted(times), 0, 0
    for last, at in enumerate(ordered):
        while at - ordered[first] >= 60:
            first += 1
        best = max(best, last - first + 1)
    return best
