"""The fault-injection suite: run the pipeline through crashes, API faults, busy instances and duplicate
deliveries on the local stack, then prove that nothing was lost, duplicated or reordered.

    python -m local.faults            # fast variant (6 Cloud SQL instances x 6 hourly windows), run by `make test`
    python -m local.faults --full     # the full suite: 6 instances x 48 hourly windows of 4 tables plus schema

Both start their own stack (default state folder /tmp/cdc-faults-stack, port base 18200; see --help) and stop
it at the end. What is injected while the windows are exported:

- six Cloud SQL instances (sources on the same database), more than the Pub/Sub emulator's 2 pushes in flight per
  subscription: each has its own work topic and subscription, and one worker process runs their chains at once;
- the Admin API emulator answers HTTP 503 to 20% of calls and fails 10% of export operations;
- foreign operations (as a backup would) hold a random instance busy at random moments;
- every tick is delivered 1 to 3 times (republished, or pushed again with the same message id), and every
  `work` message the chain publishes is pushed to the worker up to twice more with the same message id
  (tapped from the work topic through an extra pull subscription);
- the worker process is SIGKILLed at random at the failpoints of shared/testing/failpoints.py (after taking the
  lease, between submit and saving the operation name, mid-poll, after DONE before the watermark update);
  gunicorn replaces the killed process (and with it every chain it ran) and Pub/Sub redelivers what it was handling;
- production's instance-level conditions on a timeline (local/fault_scenarios.py): 403 for the first seconds,
  two instances stopped then started, a 429 burst, a hung export, a vanishing export, a backup longer than the
  lease; and a table's template broken (a SQL error) then restored, in the copy of templates/ the functions serve.

The checks (`check_run`): every (table, window) exported by exactly one successful operation, its object
the only one for the window and its rows equal to the source's; no export ever refused for an existing
object (an overwrite attempt); watermarks at the range end and never moved backwards; no two operations
overlapping on an instance, and none of a task submitted while a previous one of it still ran; no instance idle
longer than the lease expiry (plus the retry back-off) while work was ready, measured from the moment the condition
that kept it idle cleared (a refusal, a killed worker's lease; after a refusal, plus the breaker's pause in force
then); every timeline condition injected, and no task failed by any of them. The summary gives, per fault kind,
how many were injected and survived, and the longest pause (from the moment it cleared to the instance working).
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import copy
import itertools
import json
import os
import random
import re
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pendulum
import requests
from google.cloud import storage

from local.demo_data import TABLES, seed
from local.driver import Driver
from local.fault_scenarios import (
    BROKEN_ERROR,
    TEMPLATE_FAILURES,
    Held,
    Scenario,
    TemplateFault,
    idle_allowance,
    killed,
    timeline,
)
from local.httpcall import call
from local.pubsub_wiring import PubSubAdmin
from local.stack import REPO, Stack
from shared.core.config import Config, parse_config
from shared.core.sharding import work_shard_topics
from shared.core.tasks import Task
from shared.core.templates import TEMPLATES_DIR

START = pendulum.datetime(2026, 10, 1, tz="UTC")
DATABASE = "faults"
TAP_PREFIX = "faults-tap-"  # + the work topic it taps
SETTLE_SECONDS = 300
RECOVERY_SECONDS = 4.0
STOP_SECONDS = 50.0  # the longest the injector's teardown may take
POST_TIMEOUT_SECONDS = 45.0  # one push of a duplicate: the worker answers within its 30 s budget
DEMO_CONFIG = REPO / "local" / "demo_config.json"
# A retry waits up to retry_max_seconds x 1.2 (jitter): that idle time is by design, not a stall.
WORKER = {
    "budget_seconds": 30,
    "lease_seconds": 6,
    "max_attempts": 6,
    "poll_initial_seconds": 0.05,
    "poll_max_seconds": 0.5,
    "retry_base_seconds": 0.5,
    "retry_max_seconds": 2,
    # A hung export is cancelled once 4x its table's last duration (at least 8 s) passed since it was accepted.
    "stuck_factor": 4,
    "stuck_min_seconds": 8,
}


@dataclass(frozen=True)
class FaultPlan:
    """What one run exports and injects."""

    hours: int = 6
    instances: int = 6
    rows_per_hour: int = 100
    error_rate: float = 0.2
    op_fail_rate: float = 0.1
    min_duration: float = 0.05
    foreign_gap_seconds: float = 4.0  # mean pause between foreign operations
    foreign_seconds: tuple[float, float] = (0.3, 2.0)
    max_copies: int = 3  # each tick and work message is delivered 1..max_copies times
    # Every instance's chain reaches the failpoints and a kill stops every chain of the process, holding them for up
    # to a minute (fault_scenarios.ABANDONED_TRANSACTION_SECONDS), so each rate is divided by the number of
    # instances (`failpoints_env`), and the fast run stops killing after `max_kills` (uncapped it saw 2 to 7 kills,
    # and a run with many took longer than CI allows): most of it runs under the idle bound of the other conditions.
    failpoints: dict[str, float] = field(
        default_factory=lambda: {
            "with_lease": 0.15,
            "after_submit": 0.04,
            "after_successor": 0.04,
            "mid_poll": 0.015,
            "after_done": 0.04,
        }
    )
    max_kills: int | None = 2  # None: as many as the rates give
    broken_table: str = "orders"  # whose template is broken then restored mid-run
    seed: int = 20261001
    timeout_seconds: float = 360.0  # under the test's own timeout, so that a stalled run still reports what it saw

    @classmethod
    def full(cls) -> FaultPlan:
        """48 hourly windows; failpoint rates lowered so that a run sees a handful of kills (each holds every instance
        for a minute, during which the idle bound is not measured), not tens."""
        return cls(
            hours=48,
            failpoints={
                "with_lease": 0.015,
                "after_submit": 0.003,
                "after_successor": 0.003,
                "mid_poll": 0.001,
                "after_done": 0.003,
            },
            max_kills=None,
            timeout_seconds=2400.0,
        )

    def failpoints_env(self, tokens_dir: Path) -> dict[str, str]:
        """The functions' failpoint settings; the kills of the run take their tokens in `tokens_dir`."""
        rates = ",".join(f"{name}:{rate / self.instances:.5f}" for name, rate in self.failpoints.items())
        cap = {} if self.max_kills is None else {"CDC_FAILPOINTS_KILLS": f"{self.max_kills}:{tokens_dir}"}
        return {"CDC_FAILPOINTS": rates, **cap}

    @property
    def tasks(self) -> int:
        return self.hours * (1 + len(TABLES)) * self.instances


