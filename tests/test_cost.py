"""The cost model (bench/cost.py): the pricing arithmetic on a hand-computed example, and the simulated counts
scaling with the deployment as they must. No timing is asserted."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bench.costsim import LARGE, SMALL, Deployment, simulate
from bench.pricing import DailyUsage, billed_seconds, load_prices, memory_gib, monthly_cost, total, vcpu_for

PRICES = load_prices()


def test_every_price_names_its_source_and_the_day_it_was_read() -> None:
    for name, item in PRICES["prices"].items():
        assert "https://" in item["source"], name
        assert item["read"] == "2026-11-26", name
        assert item["confirmed"] in (True, False, "partly"), name


def test_a_hand_computed_month() -> None:
    usage = DailyUsage(
        requests=100_000,  # 3,000,000 a month: 1,000,000 over the free 2 million
        billed_seconds=30_000,  # x 0.5 vCPU x 30 = 450,000 vCPU-s (270,000 billed); x 1 GiB = 900,000 GiB-s
        vcpu=0.5,
        memory_gib=1.0,
        firestore_reads=150_000,  # 100,000 over the daily 50,000, x 30
        firestore_writes=20_000,  # all free
        firestore_deletes=0,
        firestore_stored_gib=3.0,  # 2 GiB over the free 1
        pubsub_requests=1_000_000,  # 1e9 bytes a day at the 1000-byte minimum: 3e10 a month
        pubsub_bytes=0,
        gcs_class_a=1000,
        gcs_class_b=10_000,
        log_bytes=2 * 2**30,  # 60 GiB a month: 10 over the free 50
        scheduler_jobs=4,
        alert_conditions=6,
    )
    cost = monthly_cost(usage, PRICES)
    expected = {
        "run_cpu": 270_000 * 0.000024,  # 6.48
        "run_memory": 540_000 * 0.0000025,  # 1.35
        "run_requests": 1_000_000 * 0.0000004,  # 0.40
        "firestore_reads": 100_000 * 30 * 0.0000006,  # 1.80
        "firestore_writes": 0.0,
        "firestore_deletes": 0.0,
        "firestore_storage": 2 * 0.18,  # 0.36
        "pubsub": (3e10 - 10 * 2**30) / 2**40 * 40,  # 0.7007...
        "scheduler": 0.10,
        "alert_conditions": 9.0,
        "gcs_operations": (1000 * 0.000005 + 10_000 * 0.0000004) * 30,  # 0.27
        "logging": 10 * 0.50,  # 5.00
    }
    assert cost == pytest.approx(expected)
    assert total(cost) == pytest.approx(25.4608, abs=1e-3)
    # Without free tiers every unit is billed.
    listed = monthly_cost(usage, PRICES, free_tier=False)
    assert listed["run_cpu"] == pytest.approx(450_000 * 0.000024)
    assert listed["firestore_writes"] == pytest.approx(20_000 * 30 * 0.0000018)
    assert listed["scheduler"] == pytest.approx(0.40)


def test_units() -> None:
    assert billed_seconds(0.01) == 0.1 and billed_seconds(1.0) == 1.0 and billed_seconds(1.01) == 1.1
    assert memory_gib("512Mi") == 0.5 and memory_gib("2Gi") == 2.0
    assert vcpu_for("512Mi", PRICES) == pytest.approx(0.333)


def _quick(d: Deployment) -> Deployment:
    return replace(d, export_seconds=5.0)


def test_counts_scale_with_instances_tables_and_interval() -> None:
    hours = 4.0
    small = simulate(_quick(SMALL), hours)
    large = simulate(_quick(replace(LARGE, instances=2)), hours)
    # Every due window exported, one export per table and one schema export per window.
    assert small.exports == 4 * (10 + 1)
    assert large.exports == 2 * 16 * (50 + 1)
    # 4 times the windows x 5 times the tables (+ schema) x the instances: about 100 times for the full 5.
    per_instance = large.exports / 2
    assert per_instance / small.exports == pytest.approx(4 * 51 / 11)
    assert 5 * per_instance / small.exports == pytest.approx(92.7, abs=0.1)
    # The planner runs once per tick (every 5 minutes) whatever the size; the chain's work follows the exports.
    assert small.ticks == large.ticks == small.planner_invocations == large.planner_invocations == 48
    assert small.api_calls["export"] == small.exports and large.api_calls["export"] == large.exports
    assert large.firestore_total("write") > 10 * small.firestore_total("write")
    assert small.worker_busy_seconds >= small.exports * 5.0
    assert small.gcs_class_a == small.exports + 4  # each export's object plus one manifest per window


def test_instances_are_independent_so_one_simulated_instance_scales() -> None:
    one = simulate(_quick(replace(LARGE, instances=1, tables=5)), 2.0)
    two = simulate(_quick(replace(LARGE, instances=2, tables=5)), 2.0)
    assert two.exports == 2 * one.exports
    assert two.firestore == {k: 2 * v for k, v in one.firestore.items() if k[0] == "worker"} | {
        k: 2 * v for k, v in one.firestore.items() if k[0] == "planner"
    }
    assert two.worker_busy_seconds == pytest.approx(2 * one.worker_busy_seconds)
    assert two.planner_invocations == one.planner_invocations
