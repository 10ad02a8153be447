"""`cdc backfill`: check a backfill request exactly as the planner will, publish it, and follow its tasks.

The check runs the planner's own parser (`shared.core.messages.parse_event`) on the message about to be
published, inside a local Pub/Sub envelope whose publish time is now: every rule (source, tables, grid,
window cap, end not after the latest settled window) is the same code, so what passes here is planned.
"""

from __future__ import annotations

import base64
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pendulum

from shared.app.ports import StateStore
from shared.core.config import Config
from shared.core.messages import Backfill, backfill_message, parse_event
from shared.core.tasks import FINISHED_STATES, Task, window_task_ids
from shared.core.windows import backfill_windows
from shared.ops.status import ErrorSeen, human_seconds


@dataclass(frozen=True)
class _LocalEvent:
    """The shape of a functions-framework CloudEvent that `parse_event` reads."""

    data: dict[str, Any]


def check_backfill(config: Config, data: bytes, now: pendulum.DateTime) -> Backfill:
    """Parse `data` as the planner would if Pub/Sub published it at `now`; raises MessageError."""
    message = {"data": base64.b64encode(data).decode(), "messageId": "cdc-cli-check", "publishTime": now.isoformat()}
    parsed = parse_event(_LocalEvent({"message": message}), config)
    if not isinstance(parsed, Backfill):  # backfill_message always encodes kind=backfill
        raise TypeError(f"expected a backfill, parsed {type(parsed).__name__}")
    return parsed


def request_data(
    *,
    start: pendulum.DateTime,
    end: pendulum.DateTime,
    source: str | None,
    tables: Sequence[str] | None,
    force: bool,
    offload: bool | None,
) -> bytes:
    return backfill_message(start, end, source=source, tables=tables, force=force, offload=offload)


def task_ids(config: Config, request: Backfill) -> list[str]:
    """The ids of the tasks the planner creates for `request` (a schema task and one per table per window)."""
    source = config.source(request.source)
    windows = backfill_windows(
        source.schedule,
        request.start,
        request.end,
        clock=request.published,
        settle=source.settle,
        limit=config.backfill_max_windows,
    )
    return [tid for window in windows for tid in window_task_ids(source.name, window.low, request.tables)]


def windows_done(state: StateStore, ids: Sequence[str], per_window: int) -> int:
    """How many of the backfill's windows are exported already (every task of the window done)."""
    found = state.get_tasks(ids)
    done = [all(found.get(t) is not None and found[t].state == "done" for t in ids[i : i + per_window])
            for i in range(0, len(ids), per_window)]  # fmt: skip
    return sum(done)


def failures(state: StateStore, ids: Sequence[str]) -> list[ErrorSeen]:
    """The backfill's failed tasks, each with its error (in window and table order)."""
    found = state.get_tasks(ids)
    return [ErrorSeen.of(found[t]) for t in ids if t in found and found[t].state == "failed"]


@dataclass
class Progress:
    """How many of the backfill's tasks are in each state; `waiting` ones are not (re-)queued yet.
    `elapsed` counts from the start of the wait; `eta` extrapolates the rate seen since then."""

    total: int
    states: Counter[str] = field(default_factory=Counter)
    elapsed: float = 0.0
    eta: float | None = None

    @property
    def finished(self) -> int:
        return self.states["done"] + self.states["failed"]

    @property
    def complete(self) -> bool:
        return self.finished == self.total

    def line(self, width: int = 30) -> str:
        filled = width * self.finished // self.total if self.total else width
        bar = "#" * filled + "-" * (width - filled)
        parts = [f"{self.states[s]} {s}" for s in ("done", "failed", "running", "pending", "waiting") if self.states[s]]
        timing = f"  {human_seconds(self.elapsed)} elapsed"
        if not self.complete:
            timing += f", eta {human_seconds(self.eta)}" if self.eta is not None else ", eta -"
        return f"[{bar}] {self.finished}/{self.total}  " + ", ".join(parts) + timing

    def to_json(self) -> dict[str, object]:
        return {"total": self.total, "states": dict(self.states), "elapsed_seconds": round(self.elapsed, 1)}


def _progress(ids: Sequence[str], tasks: dict[str, Task], force_token: str | None, stale: set[str]) -> Progress:
    progress = Progress(total=len(ids))
    for tid in ids:
        task = tasks.get(tid)
        if task is None or (tid in stale and task.force_token != force_token):
            progress.states["waiting"] += 1  # not planned (or not re-queued) yet
        elif task.state in FINISHED_STATES:
            progress.states[task.state] += 1
        elif task.state == "pending":
            progress.states["pending"] += 1
        else:
            progress.states["running"] += 1
    return progress


def finished_before(state: StateStore, ids: Sequence[str]) -> set[str]:
    """Tasks already done or failed: a forced backfill re-queues them, so they only count once re-run."""
    return {tid for tid, task in state.get_tasks(ids).items() if task.state in FINISHED_STATES}


def wait(
    state: StateStore,
    ids: Sequence[str],
    *,
    force_token: str | None,
    stale: set[str],
    timeout: float,
    report: Callable[[Progress], None],
    poll_seconds: float = 1.0,
) -> Progress:
    """Poll the tasks until every one is done or failed, or `timeout` seconds pass; returns the last progress."""
    started = time.monotonic()
    deadline = started + timeout
    baseline: int | None = None
    while True:
        progress = _progress(ids, state.get_tasks(ids), force_token, stale)
        progress.elapsed = time.monotonic() - started
        baseline = progress.finished if baseline is None else baseline
        rate = (progress.finished - baseline) / progress.elapsed if progress.elapsed > 0 else 0.0
        progress.eta = (progress.total - progress.finished) / rate if rate > 0 else None
        report(progress)
        if progress.complete or time.monotonic() >= deadline:
            return progress
        time.sleep(poll_seconds)
