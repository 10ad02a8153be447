"""`python -m bench.polling_curve`: calls per export against dead time, for a few polling settings.

The worker's real chain (planner's tasks, lease, budget, polling) runs in-process on the fake clock against the
in-memory Admin API (shared/testing), with exports of `--seconds` +/- `--jitter` (uniform, seeded): a backfill of
`--windows` windows x (schema + `--tables` tables). The fake API answers at once, so dead time here is the polling's
own detection lag: what a setting trades for its calls. The stack runs of `python -m bench` add the round trips.

Every Admin API call counts (export, operations.get, operations.list). Settings are `worker` overrides; the budget is
set out of the way (10,000 a minute) so that the curve is the schedule's own, not the budget's.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pendulum

from bench.metrics import percentile
from shared.core.config import parse_config
from shared.core.tasks import BACKFILL_PRIORITY, window_tasks
from shared.core.templates import Templates
from shared.core.windows import Window
from shared.testing.services import FakeServices

START = pendulum.datetime(2026, 3, 2, tz="UTC")
INSTANCE = "cdc-bench:curve-pg"
UNBOUNDED_BUDGET = 10_000

SETTINGS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("growing 0.05 (main)", {"poll_window_calls": 0, "poll_fraction": 0.05}),
    ("growing 0.2", {"poll_window_calls": 0, "poll_fraction": 0.2}),
    ("forecast, 2 calls", {"poll_window_calls": 2}),
    ("forecast, 4 calls", {"poll_window_calls": 4}),
    ("forecast, 6 calls", {"poll_window_calls": 6}),
    ("forecast, 8 calls", {"poll_window_calls": 8}),
    ("forecast, 10 calls (default)", {"poll_window_calls": 10}),
    ("forecast, 12 calls", {"poll_window_calls": 12}),
)


@dataclass(frozen=True)
class CurvePoint:
    label: str
    exports: int
    calls_per_export: float
    calls_per_export_warm: float  # exports after the run's first (which has no history at all)
    dead_median_ms: float
    dead_p95_ms: float


def config_doc(tables: int, worker: dict[str, Any]) -> dict[str, Any]:
    return {
        "project": "cdc-bench",
        "region": "europe-west1",
        "bucket": "cdc-bench",
        "worker": {"budget_seconds": 300, "api_calls_per_minute": UNBOUNDED_BUDGET, **worker},
        "sources": [
            {
                "name": "curve",
                "instance": INSTANCE,
                "database": "app",
                "interval": "1h",
                "tables": [{"name": f"t{i}", "template": "orders.sql"} for i in range(tables)],
            }
        ],
    }


def run_point(
    label: str, worker: dict[str, Any], *, seconds: float, jitter: float, windows: int, tables: int, seed: int = 1
) -> CurvePoint:
    """One setting: the backfill through the chain; figures from the fake API's own operation times and calls."""
    config = parse_config(config_doc(tables, worker))
    svc = FakeServices(config, start=START.add(days=2), duration=seconds)
    svc.sqladmin.jitter(jitter, seed=seed)
    source = config.sources[0]
    spans = [Window(START.add(hours=h), START.add(hours=h + 1)) for h in range(windows)]
    svc.state.create_tasks(window_tasks(source, spans, priority=BACKFILL_PRIORITY, offload=False))
    with contextlib.redirect_stdout(io.StringIO()):
        svc.drain(INSTANCE, Templates(), max_invocations=10_000)
    ops = sorted(svc.sqladmin._operations.values(), key=lambda op: op.inserted)  # the fake's own record
    if len(ops) != windows * (tables + 1) or any(op.error or op.ended is None for op in ops):
        raise RuntimeError(f"{label}: expected {windows * (tables + 1)} clean exports, got {len(ops)}")
    dead = [nxt.inserted - prev.ended for prev, nxt in itertools.pairwise(ops) if prev.ended is not None]
    per_export = calls_per_export(svc.sqladmin.calls)
    return CurvePoint(
        label,
        len(ops),
        sum(per_export) / len(per_export),
        sum(per_export[1:]) / max(1, len(per_export) - 1),
        percentile(dead, 0.5) * 1000,
        percentile(dead, 0.95) * 1000,
    )


def calls_per_export(calls: Sequence[str]) -> list[int]:
    """Each export's calls: from its own `export` call up to the next one (the first export also owns the calls
    made before it)."""
    counts, exported = [0], False
    for call in calls:
        if call == "export" and exported:
            counts.append(0)
        exported = exported or call == "export"
        counts[-1] += 1
    return counts if exported else []


def curve(*, seconds: float, jitter: float, windows: int, tables: int) -> list[CurvePoint]:
    return [
        run_point(label, worker, seconds=seconds, jitter=jitter, windows=windows, tables=tables)
        for label, worker in SETTINGS
    ]


def report(points: Sequence[CurvePoint], seconds: float, jitter: float) -> None:
    print(f"\n== polling trade-off: exports of {seconds:g} s +/- {jitter:.0%}, in-process (fake clock), one chain")
    print(f"   {'setting':<30} {'exports':>7} {'calls/export':>12} {'(warm)':>7} {'dead ms':>8} {'p95 ms':>8}")
    for p in points:
        print(
            f"   {p.label:<30} {p.exports:>7} {p.calls_per_export:>12.1f} {p.calls_per_export_warm:>7.1f}"
            f" {p.dead_median_ms:>8.0f} {p.dead_p95_ms:>8.0f}"
        )
    print("   (warm: every export but the run's first, which has no history: the growing schedule polls it)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.polling_curve", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="export duration (default 20)")
    parser.add_argument("--jitter", type=float, default=0.05, help="relative jitter, uniform (default 0.05)")
    parser.add_argument("--windows", type=int, default=4, help="backfill windows (default 4)")
    parser.add_argument("--tables", type=int, default=4, help="tables besides the schema (default 4)")
    args = parser.parse_args(argv)
    points = curve(seconds=args.seconds, jitter=args.jitter, windows=args.windows, tables=args.tables)
    report(points, args.seconds, args.jitter)
    default = next(p for p in points if "(default)" in p.label)
    found = {
        "curve_default_calls_per_export": round(default.calls_per_export, 2),
        "curve_default_dead_median_ms": round(default.dead_median_ms, 1),
    }
    print("BENCH " + json.dumps(found, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
