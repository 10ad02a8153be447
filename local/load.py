"""Load: a long hourly backfill of many tables planned through one Pub/Sub message, on the local stack.

    python -m local.load                      # the full run: 30 days x 50 tables = 36,000 table tasks + 720 schema
    python -m local.load --days 7 --tables 20 # smaller

It starts its own stack (default state folder /tmp/cdc-load-stack, port base 18300) and stops it at the end.
Only the planner is measured: the worker's push subscription is removed first, so nothing is exported.
Reported: planning time (publish to the planner's "backfill planned" log line, so Pub/Sub delivery and the
function's cold start included; one invocation must stay within the function's 540 s) and the part the planner
itself logged, the Firestore document reads and writes the planner counted, how long a redelivery
of the same message takes and that it creates nothing (and reads nothing), and how long `cdc status` takes on the
full queue (the median of STATUS_RUNS). Planning is unpaced here (the emulator has no write-rate limit); in
production it is paced to `firestore.writes_per_second` (500 by default), which the summary prices in too.
The last line is `BENCH {json}` with the figures under stable names.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pendulum
import requests

from local import processes
from local.driver import Driver
from local.pubsub_wiring import PubSubAdmin, shard_subscription
from local.stack import DEFAULT_CONFIG, PLANNER_SUBSCRIPTION, WORKER_SUBSCRIPTION, Stack
from shared.core.config import DEFAULT_FIRESTORE_WRITES_PER_SECOND as PACE
from shared.core.config import parse_config
from shared.core.sharding import work_shard_topics
from shared.ops.status import collect_status

FUNCTION_TIMEOUT_SECONDS = 540
STATUS_RUNS = 3
CPU_SERVICES = ("firestore", "planner")
"""Whose CPU time planning is charged with: the Firestore emulator and the planner function's process."""
_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(stack: Stack, names: tuple[str, ...] = CPU_SERVICES) -> float:
    """CPU time (user + system) the stack's `names` services' processes have used so far. On a machine shared
    with other work, wall time measures the neighbours too; CPU time measures the work."""
    total = 0
    for name in names:
        for pid in processes.group_members(stack.info().services[name].pgid):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / _TICKS


UNPACED = 1_000_000
"""Writes per second that never make planning wait (the emulator's pace is the measure)."""


@dataclass
class LoadReport:
    days: int
    tables: int
    windows: int
    tasks_expected: int
    tasks_in_queue: int
    tasks_created: int
    planning_seconds: float
    planner_seconds: float
    plan_cpu_seconds: float
    plan_emulator_cpu_seconds: float
    """The Firestore emulator's share of plan_cpu_seconds (the rest is the planner's own)."""
    load_average: float
    """The machine's 1-minute load average when the run started (the neighbours' share of the wall times)."""
    document_writes: int
    document_reads: int
    redelivery_seconds: float | None
    redelivery_cpu_seconds: float | None
    redelivery_created: int | None
    redelivery_reads: int | None
    redelivery_writes: int | None
    status_seconds: float
    status_cpu_seconds: float
    status_runs: list[float]
    status_pending: int

    def summary(self) -> str:
        lines = [
            f"load: {self.days}-day hourly backfill of {self.tables} tables = {self.windows} windows, "
            f"{self.windows * self.tables} table tasks + {self.windows} schema tasks",
            f"planning time (one planner invocation): {self.planning_seconds:.1f} s "
            f"(limit {FUNCTION_TIMEOUT_SECONDS} s; unpaced on the emulator, in production paced to {PACE} writes/s: "
            f"about {self.tasks_expected / PACE:.0f} s); inside the planner: {self.planner_seconds:.1f} s; "
            f"CPU (planner + Firestore emulator): {self.plan_cpu_seconds:.1f} s, of which the emulator "
            f"{self.plan_emulator_cpu_seconds:.1f} s; load average at the start {self.load_average:.2f}",
            f"Firestore: {self.document_writes} create-only document writes, {self.document_reads} document reads",
            f"queue: {self.tasks_in_queue} tasks (expected {self.tasks_expected}), each created once",
        ]
        if self.redelivery_seconds is not None:
            lines.append(
                f"redelivered message: {self.redelivery_seconds:.1f} s ({self.redelivery_cpu_seconds:.1f} s CPU), "
                f"{self.redelivery_created} tasks created, "
                f"{self.redelivery_reads} document reads, {self.redelivery_writes} refused create-only writes"
            )
        runs = ", ".join(f"{r:.2f}" for r in self.status_runs)
        lines.append(
            f"cdc status of the queue: {self.status_seconds:.2f} s (median of {runs}; CPU per run, status and "
            f"emulator: {self.status_cpu_seconds:.2f} s; {self.status_pending} pending)"
        )
        return "\n".join(lines)

    def bench(self) -> dict[str, Any]:
        """The figures under stable names (the `BENCH` line)."""
        return {
            "plan_seconds": round(self.planning_seconds, 2),
            "planner_seconds": round(self.planner_seconds, 2),
            "plan_cpu_seconds": round(self.plan_cpu_seconds, 2),
            "plan_emulator_cpu_seconds": round(self.plan_emulator_cpu_seconds, 2),
            "load_average": round(self.load_average, 2),
            "status_cpu_seconds": round(self.status_cpu_seconds, 2),
            "redelivery_cpu_seconds": None
            if self.redelivery_cpu_seconds is None
            else round(self.redelivery_cpu_seconds, 2),
            "status_seconds": round(self.status_seconds, 2),
            "tasks_created": self.tasks_created,
            "tasks_expected": self.tasks_expected,
            "redelivery_created": self.redelivery_created,
            "redelivery_seconds": None if self.redelivery_seconds is None else round(self.redelivery_seconds, 2),
            "reads": self.document_reads,
            "writes": self.document_writes,
            "redelivery_reads": self.redelivery_reads,
            "redelivery_writes": self.redelivery_writes,
            "status_pending": self.status_pending,
        }


