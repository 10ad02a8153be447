"""`python -m bench`: the chain's scenarios on the bench stack, the polling trade-off curve, the cost model.

s1 (2 s exports, a tick) and s2 (0.5 s, a backfill) through the pipeline and through the baseline loop (the
direct-client floor, run in this process); s3, the realistic case (20 s +/- 5 %, no history at first): dead time and
Admin API calls per export; s4, five instances at once under one call budget: the busiest minute's calls; then the
in-process polling curve (bench/polling_curve.py) and the cost model (bench/cost.py). The last line is
`BENCH {json}`. Exit status 1 on an error (stack, a failed export, a timeout); a missed target prints a loud warning.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import cost, packing, polling_curve
from bench.baseline import BaselineRun, ClientPool, run_baseline
from bench.metrics import ChainFigures, chain_figures, percentile
from bench.multi import QUOTA_PER_MINUTE, run_multi
from bench.multi import report as report_multi
from bench.pipeline import Emulator, PipelineRun, run_scenario
from bench.profile import firestore_round_trips, keepalive_probe
from bench.scenarios import (
    BASELINE_INSTANCE,
    HOURS,
    PROJECT,
    REALISTIC,
    SCENARIOS,
    START,
    WORKER,
    Scenario,
    config_doc,
)
from bench.seed import seed
from local.driver import Driver
from local.ports import port_free, wait_ports_free
from local.stack import REPO, Stack, StackError, StackInfo
from shared.core.config import Config, parse_config
from shared.core.templates import Templates

STATE_DIR = REPO / ".stack-bench"
PORT_BASE = 18100
PORT_WAIT_SECONDS = 75.0
TARGET_DEAD_MEDIAN = 0.25
TARGET_UTILISATION = 0.9
TARGET_BASELINE_RATIO = 1.5  # 2 s case: pipeline dead time over the direct-client loop's
TARGET_REALISTIC_DEAD = 0.3
TARGET_REALISTIC_CALLS = 10
PARTS = ("s1", "s2", "packing", "s3", "s4", "curve", "cost")
"""What `--only` may choose: the scenarios (s3 is the realistic case, s4 the multi-instance one), the packing
benchmark, the polling curve and the cost model. The default runs them all."""
ALIASES = {"realistic": "s3", "multi": "s4"}


def parts(text: str | None) -> frozenset[str]:
    """The parts named by `--only` (comma separated); every part when None."""
    if text is None:
        return frozenset(PARTS)
    chosen = {ALIASES.get(name.strip(), name.strip()) for name in text.split(",") if name.strip()}
    unknown = sorted(chosen - set(PARTS))
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"--only {text!r}: unknown part(s) {unknown}; choose among {', '.join(PARTS)} (or realistic, multi)"
        )
    return frozenset(chosen)


def _ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:7.0f}"


def _row(label: str, f: ChainFigures, wall: float) -> str:
    return (
        f"  {label:<10} {f.operations:>4} {_ms(f.dead_median)} {_ms(f.dead_p95)} {_ms(max(f.dead, default=math.nan))}"
        f" {f.utilisation:6.3f} {f.span_seconds:7.2f} {wall:7.2f}"
    )


def _ratio(a: float, b: float) -> str:
    return f"{a / b:7.2f}" if b else "      -"


def report(scenario: Scenario, pipeline: PipelineRun, baseline: BaselineRun, base_figs: ChainFigures) -> None:
    p = pipeline.figures
    print(f"\n== {scenario.key}: {scenario.title}")
    header = ("ops", "dead ms", "p95 ms", "max ms", "util", "span s", "wall s")
    print(f"  {'run':<10} {header[0]:>4} " + " ".join(f"{h:>{6 if h == 'util' else 7}}" for h in header[1:]))
    print(_row("pipeline", p, pipeline.wall_seconds))
    print(_row("baseline", base_figs, baseline.wall_seconds))
    print(
        f"  {'ratio':<10} {'':>4} {_ratio(p.dead_median, base_figs.dead_median)} "
        f"{_ratio(p.dead_p95, base_figs.dead_p95)} {'':>7} {_ratio(p.utilisation, base_figs.utilisation)[1:]} "
        f"{_ratio(p.span_seconds, base_figs.span_seconds)} {_ratio(pipeline.wall_seconds, baseline.wall_seconds)}"
    )
    print(
        f"  pipeline wall = trigger published -> last export DONE; first export {pipeline.first_export_seconds:.2f} s "
        f"after the trigger (planner + Pub/Sub push), chain idle after {pipeline.idle_seconds:.2f} s.\n"
        "  baseline wall = first submit -> last DONE seen. span = first insertTime -> last endTime."
    )
    _breakdown(pipeline)
    _calls(pipeline)


def _breakdown(pipeline: PipelineRun) -> None:
    def pair(samples: Sequence[float]) -> str:
        return f"{_ms(percentile(samples, 0.5)).strip()} / {_ms(percentile(samples, 0.95)).strip()}"

    print(
        f"  pipeline dead time, median / p95 ms: DONE seen (endTime -> the answer of the operations.get that saw it)"
        f" {pair(pipeline.seen)}; then the next export (that answer -> its insertTime) {pair(pipeline.act)}"
    )


def _calls(pipeline: PipelineRun) -> None:
    calls = pipeline.calls_per_export
    if calls:
        print(
            f"  Admin API calls per export: {sum(calls) / len(calls):.1f} (first export {calls[0]}, "
            f"the others {_mean(calls[1:]):.1f}; every call about the instance, from the emulator's log)"
        )


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def report_realistic(scenario: Scenario, pipeline: PipelineRun) -> None:
    p = pipeline.figures
    print(f"\n== {scenario.key}: {scenario.title}")
    print(
        f"  {p.operations} exports, dead time median {_ms(p.dead_median).strip()} ms, p95 {_ms(p.dead_p95).strip()} ms,"
        f" max {_ms(max(p.dead, default=math.nan)).strip()} ms; utilisation {p.utilisation:.3f}; span "
        f"{p.span_seconds:.1f} s"
    )
    _breakdown(pipeline)
    _calls(pipeline)


def _verdict(case: str, met: bool, detail: str) -> None:
    if met:
        print(f"\n== target MET for {case}: {detail}")
    else:
        print(f"\n{'!' * 100}\n!!! TARGET MISSED for {case}: {detail}\n{'!' * 100}")


def _stats(samples: Sequence[float]) -> str:
    return f"{_ms(percentile(samples, 0.5))} {_ms(percentile(samples, 0.95))} {len(samples):>5}"


def _scenario_figures(key: str, pipeline: PipelineRun, base_figs: ChainFigures) -> dict[str, Any]:
    """The BENCH line's figures of s1 (and its verdict) or s2."""
    p = pipeline.figures
    if key == "s2":
        return {
            "s2_dead_median_ms": round(p.dead_median * 1000, 1),
            "s2_baseline_dead_median_ms": round(base_figs.dead_median * 1000, 1),
            "s2_calls_per_export": round(_mean(pipeline.calls_per_export), 2),
        }
    ratio = p.dead_median / base_figs.dead_median
    _verdict(
        "the 2 s case",
        ratio <= TARGET_BASELINE_RATIO and p.utilisation > TARGET_UTILISATION,
        f"median dead time {p.dead_median * 1000:.0f} ms = {ratio:.2f} x the direct-client loop's "
        f"{base_figs.dead_median * 1000:.0f} ms (<= {TARGET_BASELINE_RATIO}), utilisation {p.utilisation:.3f} "
        f"(> {TARGET_UTILISATION})",
    )
    return {
        "dead_median_ms": round(p.dead_median * 1000, 1),
        "baseline_dead_median_ms": round(base_figs.dead_median * 1000, 1),
        "utilisation": round(p.utilisation, 3),
        "s1_calls_per_export": round(_mean(pipeline.calls_per_export), 2),
    }


