"""The tightest possible chain: the Admin API alone, no Firestore, no Pub/Sub, no lease.

Submit, poll `operations.get` every 10 ms, submit the next the moment it is DONE. Its dead time is the floor
that the emulator and one HTTP round trip impose; the pipeline's is compared against it.

The calls rotate over a few clients, each with its own kept-alive connection, so that one connection rests
for more than 40 ms between two requests. The emulator (http.server) writes a response's headers and body
in two segments with Nagle's algorithm on: a keep-alive request sent sooner than ~40 ms after the previous
answer waits for the client's delayed ACK, ~44 ms per call instead of ~1 ms (`profile.keepalive_probe`
shows it). One client polling every 10 ms would pay that on every call and measure the emulator's socket
handling, not the chain. The worker polls at intervals of 50 ms or more and is not affected.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from shared.adapters.sqladmin import SqlAdmin
from shared.core.operations import Operation

POLL_SECONDS = 0.01
CLIENTS = 8  # 8 x (10 ms + ~1 ms) between two uses of one connection: well clear of the 40 ms stall
T = TypeVar("T")


@dataclass
class BaselineRun:
    operation_names: list[str] = field(default_factory=list)
    submit_seconds: list[float] = field(default_factory=list)  # duration of each export call
    poll_seconds: list[float] = field(default_factory=list)  # duration of each operations.get
    wall_seconds: float = 0.0  # first submit -> last DONE seen


class ClientPool:
    """SqlAdmin clients used in turn."""

    def __init__(self, endpoint: str | None, size: int = CLIENTS) -> None:
        self._clients = itertools.cycle([SqlAdmin(endpoint) for _ in range(size)])

    def timed(self, samples: list[float], call: Callable[[SqlAdmin], T]) -> T:
        client = next(self._clients)
        t0 = time.monotonic()
        result = call(client)
        samples.append(time.monotonic() - t0)
        return result


def run_baseline(pool: ClientPool, project: str, instance: str, bodies: Sequence[dict[str, Any]]) -> BaselineRun:
    """Run `bodies` one after the other on `instance`; raises if an export fails."""
    run = BaselineRun()
    began = time.monotonic()
    for body in bodies:
        operation: Operation = pool.timed(run.submit_seconds, lambda c, b=body: c.export(project, instance, b))
        run.operation_names.append(operation.name)
        while not operation.done:
            time.sleep(POLL_SECONDS)
            operation = pool.timed(run.poll_seconds, lambda c, n=operation.name: c.get_operation(project, n))
        if operation.failed:
            raise RuntimeError(f"baseline export {operation.name} failed: {operation.error_message}")
    run.wall_seconds = time.monotonic() - began
    return run