@dataclass
class FaultReport:
    """What was injected, what the pipeline did about it, and what the checks found."""

    plan: FaultPlan
    injected: Counter[str] = field(default_factory=Counter)
    recoveries: Counter[str] = field(default_factory=Counter)
    tasks: int = 0
    windows_compared: int = 0
    rows_compared: int = 0
    max_idle_seconds: float = 0.0
    killed_hold_seconds: float = 0.0  # time during which a killed process's hold covered every instance
    idle_limit_seconds: float = 0.0
    resumed_after: dict[str, float] = field(default_factory=dict)
    pipeline_seconds: float = 0.0
    total_seconds: float = 0.0
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    survived: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        plan = self.plan
        lines = [
            f"fault suite: {plan.instances} Cloud SQL instances x {plan.hours} hourly windows x ({len(TABLES)} tables"
            f" + schema) = {self.tasks} tasks",
            f"  {'fault kind':<44} {'injected':>8} {'survived':>8}  longest pause (cleared -> working again)",
            *(
                f"  {kind:<44} {count:>8} {self.survived[kind]:>8}  "
                + (f"{self.resumed_after[kind]:.1f} s" if kind in self.resumed_after else "-")
                for kind, count in sorted(self.injected.items())
            ),
            "recoveries:",
            *(f"  {kind:<28} {count}" for kind, count in sorted(self.recoveries.items())),
            f"compared: {self.windows_compared} (table, window) exports, {self.rows_compared} rows, all equal"
            if self.ok
            else f"compared: {self.windows_compared} (table, window) exports, {self.rows_compared} rows",
            f"longest instance idle while work was ready: {self.max_idle_seconds:.1f} s "
            f"(limit {self.idle_limit_seconds:.1f} s, from the moment a condition cleared)",
            f"killed processes held every instance for {self.killed_hold_seconds:.0f} s of the pipeline's "
            f"{self.pipeline_seconds:.0f} s (their leases and the Firestore transactions they left open)",
            f"time: pipeline {self.pipeline_seconds:.1f} s, total {self.total_seconds:.1f} s",
            "result: OK" if self.ok else f"result: {len(self.violations)} VIOLATIONS",
            *(f"  - {v}" for v in self.violations),
        ]
        return "\n".join(lines)


