"""Round trips of each step on the worker's critical path, measured in-process against the bench stack.

Firestore: the production StateStore on tasks of a separate source and instance (so nothing the chain does
is touched): the query that picks the next task, the claim, mark_running, mark_done. Admin API: the cost of
operations.get by how its connection is used (the emulator's keep-alive stall, see bench.baseline).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import TypeVar

from bench.baseline import CLIENTS, ClientPool
from bench.scenarios import PROJECT, START
from shared.adapters.clients import Clients
from shared.adapters.sqladmin import SqlAdmin
from shared.core.tasks import LIVE_PRIORITY, window_tasks
from shared.core.windows import Window

T = TypeVar("T")


def _timed(samples: list[float], call: Callable[[], T]) -> T:
    t0 = time.monotonic()
    result = call()
    samples.append(time.monotonic() - t0)
    return result


def firestore_round_trips(clients: Clients) -> dict[str, list[float]]:
    """Seconds per call of next_pending, claim, mark_running, mark_done over one window of tasks."""
    state = clients.state
    source = dataclasses.replace(clients.config.sources[0], name="bench_profile", instance=f"{PROJECT}:bench-profile")
    window = Window(START.subtract(hours=1), START)
    state.create_tasks(window_tasks(source, [window], priority=LIVE_PRIORITY, offload=source.offload))
    samples: dict[str, list[float]] = {k: [] for k in ("next_pending", "claim", "mark_running", "mark_done")}
    now = window.high
    while pending := _timed(samples["next_pending"], lambda: state.next_pending(source.instance)):
        task = pending[0]
        claimed = _timed(samples["claim"], lambda t=task: state.claim(t, uri=f"gs://x/{t.id}", generation=1, now=now))
        if claimed is None:
            raise RuntimeError(f"profile task {task.id} could not be claimed")
        running = _timed(samples["mark_running"], lambda t=claimed: state.mark_running(t, "op"))
        if running is None:
            raise RuntimeError(f"profile task {task.id} changed under the profiler")
        done = _timed(samples["mark_done"], lambda t=running: state.mark_done(t, now))
        if done is not None:
            state.mark_finalized(done)  # so the task does not look like pending bookkeeping
    samples["next_pending"].pop()  # the last query found nothing: not a representative read
    return samples


def keepalive_probe(endpoint: str | None, project: str, operation: str, samples: int = 15) -> dict[str, list[float]]:
    """operations.get on one kept-alive connection 10 ms and 60 ms apart, and rotating over the baseline's pool."""
    result: dict[str, list[float]] = {}
    for label, gap in (("one connection, 10 ms apart", 0.01), ("one connection, 60 ms apart", 0.06)):
        admin = SqlAdmin(endpoint)
        admin.get_operation(project, operation)  # open the connection
        result[label] = []
        for _ in range(samples):
            time.sleep(gap)
            _timed(result[label], lambda a=admin: a.get_operation(project, operation))
    pool = ClientPool(endpoint)
    result[f"{CLIENTS} connections in turn, 10 ms apart"] = rotated = []
    for _ in range(samples + CLIENTS):
        time.sleep(0.01)
        pool.timed(rotated, lambda c: c.get_operation(project, operation))
    del rotated[:CLIENTS]  # each connection's first request opened it
    return result
