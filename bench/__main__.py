"""`python -m bench`: both scenarios through the pipeline and through the baseline loop, then the stack stops.

Exit status 1 on an error (stack, a failed export, a timeout); missing the performance target only prints
a loud warning.
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

from bench import cost
from bench.baseline import BaselineRun, ClientPool, run_baseline
from bench.metrics import ChainFigures, chain_figures, percentile
from bench.pipeline import Emulator, PipelineRun, run_scenario
from bench.profile import firestore_round_trips, keepalive_probe
from bench.scenarios import BASELINE_INSTANCE, HOURS, PROJECT, SCENARIOS, START, WORKER, Scenario, config_doc
from bench.seed import seed
from local.driver import Driver
from local.ports import port_free, wait_ports_free
from local.stack import REPO, Stack, StackError, StackInfo
from shared.core.config import parse_config
from shared.core.templates import Templates

STATE_DIR = REPO / ".stack-bench"
PORT_BASE = 18100
PORT_WAIT_SECONDS = 75.0
TARGET_DEAD_MEDIAN = 0.25
TARGET_UTILISATION = 0.9


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
    print(
        "  pipeline dead time, median / p95 ms:"
        f"  detect (endTime -> claim starts) {_ms(percentile(pipeline.detect, 0.5)).strip()} / "
        f"{_ms(percentile(pipeline.detect, 0.95)).strip()},"
        f"  submit (claim + export call -> insertTime) {_ms(percentile(pipeline.submit, 0.5)).strip()} / "
        f"{_ms(percentile(pipeline.submit, 0.95)).strip()}"
    )
    op_seconds = base_figs.busy_seconds / base_figs.operations
    fraction, floor, cap = WORKER["poll_fraction"], WORKER["poll_initial_seconds"], WORKER["poll_max_seconds"]
    interval = min(cap, max(floor, op_seconds * fraction))
    print(
        f"  worker poll interval when a {op_seconds:.2f} s export ends: {interval * 1000:.0f} ms "
        f"(so DONE is seen on average ~{interval * 500:.0f} ms + one operations.get after endTime)"
    )


def _stats(samples: Sequence[float]) -> str:
    return f"{_ms(percentile(samples, 0.5))} {_ms(percentile(samples, 0.95))} {len(samples):>5}"


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
    args = parser.parse_args(argv)
    began = time.monotonic()
    found: dict[str, float] = {}

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
            timeout = 30 + scenario.exports * (scenario.seconds + 1.0)
            pipeline = run_scenario(driver, emulator, scenario, timeout)
            since = time.time()
            baseline = run_baseline(pool, PROJECT, BASELINE_INSTANCE, scenario.requests(config, templates))
            base_figs = chain_figures(emulator.operations(BASELINE_INSTANCE, since))
            report(scenario, pipeline, baseline, base_figs)
            results.append((scenario, pipeline, baseline))

        print("\n== round trips on the critical path (in-process, ms: median p95 samples)")
        polls = [s for _, _, b in results for s in b.poll_seconds]
        submits = [s for _, _, b in results for s in b.submit_seconds]
        print(f"  {'baseline operations.get':<52} {_stats(polls)}")
        print(f"  {'baseline instances.export':<52} {_stats(submits)}")
        last_op = results[-1][2].operation_names[-1]
        for name, samples in keepalive_probe(config.sqladmin_endpoint, PROJECT, last_op).items():
            print(f"  {'operations.get, ' + name:<52} {_stats(samples)}")
        for name, samples in firestore_round_trips(driver.clients).items():
            print(f"  {'firestore ' + name:<52} {_stats(samples)}")

        s1 = results[0][1].figures
        found.update(dead_median_ms=round(s1.dead_median * 1000, 1), utilisation=round(s1.utilisation, 3))
        met = s1.dead_median < TARGET_DEAD_MEDIAN and s1.utilisation > TARGET_UTILISATION
        verdict = (
            f"median dead time {s1.dead_median * 1000:.0f} ms (< {TARGET_DEAD_MEDIAN * 1000:.0f}), "
            f"utilisation {s1.utilisation:.3f} (> {TARGET_UTILISATION})"
        )
        if met:
            print(f"\n== target MET for the 2 s case: {verdict}")
        else:
            print(f"\n{'!' * 100}\n!!! TARGET MISSED for the 2 s case: {verdict}\n{'!' * 100}")
    except Exception as exc:
        traceback.print_exc()
        print(f"\nbench failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            stack.down()
            print(f"\n== bench stack stopped; total {time.monotonic() - began:.1f} s")
    print("\n== cost model (python -m bench.cost): a simulated day of each reference deployment, priced")
    found.update(cost.run())
    print("BENCH " + json.dumps(found, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