def _realistic_figures(realistic: PipelineRun) -> dict[str, Any]:
    """The BENCH line's figures of the realistic case, and its verdict."""
    real, real_calls = realistic.figures, realistic.calls_per_export
    warm = _mean(real_calls[1:])
    _verdict(
        "the realistic case",
        real.dead_median <= TARGET_REALISTIC_DEAD and warm <= TARGET_REALISTIC_CALLS,
        f"median dead time {real.dead_median * 1000:.0f} ms (<= {TARGET_REALISTIC_DEAD * 1000:.0f}), "
        f"{warm:.1f} Admin API calls per export with history (<= {TARGET_REALISTIC_CALLS}; "
        f"{_mean(real_calls):.1f} counting the first, which has none)",
    )
    return {
        "realistic_dead_median_ms": round(real.dead_median * 1000, 1),
        "realistic_dead_p95_ms": round(real.dead_p95 * 1000, 1),
        "calls_per_export": round(warm, 2),
        "calls_per_export_all": round(_mean(real_calls), 2),
        "calls_per_export_first": real_calls[0] if real_calls else None,
    }


def _round_trips(results: list[tuple[Scenario, PipelineRun, BaselineRun, ChainFigures]], config: Config,
                 driver: Driver) -> None:  # fmt: skip
    print("\n== round trips on the critical path (in-process, ms: median p95 samples)")
    polls = [s for _, _, b, _ in results for s in b.poll_seconds]
    submits = [s for _, _, b, _ in results for s in b.submit_seconds]
    print(f"  {'baseline operations.get':<52} {_stats(polls)}")
    print(f"  {'baseline instances.export':<52} {_stats(submits)}")
    last_op = results[-1][2].operation_names[-1]
    for name, samples in keepalive_probe(config.sqladmin_endpoint, PROJECT, last_op).items():
        print(f"  {'operations.get, ' + name:<52} {_stats(samples)}")
    for name, samples in firestore_round_trips(driver.clients).items():
        print(f"  {'firestore ' + name:<52} {_stats(samples)}")


