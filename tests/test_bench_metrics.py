"""The benchmark's call accounting (bench/metrics.py): calls per export and the busiest minute."""

from __future__ import annotations

from typing import Any

from bench.metrics import busiest_minute, calls_by_export
from bench.polling_curve import calls_per_export


def call(at: float, verb: str, status: int = 200) -> dict[str, Any]:
    return {"at": at, "verb": verb, "status": status, "instance": "pg", "operation": None}


def test_each_export_owns_its_calls_up_to_the_next_accepted_export() -> None:
    calls = [
        call(0.0, "list"),  # recovery, before the first export: the first export's
        call(0.1, "export"),
        call(0.2, "get"),
        call(0.3, "get"),
        call(0.4, "export", 409),  # refused: the running export's
        call(1.0, "get"),
        call(1.1, "export"),
        call(1.2, "get", 429),
    ]
    assert calls_by_export(calls) == [6, 2]
    assert calls_by_export([call(0.0, "list")]) == []
    assert calls_per_export(["list", "export", "get", "get", "export", "get"]) == [4, 2]


def test_the_busiest_minute_is_the_most_calls_in_any_60_seconds() -> None:
    assert busiest_minute([]) == 0
    assert busiest_minute([0, 10, 59.9, 60, 61, 130]) == 4  # 10, 59.9, 60, 61 (0 and 60 are 60 s apart)


def test_breakdown_splits_each_gap_at_the_poll_that_saw_done() -> None:
    from bench.pipeline import breakdown

    ops = [
        {"name": "a", "insertTime": "2026-01-01T00:00:00.000Z", "endTime": "2026-01-01T00:00:02.000Z"},
        {"name": "b", "insertTime": "2026-01-01T00:00:02.100Z", "endTime": "2026-01-01T00:00:04.000Z"},
        {"name": "c", "insertTime": "2026-01-01T00:00:04.300Z", "endTime": "2026-01-01T00:00:06.000Z"},
    ]
    t0 = 1767225600.0  # 2026-01-01T00:00:00Z
    calls = [
        {"verb": "get", "status": 200, "operation": "a", "at": t0 + 1.9},
        {"verb": "get", "status": 200, "operation": "a", "at": t0 + 2.06},
        {"verb": "get", "status": 503, "operation": "b", "at": t0 + 4.1},
        {"verb": "list", "status": 200, "operation": None, "at": t0 + 4.2},
    ]
    seen, act = breakdown(ops, calls)
    assert [round(x, 3) for x in seen] == [0.06]  # b's DONE was seen by a listing only: left out
    assert [round(x, 3) for x in act] == [0.04]