def load_config_doc(tables: int, days: int) -> dict[str, Any]:
    """The demo config with `tables` tables on the bench template (planning never renders them)."""
    doc = json.loads(DEFAULT_CONFIG.read_text())
    doc["backfill"] = {"max_windows": max(2000, days * 24)}
    # The emulator has no write-rate limit; in production planning is paced to 500 writes/s (the default).
    doc["firestore"] = {**doc.get("firestore", {}), "writes_per_second": UNPACED}
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
    load_average = os.getloadavg()[0]
    cpu0, emulator0 = cpu_seconds(stack), cpu_seconds(stack, ("firestore",))
    t0 = time.monotonic()
    message_id = driver.raw(config.ticks_topic, data)
    planned = _wait_planned(planner_log, offset, message_id, FUNCTION_TIMEOUT_SECONDS + 60)
    planning_seconds = time.monotonic() - t0
    plan_cpu = cpu_seconds(stack) - cpu0
    plan_emulator_cpu = cpu_seconds(stack, ("firestore",)) - emulator0
    in_queue = state.client.collection(f"{config.firestore_prefix}tasks").count().get()[0][0].value

    redelivery_seconds = redelivery_created = redelivery_reads = redelivery_writes = redelivery_cpu = None
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
        cpu1 = cpu_seconds(stack)
        t1 = time.monotonic()
        requests.post(url, json=push, timeout=FUNCTION_TIMEOUT_SECONDS + 60).raise_for_status()
        redelivery_seconds = time.monotonic() - t1
        redelivery_cpu = cpu_seconds(stack) - cpu1
        again = _wait_planned(planner_log, offset, message_id, 30)
        redelivery_created = again["tasks_created"]
        redelivery_reads, redelivery_writes = again["document_reads"], again["document_writes"]

    status_runs = []
    cpu2, own2 = cpu_seconds(stack, ("firestore",)), time.process_time()
    for _ in range(STATUS_RUNS):
        t2 = time.monotonic()
        status = collect_status(config, state)
        status_runs.append(time.monotonic() - t2)
    status_cpu = (cpu_seconds(stack, ("firestore",)) - cpu2 + time.process_time() - own2) / STATUS_RUNS
    pending = sum(source.pending for source in status.sources)
    stack.restart_functions()
    return LoadReport(
        days=days,
        tables=tables,
        windows=windows,
        tasks_expected=expected,
        tasks_in_queue=in_queue,
        tasks_created=planned["tasks_created"],
        planning_seconds=planning_seconds,
        planner_seconds=planned["seconds"],
        plan_cpu_seconds=plan_cpu,
        plan_emulator_cpu_seconds=plan_emulator_cpu,
        load_average=load_average,
        document_writes=planned["document_writes"],
        document_reads=planned["document_reads"],
        redelivery_seconds=redelivery_seconds,
        redelivery_cpu_seconds=redelivery_cpu,
        redelivery_created=redelivery_created,
        redelivery_reads=redelivery_reads,
        redelivery_writes=redelivery_writes,
        status_seconds=statistics.median(status_runs),
        status_cpu_seconds=status_cpu,
        status_runs=status_runs,
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
    print("BENCH " + json.dumps(report.bench(), sort_keys=True))
    ok = report.tasks_in_queue == report.tasks_created == report.tasks_expected and report.redelivery_created == 0
    return 0 if ok and report.planning_seconds < FUNCTION_TIMEOUT_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
