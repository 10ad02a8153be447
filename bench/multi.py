"""The multi-instance case: five chains at once, one per Cloud SQL instance, sharing one Admin API call budget.

The production code paths run against the bench stack's emulators (Firestore, the Admin API emulator, the bucket):
the planner queues each source's backfill, then one thread per instance runs `run_work` as the worker function
would, and its continuations, until the instance's queue is empty. Work messages stay in-process (a recording bus):
the Pub/Sub emulator pushes at most two messages at a time per subscription, fewer chains than this case needs.

The emulator answers 429 past 180 calls in any minute (the Admin API's default quota); the budget must keep every
chain's calls together under it: the busiest minute of the emulator's call log is the figure.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from bench.metrics import busiest_minute, calls_by_export, chain_figures
from bench.pipeline import Emulator
from bench.scenarios import MULTI_INSTANCES, MULTI_JITTER, MULTI_SECONDS, MULTI_WINDOWS, PROJECT
from local.driver import Driver
from shared.adapters.clients import Clients
from shared.app.planner import plan_backfill
from shared.app.ports import AdminApi, Clock, ObjectStore, StateStore
from shared.app.worker import run_work
from shared.core.config import Config
from shared.core.messages import Backfill, Work
from shared.core.templates import Templates
from shared.testing.services import RecordingBus

QUOTA_PER_MINUTE = 180
MAX_INVOCATIONS = 50


@dataclass(frozen=True)
class MultiRun:
    instances: int
    exports: int
    calls: int
    calls_per_minute_peak: int
    http_429: int
    calls_per_export: float
    dead_median_ms: float
    wall_seconds: float


class ThreadServices:
    """One chain's services: the process's real clients, and its own recording bus (follows
    shared.app.ports.Services)."""

    def __init__(self, clients: Clients) -> None:
        self._clients = clients
        self.bus = RecordingBus()

    @property
    def config(self) -> Config:
        return self._clients.config

    @property
    def state(self) -> StateStore:
        return self._clients.state

    @property
    def sqladmin(self) -> AdminApi:
        """The real client (one HTTP connection per thread)."""
        return self._clients.sqladmin

    @property
    def objects(self) -> ObjectStore:
        return self._clients.objects

    @property
    def clock(self) -> Clock:
        return self._clients.clock


def _chain(services: ThreadServices, templates: Templates, errors: list[BaseException]) -> None:
    """Run the instance's work messages, as Pub/Sub would deliver them, until none is left."""
    try:
        for _ in range(MAX_INVOCATIONS):
            if not services.bus.published:
                return
            instance = services.bus.published.pop(0)
            services.bus.published[:] = [i for i in services.bus.published if i != instance]  # duplicates: one run
            message = Work(f"bench-{instance}-{time.monotonic_ns()}", services.clock.now(), instance)
            run_work(message, services, templates)
        raise RuntimeError(f"chain still busy after {MAX_INVOCATIONS} invocations")
    except BaseException as exc:  # reported by the caller
        errors.append(exc)


def run_multi(driver: Driver, emulator: Emulator, timeout: float) -> MultiRun:
    """Backfill every multi-instance source at once and run their chains in parallel threads."""
    config = driver.config
    clients = Clients(config)
    templates = Templates()
    emulator.faults(min_duration=MULTI_SECONDS, duration_jitter=MULTI_JITTER, calls_per_minute=QUOTA_PER_MINUTE)
    began = time.time()
    threads: list[threading.Thread] = []
    errors: list[BaseException] = []
    per_source: list[ThreadServices] = []
    try:
        for i, _instance in enumerate(MULTI_INSTANCES):
            source = config.source(f"m{i}")
            services = ThreadServices(clients)
            request = Backfill(
                f"bench-multi-{i}-{began}",
                clients.clock.now(),
                MULTI_WINDOWS[0].low,
                MULTI_WINDOWS[-1].high,
                source.name,
                source.table_names,
                False,
                False,
            )
            plan_backfill(request, services)
            per_source.append(services)
        for services in per_source:
            thread = threading.Thread(target=_chain, args=(services, templates, errors), daemon=True)
            thread.start()
            threads.append(thread)
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in threads):
            raise TimeoutError(f"multi-instance chains not done after {timeout:.0f} s")
        if errors:
            raise RuntimeError(f"a multi-instance chain failed: {errors[0]!r}") from errors[0]
    finally:
        emulator.faults(calls_per_minute=0)
    wall = time.time() - began
    calls = [c for c in emulator.calls(began) if c["instance"] in MULTI_INSTANCES]
    exports = 0
    dead: list[float] = []
    per_export: list[int] = []
    for instance in MULTI_INSTANCES:
        ops = emulator.operations(instance, began)
        failed = [op for op in ops if op.get("error")]
        if failed:
            raise RuntimeError(f"{instance}: {len(failed)} export(s) failed, e.g. {failed[0]['error']}")
        exports += len(ops)
        dead.extend(chain_figures(ops).dead)
        per_export.extend(calls_by_export([c for c in calls if c["instance"] == instance]))
    dead.sort()
    return MultiRun(
        instances=len(MULTI_INSTANCES),
        exports=exports,
        calls=len(calls),
        calls_per_minute_peak=busiest_minute([c["at"] for c in calls]),
        http_429=sum(c["status"] == 429 for c in calls),
        calls_per_export=sum(per_export) / max(1, len(per_export)),
        dead_median_ms=dead[len(dead) // 2] * 1000 if dead else float("nan"),
        wall_seconds=wall,
    )


def report(run: MultiRun) -> None:
    print(
        f"\n== s4: {run.instances} instances at once, each 2 windows x (schema + 1 table) of {MULTI_SECONDS:g} s "
        f"+/- {MULTI_JITTER:.0%}, one call budget (worker.api_calls_per_minute), emulator quota {QUOTA_PER_MINUTE}/min"
    )
    print(
        f"   {run.exports} exports in {run.wall_seconds:.1f} s; {run.calls} Admin API calls "
        f"({run.calls_per_export:.1f} per export), busiest minute {run.calls_per_minute_peak} calls "
        f"(quota {QUOTA_PER_MINUTE}), {run.http_429} answered 429; dead time median {run.dead_median_ms:.0f} ms"
    )
    print(f"   project {PROJECT}: every chain's share is the budget over the live leases")
