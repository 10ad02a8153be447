"""Instance-level conditions for the fault suite: production failure modes switched on and off on a timeline.

Each condition is applied through the Admin API emulator's fault knobs (local/sqladmin_emulator/faults.py) at a
fixed offset from the start of the run and, where it lasts, cleared after its duration:

    permission refused (403) for the first seconds after start, as while IAM propagates after an apply
    instance stopped (400 "not running") for a while, then started
    rate limited (429) in a burst
    one export that never finishes (hung: RUNNING until the worker cancels it)
    one export that vanishes (writes its object, then operations.get answers 404)
    a backup holding the instance longer than the worker's lease

The timeline records when each condition really held (wall clock), so the idle bound is measured from the moment
a condition cleared (`idle_allowance`), not from when the instance last worked.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import pendulum
import requests

from shared.app.breaker import FIRST_PAUSE_SECONDS, MAX_PAUSE_SECONDS

JITTER_MIN, JITTER_MAX = 0.8, 1.2
"""The breaker's jitter factors (shared/app/breaker.py draws its pauses' factor in [0.8, 1.2])."""


@dataclass(frozen=True)
class Condition:
    """One condition of the timeline: `knobs` set at `at` seconds, `clear` set `seconds` later (None: one-shot)."""

    kind: str
    at: float
    knobs: dict[str, object]
    seconds: float | None = None
    clear: dict[str, object] = field(default_factory=dict)
    breaker: bool = False  # the chain waits it out with the breaker's back-off (no operation runs meanwhile)
    refusal: str | None = None  # the emulator's counter of the refusals it causes: held until one was answered


def timeline(instance_name: str, lease_seconds: float) -> list[Condition]:
    """The conditions of one run, in order."""
    refused = [instance_name]
    return [
        Condition("permission refused (403)", 0.0, {"forbidden_instances": refused}, 6.0,
                  {"forbidden_instances": []}, breaker=True, refusal="http_403"),
        Condition("instance stopped (400 not running)", 14.0, {"stopped_instances": refused}, 8.0,
                  {"stopped_instances": []}, breaker=True, refusal="http_400_not_running"),
        Condition("rate limited (429)", 30.0, {"calls_per_minute": 4}, 6.0, {"calls_per_minute": 0}, breaker=True,
                  refusal="http_429"),
        Condition("hung operation", 40.0, {"hang_exports": 1}),
        Condition("vanishing operation", 44.0, {"vanish_exports": 1}),
        Condition("backup longer than the lease", 48.0, {}, lease_seconds * 1.5),
    ]  # fmt: skip


def breaker_wait_after(seconds: float) -> float:
    """The longest pause the breaker may be in when a condition that lasted `seconds` clears: the most refusals
    that fit in `seconds` (every pause at its smallest jitter) give the pause in force, at its largest jitter."""
    elapsed, pause = 0.0, FIRST_PAUSE_SECONDS
    while elapsed + min(MAX_PAUSE_SECONDS, pause) * JITTER_MIN <= seconds:
        elapsed += min(MAX_PAUSE_SECONDS, pause) * JITTER_MIN
        pause *= 2
    return min(MAX_PAUSE_SECONDS, pause) * JITTER_MAX


@dataclass
class Held:
    """When a condition really held, in wall-clock time (comparable with the operations' times)."""

    condition: Condition
    start: pendulum.DateTime
    end: pendulum.DateTime | None = None
    refusals_before: int = 0  # the emulator's count of the condition's refusals when it was applied


class Scenario:
    """Plays the timeline in a background thread; `stop` ends it within a second and clears what still holds."""

    def __init__(
        self,
        admin_url: str,
        project: str,
        instance_name: str,
        conditions: list[Condition],
        count: Callable[[str], None],
    ) -> None:
        self._admin = admin_url
        self._project = project
        self._instance = instance_name
        self._conditions = conditions
        self._count = count
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._play, daemon=True, name="scenario")
        self.held: list[Held] = []

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        """Stop within `timeout` (plus one admin call per condition still holding), whatever the emulator does."""
        self._stop.set()
        self._thread.join(timeout)
        for held in self.held:
            if held.end is None and held.condition.clear:
                held.end = pendulum.now("UTC")
                with contextlib.suppress(requests.RequestException):
                    self._set(held.condition.clear)

    def _set(self, knobs: dict[str, object]) -> None:
        requests.post(f"{self._admin}/faults", json=knobs, timeout=10).raise_for_status()

    def _foreign(self, seconds: float) -> bool:
        body = {"project": self._project, "instance": self._instance, "seconds": seconds}
        return requests.post(f"{self._admin}/foreign-operation", json=body, timeout=10).ok

    def _play(self) -> None:
        began = pendulum.now("UTC")
        ends: list[tuple[float, Held]] = []
        for condition in self._conditions:
            if self._wait_until(began, condition.at, ends):
                return
            if condition.knobs:
                self._set(condition.knobs)
            elif condition.seconds is not None:  # a foreign operation: retried until the instance is free
                while not self._foreign(condition.seconds):
                    if self._stop.wait(1.0):
                        return
            held = Held(condition, pendulum.now("UTC"), refusals_before=self._refusals(condition))
            self.held.append(held)
            self._count(condition.kind)
            if condition.clear and condition.seconds is not None:
                ends.append((condition.at + condition.seconds, held))
            elif condition.seconds is not None:
                held.end = held.start.add(seconds=condition.seconds)
        self._wait_until(began, float("inf"), ends)

    def _wait_until(self, began: pendulum.DateTime, offset: float, ends: list[tuple[float, Held]]) -> bool:
        """Sleep until `offset` seconds after `began`, clearing conditions that end meanwhile; True if stopped."""
        while True:
            ends.sort(key=lambda item: item[0])
            next_end = ends[0][0] if ends else float("inf")
            target = min(offset, next_end)
            if target == float("inf"):
                return self._stop.wait() or True
            left = target - (pendulum.now("UTC") - began).total_seconds()
            if left > 0 and self._stop.wait(left):
                return True
            if target == next_end:
                due, held = ends.pop(0)
                seconds = held.condition.seconds or 0.0
                if self._refusals(held.condition) <= held.refusals_before and due < held.condition.at + 3 * seconds:
                    ends.append((due + 1.0, held))  # not answered yet: hold on a little, so it is exercised
                    continue
                self._set(held.condition.clear)
                held.end = pendulum.now("UTC")
                continue
            return False

    def _refusals(self, condition: Condition) -> int:
        if condition.refusal is None:
            return 0
        faults = requests.get(f"{self._admin}/stats", timeout=10).json().get("faults", {})
        return int(faults.get(condition.refusal, 0))


def idle_allowance(
    gap_start: pendulum.DateTime, gap_end: pendulum.DateTime, held: list[Held], limit: float
) -> tuple[pendulum.DateTime, float]:
    """Where an idle gap really starts and how long it may last. A condition that held during the gap (a refusal,
    a killed worker's lease) moves the start to the moment it cleared; after a breaker condition the breaker's
    pause in force at that moment (`breaker_wait_after`) is designed idle time too."""
    start, allowed = gap_start, limit
    for item in held:
        if item.end is None or not (item.start < gap_end and item.end > gap_start) or item.end <= start:
            continue
        lasted = (item.end - item.start).total_seconds()
        start, allowed = item.end, limit + (breaker_wait_after(lasted) if item.condition.breaker else 0.0)
    return start, allowed


def killed(at: pendulum.DateTime, lease_seconds: float) -> Held:
    """A worker killed at `at`: nothing can take its chain over before its lease expires."""
    return Held(Condition("worker killed", 0.0, {}), at, at.add(seconds=lease_seconds))
