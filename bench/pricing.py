"""The cost model's arithmetic: one day of measured usage, priced into a 30-day month with bench/prices.json.

Free tiers are applied once, as if the deployment were alone on its billing account (Cloud Run, Pub/Sub,
Scheduler) and in its project (Firestore's daily quota, Cloud Logging's 50 GiB); `free_tier=False` prices
every unit, as for a billing account whose free tiers other workloads already use.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PRICES_PATH = Path(__file__).with_name("prices.json")
DAYS_PER_MONTH = 30
GIB = 2**30
TIB = 2**40


def load_prices(path: Path = PRICES_PATH) -> dict[str, Any]:
    return json.loads(path.read_text())


def vcpu_for(memory: str, prices: dict[str, Any]) -> float:
    """The vCPU a function of this memory gets when the deployment does not set one (terraform sets none)."""
    table = prices["function_cpu_by_memory"]["vcpu"]
    if memory not in table:
        raise ValueError(f"no default vCPU known for memory {memory!r}; known: {', '.join(table)}")
    return float(table[memory])


def memory_gib(memory: str) -> float:
    """'512Mi' -> 0.5, '1Gi' -> 1.0 (Cloud Run notation, as terraform/variables.tf takes it)."""
    if memory.endswith("Mi"):
        return int(memory[:-2]) / 1024
    if memory.endswith("Gi"):
        return float(int(memory[:-2]))
    raise ValueError(f"memory must look like 512Mi or 1Gi, not {memory!r}")


@dataclass(frozen=True)
class DailyUsage:
    """What one deployment uses in one day (counts from the simulation, plus the fixed resources)."""

    requests: int  # function invocations, planner and worker
    billed_seconds: float  # sum over invocations of each one's billed time (rounded up to 100 ms)
    vcpu: float  # per function instance
    memory_gib: float  # per function instance
    firestore_reads: int
    firestore_writes: int
    firestore_deletes: int
    firestore_stored_gib: float  # average over the month
    pubsub_requests: int  # publish and push requests, each billed at least the minimum size
    pubsub_bytes: int  # actual bytes, when a request is larger than the minimum
    gcs_class_a: int
    gcs_class_b: int
    log_bytes: int
    scheduler_jobs: int = 1
    alert_conditions: int = 6


def _over(amount: float, free: float, free_tier: bool) -> float:
    return max(0.0, amount - free) if free_tier else amount


def monthly_cost(usage: DailyUsage, prices: dict[str, Any], *, free_tier: bool = True) -> dict[str, float]:
    """USD per 30-day month, per line item (a day's usage times 30; daily free quotas per day)."""
    p = prices["prices"]
    days = DAYS_PER_MONTH
    vcpu_seconds = usage.billed_seconds * usage.vcpu * days
    gib_seconds = usage.billed_seconds * usage.memory_gib * days
    pubsub_min = p["pubsub_tib"]["min_bytes_per_request"]
    pubsub_bytes = max(usage.pubsub_bytes, usage.pubsub_requests * pubsub_min) * days
    cost = {
        "run_cpu": _over(vcpu_seconds, p["run_vcpu_second"]["free_per_month"], free_tier) * p["run_vcpu_second"]["usd"],
        "run_memory": _over(gib_seconds, p["run_gib_second"]["free_per_month"], free_tier) * p["run_gib_second"]["usd"],
        "run_requests": _over(usage.requests * days, p["run_request"]["free_per_month"], free_tier)
        * p["run_request"]["usd"],
        "firestore_reads": _over(usage.firestore_reads, p["firestore_read"]["free_per_day"], free_tier)
        * days
        * p["firestore_read"]["usd"],
        "firestore_writes": _over(usage.firestore_writes, p["firestore_write"]["free_per_day"], free_tier)
        * days
        * p["firestore_write"]["usd"],
        "firestore_deletes": _over(usage.firestore_deletes, p["firestore_delete"]["free_per_day"], free_tier)
        * days
        * p["firestore_delete"]["usd"],
        "firestore_storage": _over(usage.firestore_stored_gib, p["firestore_gib_month"]["free_gib"], free_tier)
        * p["firestore_gib_month"]["usd"],
        "pubsub": _over(pubsub_bytes, p["pubsub_tib"]["free_gib_per_month"] * GIB, free_tier)
        / TIB
        * p["pubsub_tib"]["usd"],
        "scheduler": _over(usage.scheduler_jobs, p["scheduler_job_month"]["free_jobs"], free_tier)
        * p["scheduler_job_month"]["usd"],
        "alert_conditions": usage.alert_conditions * p["alert_condition_month"]["usd"],
        "gcs_operations": (usage.gcs_class_a * p["gcs_class_a"]["usd"] + usage.gcs_class_b * p["gcs_class_b"]["usd"])
        * days,
        "logging": _over(usage.log_bytes * days / GIB, p["logging_gib"]["free_gib_per_month"], free_tier)
        * p["logging_gib"]["usd"],
    }
    return cost


def total(cost: dict[str, float]) -> float:
    return math.fsum(cost.values())


def billed_seconds(seconds: float) -> float:
    """Cloud Run rounds each request's billable time up to the next 100 ms."""
    return math.ceil(round(seconds * 10, 6)) / 10
