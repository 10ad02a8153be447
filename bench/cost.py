"""`python -m bench.cost`: what a deployment costs per month, from a simulated day of its real planner and chain.

Two reference deployments (small: 1 Cloud SQL instance x 10 tables, hourly; large: 5 instances x 50 tables, every
15 minutes) run for one fake-clock day in-process (bench/costsim.py), their counts are priced with the committed
price table (bench/prices.json, via bench/pricing.py) into a 30-day month, and the last line is `BENCH {json}`.
Assumptions and sources: docs/cost.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, replace
from typing import Any

from bench.costsim import LARGE, SMALL, Counts, Deployment, scaled, simulate, worker_billed_seconds
from bench.pricing import DailyUsage, billed_seconds, load_prices, memory_gib, monthly_cost, total, vcpu_for

# Deployment defaults (terraform/variables.tf, monitoring.tf, freshness.tf, completeness.tf).
FUNCTION_MEMORY = "512Mi"  # var.function_memory; no available_cpu is set, so the memory's default vCPU applies
ALERT_CONDITIONS = 6  # var.alerts: errors, dead_letters, lag, absent, repairs, schema_drift: one condition each
SCHEDULER_JOBS = 1  # the tick job
# Billed time the fake clock does not see: start-up and the Firestore, Pub/Sub and Cloud Storage round trips
# of each invocation (the fake clock moves only when the code sleeps).
PLANNER_SECONDS_PER_TICK = 1.0
WORKER_OVERHEAD_SECONDS = 0.5
# Firestore storage: every task, watermark-log entry and manifest document is kept (no TTL in terraform);
# the first month's average is half of what 30 days create.
DOC_KIB = 1.0
PUBSUB_MESSAGE_BYTES = 200  # a tick or work message with its attributes: under the 1000-byte minimum


@dataclass(frozen=True)
class Result:
    deployment: Deployment
    counts: Counts  # per day, all instances
    usage: DailyUsage
    cost: dict[str, float]
    cost_no_free: dict[str, float]
    simulated_instances: int
    seconds: float


def measure(deployment: Deployment, *, simulate_instances: int = 1, prices: dict[str, Any] | None = None) -> Result:
    """Simulate a day of `simulate_instances` of the deployment's identical, independent instances and scale to all
    of them (each instance has its own source and chain; the planner's per-source work adds up)."""
    prices = prices or load_prices()
    began = time.monotonic()
    n = min(simulate_instances, deployment.instances)
    sim = simulate(replace(deployment, instances=n), 24.0)
    factor = deployment.instances / n
    worker_billed = worker_billed_seconds(sim, WORKER_OVERHEAD_SECONDS) * factor
    ticks = sim.ticks
    counts = scaled(sim, factor)
    counts.ticks, counts.planner_invocations = ticks, ticks  # one planner invocation per tick, however many sources
    counts.tasks_open_at_end = round(sim.tasks_open_at_end * factor)
    planner_billed = ticks * billed_seconds(PLANNER_SECONDS_PER_TICK)
    # Kept documents: a task per export and about one watermark-log entry per table window (manifests: 1 in 11-51).
    created_docs = 2 * counts.tasks_created
    usage = DailyUsage(
        requests=counts.planner_invocations + counts.worker_invocations,
        billed_seconds=planner_billed + worker_billed,
        vcpu=vcpu_for(FUNCTION_MEMORY, prices),
        memory_gib=memory_gib(FUNCTION_MEMORY),
        firestore_reads=counts.firestore_total("read"),
        firestore_writes=counts.firestore_total("write"),
        firestore_deletes=counts.firestore_total("delete"),
        firestore_stored_gib=created_docs * 30 / 2 * DOC_KIB / 2**20,
        pubsub_requests=2 * (counts.ticks + counts.work_messages),  # each message: one publish, one push
        pubsub_bytes=2 * (counts.ticks + counts.work_messages) * PUBSUB_MESSAGE_BYTES,
        gcs_class_a=counts.gcs_class_a,
        gcs_class_b=counts.gcs_class_b,
        log_bytes=counts.log_bytes,
        scheduler_jobs=SCHEDULER_JOBS,
        alert_conditions=ALERT_CONDITIONS,
    )
    return Result(
        deployment,
        counts,
        usage,
        monthly_cost(usage, prices),
        monthly_cost(usage, prices, free_tier=False),
        n,
        time.monotonic() - began,
    )


def figures(small: Result, large: Result) -> dict[str, Any]:
    """The BENCH figures, under stable names."""
    out: dict[str, Any] = {
        "cost_small_usd_month": round(total(small.cost), 2),
        "cost_large_usd_month": round(total(large.cost), 2),
        "cost_small_usd_month_no_free_tier": round(total(small.cost_no_free), 2),
        "cost_large_usd_month_no_free_tier": round(total(large.cost_no_free), 2),
    }
    for r in (small, large):
        k, c = r.deployment.key, r.counts
        out.update(
            {
                f"cost_{k}_invocations_day": r.usage.requests,
                f"cost_{k}_planner_invocations_day": c.planner_invocations,
                f"cost_{k}_worker_invocations_day": c.worker_invocations,
                f"cost_{k}_worker_busy_seconds_day": round(c.worker_busy_seconds, 1),
                f"cost_{k}_billed_seconds_day": round(r.usage.billed_seconds, 1),
                f"cost_{k}_firestore_reads_day": r.usage.firestore_reads,
                f"cost_{k}_firestore_writes_day": r.usage.firestore_writes,
                f"cost_{k}_firestore_deletes_day": r.usage.firestore_deletes,
                f"cost_{k}_pubsub_messages_day": c.ticks + c.work_messages,
                f"cost_{k}_exports_day": c.exports,
                f"cost_{k}_admin_api_calls_day": sum(c.api_calls.values()),
                f"cost_{k}_calls_per_export": round(sum(c.api_calls.values()) / max(1, c.exports), 1),
                f"cost_{k}_gcs_class_a_day": c.gcs_class_a,
                f"cost_{k}_gcs_class_b_day": c.gcs_class_b,
                f"cost_{k}_log_mib_day": round(c.log_bytes / 2**20, 2),
            }
        )
    return out


def report(results: list[Result]) -> None:
    for r in results:
        d, c = r.deployment, r.counts
        print(
            f"\n== {d.key}: {d.instances} instance(s) x {d.tables} tables every {d.interval}, ticks every "
            f"{d.tick_seconds:.0f} s, exports of {d.export_seconds:.0f} s (fake clock; "
            f"{r.simulated_instances} instance simulated for 24 h in {r.seconds:.1f} s, "
            f"x{d.instances / r.simulated_instances:g})"
        )
        busy = c.worker_busy_seconds / d.instances / 86400
        print(
            f"   per day: {c.exports:,} exports, {sum(c.api_calls.values()):,} Admin API calls "
            f"({dict(c.api_calls)}), {c.planner_invocations:,} planner + {c.worker_invocations:,} worker invocations "
            f"({c.worker_refused:,} found the chain running), worker busy {c.worker_busy_seconds:,.0f} s "
            f"({busy:.0%} of each instance's day)"
        )
        print(
            f"   Firestore {r.usage.firestore_reads:,} reads / {r.usage.firestore_writes:,} writes / "
            f"{r.usage.firestore_deletes:,} deletes; Pub/Sub {c.ticks + c.work_messages:,} messages; Cloud Storage "
            f"{c.gcs_class_a:,} class A / {c.gcs_class_b:,} class B; logs {c.log_lines:,} lines, "
            f"{c.log_bytes / 2**20:.1f} MiB"
        )
        if c.tasks_open_at_end > d.instances * (d.tables + 1):
            print(f"   !!! {c.tasks_open_at_end} tasks still open at the end of the day: the chains fall behind")
    print(f"\n   {'USD per 30-day month':<22}" + "".join(f"{r.deployment.key:>12}{'list':>10}" for r in results))
    for item in results[0].cost:
        print(f"   {item:<22}" + "".join(f"{r.cost[item]:>12.2f}{r.cost_no_free[item]:>10.2f}" for r in results))
    print(f"   {'total':<22}" + "".join(f"{total(r.cost):>12.2f}{total(r.cost_no_free):>10.2f}" for r in results))
    print(
        "   (first column: free tiers applied once, as if alone on the billing account; 'list': no free tier.\n"
        "    Not included: Cloud SQL itself, the exported data's storage and egress, Artifact Registry.)"
    )


def run(*, all_instances: bool = False, export_seconds: float | None = None) -> dict[str, Any]:
    deployments = [SMALL, LARGE]
    if export_seconds is not None:
        deployments = [replace(d, export_seconds=export_seconds) for d in deployments]
    results = [measure(d, simulate_instances=d.instances if all_instances else 1) for d in deployments]
    report(results)
    return figures(*results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.cost", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--all-instances", action="store_true", help="simulate every instance, not one scaled (slower, same counts)"
    )
    parser.add_argument("--export-seconds", type=float, help=f"fake export duration (default {SMALL.export_seconds})")
    args = parser.parse_args(argv)
    print("== cost model: a simulated day of each reference deployment, priced with bench/prices.json")
    found = run(all_instances=args.all_instances, export_seconds=args.export_seconds)
    print("BENCH " + json.dumps(found, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