def fault_config(hours: int, instances: int = 1) -> dict[str, Any]:
    """The demo config on the `faults` database, fast worker settings, planning from START; with several instances,
    one source per instance (`shop`, `shop2`... on `shop-pg`, `shop-pg-2`...), keys qualified by the source."""
    doc = json.loads(DEMO_CONFIG.read_text())
    # The demo's call budget, sized for the emulator's short exports (the production default of 150 a minute shared
    # by six chains would make the suite wait on the budget: 1,440 tasks need ~20 minutes of calls at that rate);
    # the suite's own 429 bursts come from the emulator's quota.
    doc["worker"] = {**doc["worker"], **WORKER}
    source = doc["sources"][0]
    source.update(database=DATABASE, start=START.isoformat(), catchup_cap=max(48, hours))
    for n in range(2, instances + 1):
        extra = copy.deepcopy(source)
        extra.update(name=f"{source['name']}{n}", instance=f"{source['instance']}-{n}")
        doc["sources"].append(extra)
    if instances > 1:
        doc["layout"] = {**doc.get("layout", {}), "table": "keys/table_by_source.j2"}
    return doc


def push_body(data: bytes, message_id: str, publish_time: str, subscription: str) -> dict[str, Any]:
    """What a Pub/Sub push subscription POSTs to the function for one message."""
    return {
        "message": {
            "data": base64.b64encode(data).decode(),
            "messageId": message_id,
            "publishTime": publish_time,
            "attributes": {},
        },
        "subscription": subscription,
    }


class Injector:
    """Background faults for one run: foreign operations and duplicate deliveries."""

    def __init__(self, stack: Stack, config: Config, plan: FaultPlan, rng: random.Random) -> None:
        self.stack = stack
        self.config = config
        self.plan = plan
        self.rng = rng
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=6, thread_name_prefix="dup")
        self._threads: list[threading.Thread] = []
        self._futures: list[concurrent.futures.Future[None]] = []
        self._admin_url = f"http://127.0.0.1:{stack.ports.sqladmin}/_emulator"
        self._pubsub = PubSubAdmin(f"127.0.0.1:{stack.ports.pubsub}", config.project)
        # Every work topic: the shards the chains publish on, and the base topic.
        self._work_topics = [config.work_topic, *work_shard_topics(config.work_topic, config.instances()).values()]
        project = config.project
        self.planner_url = f"http://127.0.0.1:{stack.ports.planner}/projects/{project}/topics/{config.ticks_topic}"
        self.worker_url = f"http://127.0.0.1:{stack.ports.worker}/projects/{project}/topics/{config.work_topic}"

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counts[key] += n

    def start(self) -> None:
        for topic in self._work_topics:
            self._pubsub.ensure_pull_subscription(TAP_PREFIX + topic, topic)
        for target in (self._foreign_loop, self._tap_loop):
            thread = threading.Thread(target=target, daemon=True, name=target.__name__)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop every background fault within STOP_SECONDS: pending copies are dropped, in-flight ones end at
        their next step (before, a teardown waited for every copy's back-offs and 180 s timeouts: the suite hung
        instead of failing)."""
        self._stop.set()
        deadline = time.monotonic() + STOP_SECONDS
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self._pool.shutdown(wait=False, cancel_futures=True)
        concurrent.futures.wait(self._futures, timeout=max(0.0, deadline - time.monotonic()))
        for topic in self._work_topics:
            self._pubsub.delete_subscription(TAP_PREFIX + topic)

    def _post(self, url: str, body: dict[str, Any], kind: str, delay: float) -> None:
        """Push like Pub/Sub does: a failed or cut-off delivery is retried with back-off, 5 attempts at most."""
        for attempt in range(5):
            if self._stop.wait(delay if attempt == 0 else min(10.0, 2.0**attempt)):
                return  # the run is over
            try:
                if requests.post(url, json=body, timeout=POST_TIMEOUT_SECONDS).ok:
                    return
            except requests.RequestException:
                pass
        self.count(f"{kind} copy dead-lettered")

    def push_again(self, url: str, body: dict[str, Any], kind: str) -> None:
        """Deliver a message once more with the same message id, a little later, in the background."""
        self._futures.append(self._pool.submit(self._post, url, body, kind, self.rng.uniform(0.0, 1.5)))

    def _foreign_loop(self) -> None:
        low, high = self.plan.foreign_seconds
        instances = self.config.instances()
        while not self._stop.wait(self.rng.expovariate(1 / self.plan.foreign_gap_seconds)):
            project, instance = self.rng.choice(instances).split(":", 1)
            body = {"project": project, "instance": instance, "seconds": round(self.rng.uniform(low, high), 2)}
            response = requests.post(f"{self._admin_url}/foreign-operation", json=body, timeout=10)
            self.count("foreign operation" if response.ok else "foreign operation refused (busy)")

    def _tap_loop(self) -> None:
        """Each `work` message the pipeline publishes is pushed to the worker 0..max_copies-1 more times."""
        while not self._stop.is_set():
            if not sum(self._tap(topic) for topic in self._work_topics):
                self._stop.wait(0.2)

    def _tap(self, topic: str) -> int:
        """Pull what was published on one work topic and push copies; returns how many messages it pulled."""
        tap = f"{self._pubsub.base}/subscriptions/{TAP_PREFIX}{topic}"
        subscription = f"projects/{self.config.project}/subscriptions/{TAP_PREFIX}{topic}"
        _, answer = call("POST", f"{tap}:pull", {"maxMessages": 20, "returnImmediately": True})
        received = (answer or {}).get("receivedMessages", [])
        if not received:
            return 0
        call("POST", f"{tap}:acknowledge", {"ackIds": [r["ackId"] for r in received]})
        for item in received:
            message = item["message"]
            body = push_body(
                base64.b64decode(message["data"]), message["messageId"], message["publishTime"], subscription
            )
            for _ in range(self.rng.randrange(self.plan.max_copies)):
                self.count("work message pushed again (same id)")
                self.push_again(self.worker_url, body, "work")
        return len(received)


def publish_ticks(driver: Driver, injector: Injector, plan: FaultPlan, rng: random.Random) -> None:
    """One tick per window (its end plus the settle delay), each delivered 1..max_copies times."""
    subscription = f"projects/{driver.config.project}/subscriptions/cdc-ticks-planner"
    for hour in range(plan.hours):
        at = START.add(hours=hour + 1, seconds=SETTLE_SECONDS)
        data = json.dumps({"kind": "tick", "at": at.isoformat()}).encode()
        message_id = driver.raw(driver.config.ticks_topic, data)
        for _ in range(rng.randrange(plan.max_copies)):
            if rng.random() < 0.5:
                driver.raw(driver.config.ticks_topic, data)
                injector.count("tick published again (new id)")
            else:
                body = push_body(data, message_id, pendulum.now("UTC").isoformat(), subscription)
                injector.push_again(injector.planner_url, body, "tick")
                injector.count("tick pushed again (same id)")
        time.sleep(rng.uniform(0.0, 0.3))


def wait_exported(driver: Driver, expected: int, timeout: float) -> None:
    """Until `expected` tasks exist and all are done with their bookkeeping finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tasks = driver.clients.state.all_tasks()
        if len(tasks) >= expected and all(t.state == "done" and t.finalized for t in tasks):
            return
        time.sleep(0.5)
    states = Counter((t.state, t.finalized) for t in driver.clients.state.all_tasks())
    raise TimeoutError(f"not all {expected} tasks done after {timeout:.0f} s: {dict(states)}")


