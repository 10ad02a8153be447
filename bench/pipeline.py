"""One scenario through the whole pipeline, and where its dead time goes.

Each gap between two exports splits into two parts, read from the tasks' own timestamps (the worker records
`submitted_at` just before its Firestore claim):

- detect: previous export's endTime -> next task's `submitted_at`, itself in two: `seen`, endTime -> the answer
  of the `operations.get` that saw DONE (the emulator's call log): the poll still to come when the export ended,
  and the call; then DONE seen -> the claim: re-choosing the next task when the prefetched one cannot be used
  (none prefetched, or not a live one: the worker re-queries in case a live one arrived);
- submit: `submitted_at` -> next export's insertTime: the claim (a Firestore write with a precondition) and
  the `instances.export` call up to the emulator accepting it.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Any

import requests

from bench.metrics import ChainFigures, calls_by_export, chain_figures, timestamp
from bench.scenarios import SETTLE_SECONDS, Scenario
from local.driver import Driver
from shared.core.tasks import Task


class Emulator:
    """The Admin API emulator's `/_emulator/` endpoints."""

    def __init__(self, endpoint: str) -> None:
        self.base = endpoint.rstrip("/") + "/_emulator"

    def faults(self, **knobs: Any) -> None:
        requests.post(f"{self.base}/faults", json=knobs, timeout=10).raise_for_status()

    def calls(self, since: float = 0.0) -> list[dict[str, Any]]:
        """Every Admin API call the emulator answered since `since` (epoch seconds): verb, instance, operation,
        status, time."""
        response = requests.get(f"{self.base}/calls", params={"since": since}, timeout=30)
        response.raise_for_status()
        return list(response.json()["calls"])

    def operations(self, instance: str, since: float = 0.0) -> list[dict[str, Any]]:
        response = requests.get(f"{self.base}/operations", timeout=10)
        response.raise_for_status()
        return [
            op
            for op in response.json()["operations"]
            if op["instance"] == instance and timestamp(op["insertTime"]) >= since
        ]

    def wait_done(self, instance: str, since: float, count: int, timeout: float) -> list[dict[str, Any]]:
        """Wait (polling gently, to leave the CPU to the chain) until `count` operations have ended."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ops = self.operations(instance, since)
            if sum(1 for op in ops if op.get("endTime")) >= count:
                return ops
            time.sleep(0.5)
        raise TimeoutError(f"{instance}: {count} operations not finished after {timeout:.0f} s")


@dataclass(frozen=True)
class PipelineRun:
    figures: ChainFigures
    wall_seconds: float  # trigger published -> last export's endTime
    first_export_seconds: float  # trigger published -> first export's insertTime (planner + Pub/Sub)
    idle_seconds: float  # trigger published -> chain idle (bookkeeping of the last export included)
    detect: tuple[float, ...]
    submit: tuple[float, ...]
    seen: tuple[float, ...]  # endTime -> the answer of the operations.get that saw DONE
    calls_per_export: tuple[int, ...]  # every Admin API call about the scenario's instance, by export, in order


def run_scenario(driver: Driver, emulator: Emulator, scenario: Scenario, timeout: float) -> PipelineRun:
    emulator.faults(min_duration=scenario.seconds, duration_jitter=scenario.jitter)
    began = time.time()
    first, last = scenario.windows[0], scenario.windows[-1]
    if scenario.backfill:
        driver.backfill(first.low, last.high, tables=list(scenario.tables), source=scenario.source)
    else:
        driver.tick(last.high.add(seconds=SETTLE_SECONDS))
    ops = emulator.wait_done(scenario.instance, began, scenario.exports, timeout)
    driver.wait_idle(timeout=timeout, quiet=0.3)
    idle = time.time() - began
    if len(ops) != scenario.exports:
        raise RuntimeError(f"{scenario.key}: expected {scenario.exports} exports, the emulator ran {len(ops)}")
    failed = [op for op in ops if op.get("error")]
    if failed:
        raise RuntimeError(f"{scenario.key}: {len(failed)} export(s) failed, e.g. {failed[0]['error']}")
    figures = chain_figures(ops)
    tasks = {t.operation: t for t in driver.clients.state.all_tasks() if t.operation}
    detect, submit = _breakdown(ops, tasks)
    calls = [c for c in emulator.calls(began) if c["instance"] == scenario.instance]
    seen = _seen(ops, calls)
    return PipelineRun(
        figures,
        figures.last_end - began,
        figures.first_insert - began,
        idle,
        detect,
        submit,
        seen,
        tuple(calls_by_export(calls)),
    )


def _seen(ops: list[dict[str, Any]], calls: list[dict[str, Any]]) -> tuple[float, ...]:
    """For each export but the last: its endTime -> the last answered operations.get about it (the one that saw
    DONE)."""
    last_get: dict[str, float] = {}
    for call in calls:
        if call["verb"] == "get" and call["status"] == 200 and call["operation"]:
            last_get[call["operation"]] = max(call["at"], last_get.get(call["operation"], 0.0))
    ordered = sorted(ops, key=lambda op: timestamp(op["insertTime"]))[:-1]
    return tuple(last_get[op["name"]] - timestamp(op["endTime"]) for op in ordered if op["name"] in last_get)


def _breakdown(ops: list[dict[str, Any]], tasks: dict[str, Task]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    ordered = sorted(ops, key=lambda op: timestamp(op["insertTime"]))
    detect, submit = [], []
    for prev, nxt in itertools.pairwise(ordered):
        task = tasks.get(nxt["name"])
        if task is None or task.submitted_at is None:
            raise RuntimeError(f"no task records operation {nxt['name']}")
        submitted = task.submitted_at.timestamp()
        detect.append(submitted - timestamp(prev["endTime"]))
        submit.append(timestamp(nxt["insertTime"]) - submitted)
    return tuple(detect), tuple(submit)
