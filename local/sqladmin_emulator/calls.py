"""The log of Admin API calls the emulator answered (`GET /_emulator/calls`): what the benchmarks count calls per
export and per minute from. Not part of the Admin API; reset with the emulator."""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

MAX_CALLS = 500_000
"""Oldest entries are dropped beyond this (a long run must not grow the emulator without bound)."""


@dataclass(frozen=True)
class Call:
    at: float  # seconds since the epoch, when the answer was sent
    verb: str  # export | get | list | cancel | other
    status: int  # the HTTP status answered
    instance: str | None  # the instance the call was about, when known
    operation: str | None  # the operation it created or read, when known


class CallLog:
    """Thread-safe, append-only (bounded) list of calls."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[Call] = []

    def add(self, verb: str, status: int, instance: str | None, operation: str | None) -> None:
        with self._lock:
            self._calls.append(Call(time.time(), verb, status, instance, operation))
            if len(self._calls) > MAX_CALLS:
                del self._calls[: len(self._calls) - MAX_CALLS]

    def since(self, at: float) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(c) for c in self._calls if c.at >= at]

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()