def _up(stack: Stack) -> StackInfo:
    """Start the stack once its ports are free. The base lies inside Linux's ephemeral range (32768-60999):
    another process's short-lived client connections can hold one of its ports in TIME_WAIT for up to 60 s."""
    ports = list(stack.ports.as_dict().values())
    if not all(port_free(p) for p in ports):
        print("   a port of the bench stack is held (TIME_WAIT of another process's connection); waiting")
        busy = wait_ports_free(ports, timeout=PORT_WAIT_SECONDS)
        if busy:
            raise StackError(f"ports {busy} still in use after {PORT_WAIT_SECONDS:.0f} s")
    return stack.up()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="leave the bench stack running afterwards")
    parser.add_argument(
        "--port-base",
        type=int,
        default=int(os.environ.get("CDC_BENCH_PORT_BASE", PORT_BASE)),
        help=f"first port of the bench stack (env CDC_BENCH_PORT_BASE; default {PORT_BASE})",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(os.environ.get("CDC_BENCH_STACK_DIR", STATE_DIR)),
        help=f"state folder of the bench stack (env CDC_BENCH_STACK_DIR; default {STATE_DIR})",
    )
    parser.add_argument(
        "--only",
        type=parts,
        default=None,
        help=f"run only these parts, comma separated ({', '.join(PARTS)}; realistic = s3, multi = s4); default all",
    )
    args = parser.parse_args(argv)
    only: frozenset[str] = args.only or frozenset(PARTS)
    began = time.monotonic()
    found: dict[str, Any] = {}

    state_dir: Path = args.state_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    config_path = state_dir / "bench_config.json"
    doc = config_doc()
    config_path.write_text(json.dumps(doc, indent=2) + "\n")
    stack = Stack(state_dir=state_dir, port_base=args.port_base, config_path=config_path)
    print(f"== bench stack in {state_dir} (port base {args.port_base})")
    try:
        info = _up(stack)
        print(f"   up in {info.startup_seconds:.1f} s (started {len(info.started)}, reused {len(info.reused)})")
        if info.reused:
            stack.reset()
            stack.restart_functions(config_path=config_path)
        os.environ.update(stack.env())
        config = parse_config(doc, sqladmin_endpoint=stack.env()["CDC_SQLADMIN_ENDPOINT"])
        rows = seed(stack.pg_dsn("postgres"), START, HOURS)
        print(f"   seeded database '{config.sources[0].database}': 8 tables x {rows} rows")
        print("   worker settings: " + ", ".join(f"{k}={v}" for k, v in WORKER.items() if k.startswith("poll")))
        driver = Driver(config)
        emulator = Emulator(stack.env()["CDC_SQLADMIN_ENDPOINT"])
        pool = ClientPool(config.sqladmin_endpoint)
        templates = Templates()

        results = []
        for scenario in SCENARIOS:
            if scenario.key not in only:
                continue
            timeout = 30 + scenario.exports * (scenario.seconds + 1.0)
            pipeline = run_scenario(driver, emulator, scenario, timeout)
            since = time.time()
            baseline = run_baseline(pool, PROJECT, BASELINE_INSTANCE, scenario.requests(config, templates))
            base_figs = chain_figures(emulator.operations(BASELINE_INSTANCE, since))
            report(scenario, pipeline, baseline, base_figs)
            results.append((scenario, pipeline, baseline, base_figs))
            found.update(_scenario_figures(scenario.key, pipeline, base_figs))

        if results:
            _round_trips(results, config, driver)
        if "packing" in only:
            found.update(packing.run(stack))
        if "s3" in only:
            timeout = 60 + REALISTIC.exports * (REALISTIC.seconds * 1.1 + 2)
            realistic = run_scenario(driver, emulator, REALISTIC, timeout)
            report_realistic(REALISTIC, realistic)
            found.update(_realistic_figures(realistic))
        if "s4" in only:
            multi = run_multi(driver, emulator, timeout=300)
            report_multi(multi)
            found.update(
                calls_per_minute_peak=multi.calls_per_minute_peak,
                multi_http_429=multi.http_429,
                multi_calls_per_export=round(multi.calls_per_export, 2),
                multi_dead_median_ms=round(multi.dead_median_ms, 1),
            )
            _verdict(
                "the multi-instance case",
                multi.calls_per_minute_peak <= QUOTA_PER_MINUTE and multi.http_429 == 0,
                f"busiest minute {multi.calls_per_minute_peak} calls (<= {QUOTA_PER_MINUTE}), {multi.http_429} x 429",
            )
    except Exception as exc:
        traceback.print_exc()
        print(f"\nbench failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            stack.down()
            print(f"\n== bench stack stopped; total {time.monotonic() - began:.1f} s")
    if "curve" in only:
        points = polling_curve.curve(seconds=20.0, jitter=0.05, windows=4, tables=4)
        polling_curve.report(points, 20.0, 0.05)
        found["curve"] = {p.label: [round(p.calls_per_export_warm, 1), round(p.dead_median_ms)] for p in points}
    if "cost" in only:
        print("\n== cost model (python -m bench.cost): a simulated day of each reference deployment, priced")
        found.update(cost.run())
    print("BENCH " + json.dumps(found, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
