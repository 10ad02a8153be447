"""Load: a long hourly backfill of many tables planned through one Pub/Sub message, on the local stack.

    python -m local.load                      # the full run: 30 days x 50 tables = 36,000 table tasks + 720 schema
    python -m local.load --days 7 --tables 20 # smaller

It starts its own stack (default state folder /tmp/cdc-load-stack, port base 18300) and stops it at the end.
Only the planner is measured: the worker's push subscription is removed first, so nothing is exported.
Reported: planning time (publish to the planner's "backfill planned" log line; one invocation must stay
within the function's 540 s), Firestore document writes and reads of the planning, how long a redelivery of
the same message takes and that it creates nothing, and how long `cdc status` takes to read the full queue.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pendulum
import requests

from local.driver import Driver
from local.pubsub_wiring import PubSubAdmin, shard_subscription
from local.stack import DEFAULT_CONFIG, PLANNER_SUBSCRIPTION, WORKER_SUBSCRIPTION, Stack
from shared.adapters.firestore_tasks import BATCH_SIZE
from shared.core.config import parse_config
from shared.core.sharding import work_shard_topics
from shared.ops.status import collect_status

FUNCTION_TIMEOUT_SECONDS = 540


@dataclass
class LoadReport:
    days: int
    tables: int
    windows: int
    tasks_expected: int
    tasks_in_queue: int
    tasks_created: int
    planning_seconds: float
    document_writes: int
    document_reads: int
    commits: int
    redelivery_seconds: float | None
    redelivery_created: int | None
    status_seconds: float
    status_pending: int

    def summary(self) -> str:
        lines = [
            f"load: {self.days}-day hourly backfill of {self.tables} tables = {self.windows} windows, "
            f"{self.windows * self.tables} table tasks + {self.windows} schema tasks",
            f"planning time (one planner invocation): {self.planning_seconds:.1f} s "
            f"(limit {FUNCTION_TIMEOUT_SECONDS} s)",
            f"Firestore: {self.document_writes} document writes in {self.commits} batched commits, "
            f"{self.document_reads} document reads (existence checks)",
            f"queue: {self.tasks_in_queue} tasks (expected {self.tasks_expected}), each created once",
        ]
        if self.redelivery_seconds is not None:
            lines.append(
                f"redelivered message: {self.redelivery_seconds:.1f} s, {self.redelivery_created} tasks created"
            )
        lines.append(f"status of the queue: read in {self.status_seconds:.1f} s ({self.status_pending} pending)")
        return "\n".join(lines)


def load_config_doc(tables: int, days: int) -> dict[str, Any]:
    """The demo config with `tables` tables on the bench template (planning never renders them)."""
    doc = json.loads(DEFAULT_CONFIG.read_text())
    doc["backfill"] = {"max_windows": max(2000, days * 24)}
    doc["sources"][0]["tables"] = [{"name": f"t{i:02d}", "template": "bench/event.sql"} for i in range(tables)]
    return doc


def _planned(planner_log: Path, offset: int, message_id: str) -> dict[str, Any] | None:
    """The planner's outcome line for `message_id` written after `offset`, if any yet."""
    with open(planner_log, "rb") as handle:
        handle.seek(offset)
        lines = handle.read().decode(errors="replace").splitlines()
    for line in lines:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(entry, dict) or entry.get("message_id") != message_id:
            continue
        if entry.get("message") == "backfill planned":
            return entry
        if entry.get("severity") == "ERROR":
            raise RuntimeError(f"the planner failed on the backfill: {entry.get('error')}")
    return None


