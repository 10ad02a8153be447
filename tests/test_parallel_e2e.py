"""Parallelism on the stack: six Cloud SQL instances, and every one of their chains runs at the same time.

Defect (before): every instance's work messages went through one push subscription, which the Pub/Sub emulator
pushes at most 2 at a time (production's worker refused the rest with 429: concurrency 1, instances + 1 workers).
A chain's invocation holds its push while it polls, so at most two chains ran at once and the others waited for
a free slot. Now each instance has its own work topic and subscription (shared/core/sharding.py, pubsub.tf) and
one worker process serves several requests at once (THREADS, as max_instance_request_concurrency in production).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pendulum
import pytest

from local.demo_data import seed
from local.pubsub_wiring import PubSubAdmin, shard_subscription
from shared.core.sharding import work_shard_topics
from tests.pipeline_support import START, Pipeline, demo_config, second_source

pytestmark = pytest.mark.stack

DATABASE = "parallelshop"
INSTANCES = 6
EXPORT_SECONDS = 2.0


def most_instances_exporting_at_once(operations: list[dict[str, Any]]) -> int:
    """The largest number of distinct instances with an export running at the same moment."""
    events = []
    for op in operations:
        if op["operationType"] != "EXPORT" or not op.get("endTime"):
            continue
        events.append((pendulum.parse(op["insertTime"]), 1, op["instance"]))
        events.append((pendulum.parse(op["endTime"]), -1, op["instance"]))
    running: dict[str, int] = {}
    most = 0
    for _, step, instance in sorted(events, key=lambda e: (e[0], e[1])):  # an end before a start at one instant
        running[instance] = running.get(instance, 0) + step
        most = max(most, sum(1 for n in running.values() if n > 0))
    return most


def test_the_overlap_count_is_per_instance_and_ends_before_starts() -> None:
    def op(instance: str, start: int, end: int) -> dict[str, Any]:
        at = pendulum.datetime(2026, 1, 1, tz="UTC")
        return {"operationType": "EXPORT", "instance": instance, "insertTime": at.add(seconds=start).isoformat(),
                "endTime": at.add(seconds=end).isoformat()}  # fmt: skip

    assert most_instances_exporting_at_once([op("a", 0, 2), op("a", 1, 3), op("b", 3, 5)]) == 1
    assert most_instances_exporting_at_once([op("a", 0, 2), op("b", 1, 3), op("c", 1, 2)]) == 3


def test_six_instances_export_at_the_same_time(stack: Any, stack_env: dict[str, str], tmp_path: Path) -> None:
    seed(stack.pg_dsn("postgres"), START, hours=2, rows_per_table=100, database=DATABASE)
    doc = demo_config()
    doc["sources"][0].update(database=DATABASE, tables=doc["sources"][0]["tables"][:1])
    for n in range(2, INSTANCES + 1):
        second_source(doc, name=f"shop{n}", instance=f"cdc-local:shop-pg-{n}")
    p = Pipeline(stack, doc, tmp_path / "config.json", None)
    instances = p.config.instances()
    assert len(instances) == INSTANCES

    # The stack wired one work topic per instance, each pushed to the worker by its own subscription.
    admin = PubSubAdmin(stack_env["PUBSUB_EMULATOR_HOST"], p.config.project)
    for topic in work_shard_topics(p.config.work_topic, instances).values():
        sub = admin.get_subscription(shard_subscription(topic))
        assert sub["topic"].endswith(f"/topics/{topic}")
        assert sub["pushConfig"]["pushEndpoint"].endswith(f"/topics/{topic}")

    p.faults(min_duration=EXPORT_SECONDS)
    try:
        p.tick_for(0)
        p.driver.wait_idle(expect_tasks=INSTANCES * 2, timeout=120)
    finally:
        p.faults(min_duration=0)
    tasks = p.state.all_tasks()
    assert {t.state for t in tasks} == {"done"}
    operations = p.operations()
    assert {op["instance"] for op in operations} == {i.split(":", 1)[1] for i in instances}
    assert most_instances_exporting_at_once(operations) == INSTANCES, operations