# ---- checks ---------------------------------------------------------------------------------------------

_GENERATION = re.compile(r"\.g\d+(?=\.csv)")
_MANIFEST = re.compile(r"/_manifest(\.v\d+)?\.json$")


def _when(value: str | None) -> pendulum.DateTime:
    return pendulum.parse(value) if value else pendulum.now("UTC")  # type: ignore[return-value]


def _task_key(uri: str) -> str:
    """The uri without its generation suffix: all exports of one (table, window) share it."""
    return _GENERATION.sub("", uri)


def check_run(
    tasks: list[Task],
    operations: list[dict[str, Any]],
    objects: set[str],
    history: list[dict[str, Any]],
    watermarks: dict[tuple[str, str], pendulum.DateTime],
    config: Config,
    hours: int,
    idle_limit: float,
    held: list[Held] | None = None,
    vanished: int = 0,
) -> tuple[list[str], float]:
    """Every invariant of the suite, for every source; returns the violations and the longest idle gap of an
    instance while work was ready. `held`: when conditions kept instances idle (see `idle_allowance`); `vanished`:
    exports whose operation the emulator forgot after they wrote their object (their object is superseded by the
    task's next generation)."""
    violations: list[str] = []
    end = START.add(hours=hours)
    expected_ids = {
        (source.name, t, START.add(hours=h)) for source in config.sources for h in range(hours)
        for t in [None, *source.table_names]
    }  # fmt: skip
    found = {(t.source, t.table, t.low) for t in tasks}
    if found != expected_ids or len(tasks) != len(expected_ids):
        violations.append(f"tasks: {len(tasks)} for {len(expected_ids)} expected (table, window) pairs")
    for task in tasks:
        if task.state != "done" or not task.finalized:
            violations.append(f"task {task.id} ended {task.state} (finalized={task.finalized})")

    # Objects: exactly the done tasks' objects (manifests aside): nothing duplicated, nothing extra. A window
    # with a re-exported table has a later manifest version (`_manifest.v2.json`) instead of the first.
    manifests = {o for o in objects if _MANIFEST.search(o)}
    exported = objects - manifests
    uris = {t.uri for t in tasks}
    prefix = f"gs://{config.bucket}/"
    generations = {_task_key(t.uri): t.generation for t in tasks if t.uri}
    superseded = {
        prefix + o
        for o in exported
        if prefix + o not in uris and _generation(prefix + o) < generations.get(_task_key(prefix + o), 0)
    }
    if len(superseded) != vanished:
        violations.append(f"{len(superseded)} objects of earlier generations for {vanished} vanished exports")
    if {prefix + o for o in exported} - superseded != uris:
        extra = sorted({prefix + o for o in exported} - superseded - uris)[:5]
        missing = sorted(uris - {prefix + o for o in exported})[:5]
        violations.append(f"objects differ from the tasks' uris: extra {extra}, missing {missing}")
    windows_with_manifest = {_MANIFEST.sub("", o) for o in manifests}
    if len(windows_with_manifest) != hours * len(config.sources):
        violations.append(f"manifests for {len(windows_with_manifest)} of {hours * len(config.sources)} windows")

    # Operations: one successful export per (table, window); no overwrite attempt.
    exports = [op for op in operations if op["operationType"] == "EXPORT"]
    succeeded = Counter(_task_key(op["uri"]) for op in exports if op["status"] == "DONE" and not op["error"])
    for key, n in succeeded.items():
        if n != 1:
            violations.append(f"{key} exported successfully {n} times")
    if set(succeeded) != {_task_key(u) for u in uris if u}:
        violations.append("successful exports do not match the tasks")
    for op in exports:
        if op["error"] and op["error"]["code"] == "ALREADY_EXISTS":
            violations.append(f"export refused, object exists (overwrite attempt): {op['uri']}")

    # Watermarks: at the end, and each table's log a forward-only chain from START to the end.
    for source in config.sources:
        for table in source.table_names:
            if watermarks.get((source.name, table)) != end:
                violations.append(
                    f"watermark of {source.name}.{table} is {watermarks.get((source.name, table))}, not {end}"
                )
            moves = sorted(
                (e for e in history if e["table"] == table and e.get("source", source.name) == source.name),
                key=lambda e: e["at"],
            )
            position = START
            for move in moves:
                if move["from"] != position or move["to"] <= move["from"]:
                    violations.append(
                        f"watermark of {source.name}.{table} moved {move['from']} -> {move['to']} after {position}"
                    )
                position = max(position, move["to"])
            if position != end:
                violations.append(f"watermark log of {source.name}.{table} ends at {position}, not {end}")

    max_idle = 0.0
    created = {_task_key(t.uri): t.created_at for t in tasks if t.uri and t.created_at is not None}
    for instance, instance_ops in _by_instance(operations).items():
        found_violations, idle = _check_instance(instance, instance_ops, idle_limit, held or [], created)
        violations += found_violations
        max_idle = max(max_idle, idle)
    return violations, max_idle