def _wait_planned(planner_log: Path, offset: int, message_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = _planned(planner_log, offset, message_id)
        if entry is not None:
            return entry
        time.sleep(0.2)
    raise TimeoutError(f"backfill {message_id} not planned after {timeout:.0f} s")


def run_load(stack: Stack, workdir: Path, *, days: int = 30, tables: int = 50, redeliver: bool = True) -> LoadReport:
    """Plan a `days` x 24 hourly backfill of `tables` tables through one message; measure it."""
    stack.reset()
    pubsub = PubSubAdmin(f"127.0.0.1:{stack.ports.pubsub}", stack.project)
    doc = load_config_doc(tables, days)
    config_path = workdir / "load_config.json"
    config_path.write_text(json.dumps(doc))
    stack.restart_functions(config_path=config_path)
    config = parse_config(doc, sqladmin_endpoint=stack.env()["CDC_SQLADMIN_ENDPOINT"])
    # Planning only: the work messages go nowhere (the worker's subscriptions on the work topic and its shards).
    shards = work_shard_topics(config.work_topic, config.instances()).values()
    for name in (WORKER_SUBSCRIPTION, *(shard_subscription(topic) for topic in shards)):
        pubsub.delete_subscription(name)
    driver = Driver(config)
    state = driver.clients.state

    end = pendulum.now("UTC").subtract(minutes=config.sources[0].settle.in_minutes() + 1).start_of("hour")
    start = end.subtract(days=days)
    windows = days * 24
    expected = windows * (tables + 1)
    planner_log = stack.logs_dir / "planner.log"
    offset = planner_log.stat().st_size
    body = {"kind": "backfill", "start": start.isoformat(), "end": end.isoformat(), "source": "shop"}
    data = json.dumps(body).encode()
    t0 = time.monotonic()
    message_id = driver.raw(config.ticks_topic, data)
    planned = _wait_planned(planner_log, offset, message_id, FUNCTION_TIMEOUT_SECONDS + 60)
    planning_seconds = time.monotonic() - t0
    in_queue = state.client.collection(f"{config.firestore_prefix}tasks").count().get()[0][0].value

    redelivery_seconds = redelivery_created = None
    if redeliver:
        # The same message again (same id), as Pub/Sub redelivers it: nothing new may be created.
        offset = planner_log.stat().st_size
        url = f"http://127.0.0.1:{stack.ports.planner}/projects/{config.project}/topics/{config.ticks_topic}"
        push = {
            "message": {
                "data": base64.b64encode(data).decode(),
                "messageId": message_id,
                "publishTime": pendulum.now("UTC").isoformat(),
            },
            "subscription": f"projects/{config.project}/subscriptions/{PLANNER_SUBSCRIPTION}",
        }
        t1 = time.monotonic()
        requests.post(url, json=push, timeout=FUNCTION_TIMEOUT_SECONDS + 60).raise_for_status()
        redelivery_seconds = time.monotonic() - t1
        redelivery_created = _wait_planned(planner_log, offset, message_id, 30)["tasks_created"]

    t2 = time.monotonic()
    status = collect_status(config, state)
    status_seconds = time.monotonic() - t2
    pending = sum(row.pending for source in status.sources for row in source.tables)
    stack.restart_functions()
    return LoadReport(
        days=days,
        tables=tables,
        windows=windows,
        tasks_expected=expected,
        tasks_in_queue=in_queue,
        tasks_created=planned["tasks_created"],
        planning_seconds=planning_seconds,
        document_writes=planned["tasks_created"],
        document_reads=expected,
        commits=math.ceil(planned["tasks_created"] / BATCH_SIZE),
        redelivery_seconds=redelivery_seconds,
        redelivery_created=redelivery_created,
        status_seconds=status_seconds,
        status_pending=pending,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--tables", type=int, default=50)
    parser.add_argument("--state-dir", default="/tmp/cdc-load-stack", help="state folder of the run's stack")
    parser.add_argument("--port-base", type=int, default=18300, help="first port of the run's stack")
    parser.add_argument("--keep", action="store_true", help="leave the stack running afterwards")
    args = parser.parse_args(argv)
    stack = Stack(args.state_dir, args.port_base)
    stack.up()
    try:
        with tempfile.TemporaryDirectory() as workdir:
            os.environ.update(stack.env())
            report = run_load(stack, Path(workdir), days=args.days, tables=args.tables)
    finally:
        if not args.keep:
            stack.down()
    print(report.summary())
    ok = report.tasks_in_queue == report.tasks_created == report.tasks_expected and report.redelivery_created == 0
    return 0 if ok and report.planning_seconds < FUNCTION_TIMEOUT_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
