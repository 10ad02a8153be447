"""One scenario through the whole pipeline, and where its dead time goes.

Each gap between two exports splits into two parts, read from the emulator's own clock (its operations' times and
its call log), so that nothing depends on what the worker records:

- seen: previous export's endTime -> the answer of the `operations.get` that saw it DONE: the poll still to come
  when the export ended (the polling's detection lag), and the call;
- act: that answer -> the next export's insertTime: what the worker does between seeing DONE and its next export
  being accepted. With the successor claimed while the export ran, the export call alone; plus a re-read of the
  queue when the successor is not a live window (a better-ranked task may have been queued), or a claim when
  nothing was claimed ahead.
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
    seen: tuple[float, ...]  # endTime -> the answer of the operations.get that saw DONE
    act: tuple[float, ...]  # that answer -> the next export's insertTime
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
    calls = [c for c in emulator.calls(began) if c["instance"] == scenario.instance]
    seen, act = breakdown(ops, calls)
    return PipelineRun(
        figures,
        figures.last_end - began,
        figures.first_insert - began,
        idle,
        seen,
        act,
        tuple(calls_by_export(calls)),
    )


def breakdown(ops: list[dict[str, Any]], calls: list[dict[str, Any]]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """For each gap between two exports (in insertion order): endTime -> the answer of the last operations.get
    about the earlier one (the one that saw it DONE), and that answer -> the next one's insertTime. A gap whose
    DONE was not seen by a poll (a listing saw it) is left out."""
    last_get: dict[str, float] = {}
    for call in calls:
        if call["verb"] == "get" and call["status"] == 200 and call["operation"]:
            last_get[call["operation"]] = max(call["at"], last_get.get(call["operation"], 0.0))
    seen, act = [], []
    for prev, nxt in itertools.pairwise(sorted(ops, key=lambda op: timestamp(op["insertTime"]))):
        if (answered := last_get.get(prev["name"])) is not None:
            seen.append(answered - timestamp(prev["endTime"]))
            act.append(timestamp(nxt["insertTime"]) - answered)
    return tuple(seen), tuple(act)