def _by_instance(operations: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for op in operations:
        grouped.setdefault(op.get("instance", ""), []).append(op)
    return grouped


def _check_instance(
    instance: str,
    operations: list[dict[str, Any]],
    idle_limit: float,
    held: list[Held],
    created: dict[str, pendulum.DateTime] | None = None,
) -> tuple[list[str], float]:
    """One instance's operations: serial, serial per task, and never idle past the limit while work was ready. Work
    is ready once a task not yet exported exists (`created`: task key -> creation time; the planner writes the
    windows of many ticks over a while, and an instance whose chain ran out of planned work is not idle)."""
    violations: list[str] = []
    spans = sorted((_when(op["insertTime"]), _when(op["endTime"]), op) for op in operations)
    for (_, a_end, a), (b_start, _, b) in itertools.pairwise(spans):
        if b_start < a_end:
            violations.append(f"operations overlap on the instance: {a['name']} and {b['name']}")
    by_task: dict[str, list[tuple[pendulum.DateTime, pendulum.DateTime]]] = {}
    for start, finish, op in spans:
        if op["operationType"] == "EXPORT":
            by_task.setdefault(_task_key(op["uri"]), []).append((start, finish))
    for key, task_spans in by_task.items():
        for (_, a_end), (b_start, _) in itertools.pairwise(task_spans):
            if b_start < a_end:
                violations.append(f"{key} submitted again while its previous export still ran")

    # The instance never idles (no operation at all) longer than the limit while exports were still to do.
    last_export = max((s for s, _, op in spans if op["operationType"] == "EXPORT"), default=None)
    first_start = {key: task_spans[0][0] for key, task_spans in by_task.items()}
    max_idle = 0.0
    busy_until: pendulum.DateTime | None = None
    for start, finish, _ in spans:
        if last_export is None or start > last_export:
            break
        if busy_until is not None and start > busy_until:
            waiting = [(created or {}).get(key) for key, first in first_start.items() if first >= start]
            ready = min((c for c in waiting if c is not None), default=busy_until)
            since, allowed = idle_allowance(max(busy_until, ready), start, held, idle_limit, instance or None)
            idle = (start - since).total_seconds()
            max_idle = max(max_idle, idle)
            if idle > allowed:
                violations.append(
                    f"instance {instance or '(one)'} idled {idle:.1f} s while work was ready, from {since} "
                    f"(limit {allowed:.1f} s)"
                )
        busy_until = finish if busy_until is None else max(busy_until, finish)
    return violations, max_idle


def _generation(uri: str) -> int:
    found = _GENERATION.search(uri)
    return int(found.group(0)[2:]) if found else 1


def resumed_after(held: list[Held], operations: list[dict[str, Any]]) -> dict[str, float]:
    """Per fault kind, the longest time from its clearing to the next export on an instance it held (0 when one was
    running there at that moment; none followed when the instance had nothing left to export). Foreign operations
    do not count: an instance done with its exports may get a backup long after."""
    waits: dict[str, float] = {}
    grouped = _by_instance(operations)
    for item in held:
        if item.end is None:
            continue
        for instance, instance_ops in grouped.items():
            if instance and not item.condition.affects(instance):
                continue
            spans = sorted(
                (_when(op["insertTime"]), _when(op["endTime"]))
                for op in instance_ops
                if op["operationType"] == "EXPORT"
            )
            if any(start <= item.end < end for start, end in spans):
                following: pendulum.DateTime | None = item.end
            else:
                following = next((start for start, _ in spans if start >= item.end), None)
            if following is not None:
                kind = item.condition.kind
                waits[kind] = max(waits.get(kind, 0.0), (following - item.end).total_seconds())
    return waits


def covered_seconds(held: list[Held]) -> float:
    """The length of the union of the conditions' spans."""
    spans = sorted((h.start, h.end) for h in held if h.end is not None)
    total, reach = 0.0, None
    for start, end in spans:
        if reach is None or start > reach:
            total += (end - start).total_seconds()
            reach = end
        elif end > reach:
            total += (end - reach).total_seconds()
            reach = end
    return total


def survivors(injected: Counter[str], violations: list[str]) -> Counter[str]:
    """Faults survived: all of a kind when the run ended with every check passing (all tasks done and none failed,
    nothing lost, duplicated, overwritten or overlapping, watermarks forward only, no instance idle past its bound,
    every condition answered); none of any kind otherwise, since a broken invariant cannot be pinned on one fault."""
    return Counter({kind: 0 if violations else n for kind, n in injected.items()})


ANSWER_KINDS = {
    "http_503": "HTTP 503 answers",
    "http_403": "HTTP 403 answers (permission)",
    "http_400_not_running": "HTTP 400 answers (not running)",
    "http_409_invalid_state": "HTTP 409 answers (invalid state)",
    "http_429": "HTTP 429 answers (quota)",
    "operation_hang": "exports hung",
    "operation_vanish": "exports vanished",
    "op_fail": "export operations failed",
    TEMPLATE_FAILURES: "exports failed on the broken template",
}


def template_failures(operations: list[dict[str, Any]]) -> int:
    """Exports that failed on the broken template (PostgreSQL's answer to its clause)."""
    return sum(1 for op in operations if BROKEN_ERROR in str((op.get("error") or {}).get("message", "")))


def read_log_entries(path: Path, offset: int = 0) -> list[dict[str, Any]]:
    """The JSON log lines written to `path` since `offset` (gunicorn's own lines are skipped)."""
    with open(path, "rb") as handle:
        handle.seek(offset)
        lines = handle.read().decode(errors="replace").splitlines()
    entries = []
    for line in lines:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def run_suite(stack: Stack, plan: FaultPlan, workdir: Path) -> FaultReport:
    """Run one fault suite on `stack` (emptied first; its functions restarted with the fault settings)."""
    t0 = time.monotonic()
    report = FaultReport(plan)
    rng = random.Random(plan.seed)
    stack.reset()
    os.environ.update(stack.env())
    seed(stack.pg_dsn("postgres"), START, hours=plan.hours, rows_per_table=plan.hours * plan.rows_per_hour,
         database=DATABASE)  # fmt: skip
    doc = fault_config(plan.hours, plan.instances)
    config_path = workdir / "faults_config.json"
    config_path.write_text(json.dumps(doc))
    os.environ["CDC_CONFIG_FILE"] = str(config_path)
    # The functions serve a copy of templates/, so that the scenario can break a table's template and restore it.
    templates = workdir / "templates"
    shutil.copytree(TEMPLATES_DIR, templates, dirs_exist_ok=True)
    extra_env = {**plan.failpoints_env(workdir / "kill-tokens"), "CDC_TEMPLATES_DIR": str(templates)}
    stack.restart_functions(config_path=config_path, extra_env=extra_env)
    config = parse_config(doc, sqladmin_endpoint=stack.env()["CDC_SQLADMIN_ENDPOINT"])
    driver = Driver(config)
    worker_log, planner_log = stack.logs_dir / "worker.log", stack.logs_dir / "planner.log"
    offsets = {worker_log: _size(worker_log), planner_log: _size(planner_log)}
    admin = f"http://127.0.0.1:{stack.ports.sqladmin}/_emulator"
    requests.post(
        f"{admin}/faults",
        json={
            "error_rate": plan.error_rate,
            "op_fail_rate": plan.op_fail_rate,
            "min_duration": plan.min_duration,
            "seed": plan.seed,
        },
        timeout=10,
    ).raise_for_status()

    injector = Injector(stack, config, plan, rng)
    injector.start()
    project = config.sources[0].instance_project
    conditions = timeline([s.instance_name for s in config.sources], WORKER["lease_seconds"])
    broken = config.sources[0].table(plan.broken_table).template
    scenario = Scenario(admin, project, conditions, injector.count, TemplateFault(templates, broken))
    scenario.start()
    started = time.monotonic()
    expected = plan.tasks
    cut_short: str | None = None
    try:
        publish_ticks(driver, injector, plan, rng)
        wait_exported(driver, expected, plan.timeout_seconds)
    except TimeoutError as exc:  # report what was violated so far, as a failure, rather than only a timeout
        cut_short = str(exc)
    finally:
        report.pipeline_seconds = time.monotonic() - started
        scenario.stop()
        injector.stop()
        requests.post(f"{admin}/faults", json={"error_rate": 0, "op_fail_rate": 0, "min_duration": 0}, timeout=10)
    stats = requests.get(f"{admin}/stats", timeout=10).json()
    operations = requests.get(f"{admin}/operations", timeout=10).json()["operations"]
    # The functions go back to the stack's own configuration, without failpoints.
    stack.restart_functions()

    state = driver.clients.state
    tasks = state.all_tasks()
    objects = {b.name for b in storage.Client(project=config.project).list_blobs(config.bucket)}
    entries = read_log_entries(worker_log, offsets[worker_log])
    planner_entries = read_log_entries(planner_log, offsets[planner_log])
    kills = [e for e in entries if e.get("message", "").startswith("failpoint fired")]
    held = scenario.held + [
        killed(_when(e["time"]), WORKER["lease_seconds"], e.get("failpoint", "")) for e in kills if e.get("time")
    ]
    # The lease expiry, plus the longest designed pause (a retry's back-off), plus the recovery work after
    # a take-over (list operations, re-read and submit, each call facing 20% HTTP 503s).
    report.idle_limit_seconds = WORKER["lease_seconds"] + WORKER["retry_max_seconds"] * 1.2 + RECOVERY_SECONDS
    violations, report.max_idle_seconds = check_run(
        tasks, operations, objects, state.watermark_history(), state.watermarks(), config, plan.hours,
        report.idle_limit_seconds, held, stats.get("faults", {}).get("operation_vanish", 0),
    )  # fmt: skip
    violations += [f"condition never injected: {c.kind}" for c in conditions if not injector.counts[c.kind]]
    answered = {**stats.get("faults", {}), TEMPLATE_FAILURES: template_failures(operations)}
    violations += [f"condition never answered to the worker: {c.kind}" for c in conditions
                   if c.refusal and not answered.get(c.refusal)]  # fmt: skip
    failed = [e for e in entries if e.get("message", "").startswith(("export failed for good", "task cannot run"))]
    violations += [f"task failed: {e.get('task')} {e.get('error')}" for e in failed]
    report.resumed_after = resumed_after(held, operations)
    report.killed_hold_seconds = covered_seconds([h for h in held if h.condition.kind.startswith("worker killed")])
    cancelled = [op for op in operations if (op.get("error") or {}).get("code") == "OPERATION_CANCELLED"]
    for op in cancelled:  # a hung export holds its instance until the chain cancels it: that is its pause
        report.resumed_after["hung operation"] = max(
            report.resumed_after.get("hung operation", 0.0),
            (_when(op["endTime"]) - _when(op["insertTime"])).total_seconds(),
        )
    checks = driver.reconcile(stack.pg_dsn("postgres"))
    report.tasks = len(tasks)
    report.windows_compared = len(checks)
    report.rows_compared = sum(c.source_rows for c in checks)
    violations += [f"rows differ: {c.table} {c.low} bucket {c.bucket_rows} source {c.source_rows}" for c in checks
                   if not c.equal]  # fmt: skip
    report.violations = ([f"cut short: {cut_short}"] if cut_short else []) + violations

    for name, n in Counter(e["failpoint"] for e in kills).items():
        report.injected[f"worker killed at {name}"] = n
    for name, n in {**stats.get("faults", {}), TEMPLATE_FAILURES: answered[TEMPLATE_FAILURES]}.items():
        report.injected[ANSWER_KINDS.get(name, name)] = n
    busy = sum(n for key, n in stats.get("answers", {}).items() if key.startswith("http_409"))
    report.injected["409 busy answers"] = busy
    report.injected.update(injector.counts)
    report.recoveries.update(
        {
            "exports retried": sum(1 for e in entries if e.get("message") == "export failed; will retry"),
            "tasks recovered after crash": sum(
                e.get("recovered", 0) for e in entries if e.get("message") == "chain step finished"
            ),
            "redelivered or duplicate work": sum(1 for e in entries if e.get("message") == "message received")
            - sum(1 for e in entries if e.get("message") == "chain step finished"),
            "duplicates acknowledged": sum(
                1 for e in entries if e.get("message") == "chain already running; acknowledging"
            ),
            "leases of killed workers taken over": sum(
                1 for e in entries if e.get("message") == "lease of a dead invocation taken over"
            ),
            "ticks planned": sum(1 for e in planner_entries if e.get("message") == "message received"),
            "worker processes replaced": len(kills),
            "instance paused by its breaker (refusals)": sum(
                1 for e in entries if e.get("message") == "instance unavailable: pausing its chain"
            ),
            "instance resumed by itself": sum(
                1 for e in entries if e.get("message") == "instance available again; chain resumed"
            ),
            "stuck exports cancelled and retried": sum(
                1 for e in entries if str(e.get("message", "")).startswith("export stuck")
            ),
            "vanished exports retried": sum(
                1 for e in entries if str(e.get("message", "")).startswith("export's operation vanished")
            ),
        }
    )
    for kind in ("stuck exports cancelled and retried", "vanished exports retried"):
        if not report.recoveries[kind]:
            report.violations.append(f"no {kind}: the condition was injected but never handled")
    report.survived = survivors(report.injected, report.violations)
    report.total_seconds = time.monotonic() - t0
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.faults", description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="48 hourly windows (default: the fast 6)")
    parser.add_argument("--hours", type=int, help="number of hourly windows (overrides --full's 48)")
    parser.add_argument("--instances", type=int, help="number of Cloud SQL instances (default 6; at least 2)")
    parser.add_argument("--state-dir", default="/tmp/cdc-faults-stack", help="state folder of the suite's stack")
    parser.add_argument("--port-base", type=int, default=18200, help="first port of the suite's stack")
    parser.add_argument("--keep", action="store_true", help="leave the stack running afterwards")
    args = parser.parse_args(argv)
    plan = FaultPlan.full() if args.full else FaultPlan()
    if args.hours:
        plan = FaultPlan(**{**plan.__dict__, "hours": args.hours})
    if args.instances is not None:
        if args.instances < 2:
            parser.error(f"--instances {args.instances}: the timeline stops two instances; give 2 or more")
        plan = FaultPlan(**{**plan.__dict__, "instances": args.instances})
    stack = Stack(args.state_dir, args.port_base)
    stack.up()
    try:
        with tempfile.TemporaryDirectory() as workdir:
            report = run_suite(stack, plan, Path(workdir))
    finally:
        if not args.keep:
            stack.down()
    print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
