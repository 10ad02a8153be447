"""Instance-level conditions for the fault suite: production failure modes switched on and off on a timeline.

Each condition is applied through the Admin API emulator's fault knobs (local/sqladmin_emulator/faults.py) at a
fixed offset from the start of the run and, where it lasts, cleared after its duration:

    permission refused (403) for the first seconds after start, as while IAM propagates after an apply
    instance stopped (400 "not running") for a while, then started
    rate limited (429) in a burst
    one export that never finishes (hung: RUNNING until the worker cancels it)
    one export that vanishes (writes its object, then operations.get answers 404)
    a backup holding the instance longer than the worker's lease
    a table's template broken (its query fails in PostgreSQL: a task-level failure that spends attempts) and
    restored before its tasks run out of attempts

Each condition names the instances it keeps idle (None: every one). The timeline records when each condition really
held (wall clock), so the idle bound is measured, per instance, from the moment a condition that held that instance
cleared (`idle_allowance`), not from when the instance last worked.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

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
    instances: tuple[str, ...] | None = None  # the instances (names) it keeps idle; None: every instance
    # A refusal not answered yet is held on (cleared about a second after its first answer), up to this many times
    # `seconds`: a killed worker process can leave every chain waiting a minute on Firestore locks.
    hold_factor: float = 10.0

    def affects(self, instance: str) -> bool:
        return self.instances is None or instance in self.instances


TEMPLATE_KNOB = "template"
"""Not an emulator knob: the scenario breaks ("broken") or restores ("restored") the served copy of a template."""
TEMPLATE_FAILURES = "template_sql_error"
"""The count of exports that failed on the broken template (read from the emulator's operation log)."""
BROKEN_CLAUSE = "  AND 1 / 0 = 1\n"
BROKEN_ERROR = "division by zero"  # what PostgreSQL answers to the clause, in the failed operation's message


def timeline(instance_names: Sequence[str], lease_seconds: float) -> list[Condition]:
    """The conditions of one run, in order: the 403 refuses every instance (IAM after an apply), the stop holds
    the first two, the 429 quota is the caller's (every instance), the backup holds the first."""
    every, first = tuple(instance_names), tuple(instance_names[:1])
    stopped = tuple(instance_names[:2])
    return [
        Condition("permission refused (403)", 0.0, {"forbidden_instances": list(every)}, 6.0,
                  {"forbidden_instances": []}, breaker=True, refusal="http_403", instances=every),
        Condition("instance stopped (400 not running)", 14.0, {"stopped_instances": list(stopped)}, 8.0,
                  {"stopped_instances": []}, breaker=True, refusal="http_400_not_running", instances=stopped),
        # Restored about a second after the first export failed on it: each of the table's tasks spends one or two of
        # its attempts (while the other instances' chains run), never all of them.
        Condition("template broken (SQL error)", 17.0, {TEMPLATE_KNOB: "broken"}, 1.0, {TEMPLATE_KNOB: "restored"},
                  refusal=TEMPLATE_FAILURES, instances=(), hold_factor=10.0),
        Condition("rate limited (429)", 30.0, {"calls_per_minute": 4}, 6.0, {"calls_per_minute": 0}, breaker=True,
                  refusal="http_429", instances=every),
        Condition("hung operation", 40.0, {"hang_exports": 1}, instances=()),
        Condition("vanishing operation", 44.0, {"vanish_exports": 1}, instances=()),
        Condition("backup longer than the lease", 48.0, {}, lease_seconds * 1.5, instances=first),
    ]  # fmt: skip


class TemplateFault:
    """One table's template in the copy of templates/ the functions serve (CDC_TEMPLATES_DIR), broken and restored
    in place: Jinja reloads a template whose file changed, so the next render serves the change, as a deploy of a
    broken template then of its fix would. Broken, the query still renders with the same columns but PostgreSQL
    refuses it (division by zero), so each export of the table fails as a task-level error and spends an attempt."""

    def __init__(self, root: Path, template: str) -> None:
        self.path = root / template
        self.original = self.path.read_text()
        if "ORDER BY" not in self.original:
            raise ValueError(f"{self.path} has no ORDER BY to insert the failing clause before")
        self.broken = self.original.replace("ORDER BY", BROKEN_CLAUSE + "ORDER BY", 1)

    def __call__(self, broken: bool) -> None:
        self.path.write_text(self.broken if broken else self.original)


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
        conditions: list[Condition],
        count: Callable[[str], None],
        template: Callable[[bool], None] | None = None,
    ) -> None:
        self._admin = admin_url
        self._project = project
        self._conditions = conditions
        self._count = count
        self._template = template
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
        knobs = dict(knobs)
        template = knobs.pop(TEMPLATE_KNOB, None)
        if template is not None and self._template is not None:
            self._template(template == "broken")
        if knobs:
            requests.post(f"{self._admin}/faults", json=knobs, timeout=10).raise_for_status()

    def _foreign(self, instance: str, seconds: float) -> bool:
        body = {"project": self._project, "instance": instance, "seconds": seconds}
        return requests.post(f"{self._admin}/foreign-operation", json=body, timeout=10).ok

    def _play(self) -> None:
        began = pendulum.now("UTC")
        ends: list[tuple[float, Held]] = []
        started = False
        for condition in self._conditions:
            if condition.at > 0 and not started:
                # The timeline runs from the worker's first Admin API call, not from when the run was set up: on a
                # loaded machine planning can take longer than the first conditions last, which then held nothing.
                if self._wait_for_first_call():
                    return
                began, started = pendulum.now("UTC"), True
            if self._wait_until(began, condition.at, ends):
                return
            if condition.knobs:
                self._set(condition.knobs)
            elif condition.seconds is not None and condition.instances:  # a foreign operation, once it is free
                while not self._foreign(condition.instances[0], condition.seconds):
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
                limit = held.condition.at + held.condition.hold_factor * seconds
                if self._refusals(held.condition) <= held.refusals_before and due < limit:
                    ends.append((due + 1.0, held))  # not answered yet: hold on a little, so it is exercised
                    continue
                self._set(held.condition.clear)
                held.end = pendulum.now("UTC")
                continue
            return False

    def _wait_for_first_call(self) -> bool:
        """Until the emulator injected its first fault into a worker's call (the 403 applied from the start refuses
        the very first one; the admin endpoints the suite itself calls draw none); True if stopped meanwhile."""
        while not self._stop.wait(0.2):
            with contextlib.suppress(requests.RequestException, ValueError):
                if sum(requests.get(f"{self._admin}/stats", timeout=10).json().get("faults", {}).values()):
                    return False
        return True

    def _refusals(self, condition: Condition) -> int:
        if condition.refusal is None:
            return 0
        if condition.refusal == TEMPLATE_FAILURES:
            operations = requests.get(f"{self._admin}/operations", timeout=10).json()["operations"]
            return sum(1 for op in operations if BROKEN_ERROR in str((op.get("error") or {}).get("message", "")))
        faults = requests.get(f"{self._admin}/stats", timeout=10).json().get("faults", {})
        return int(faults.get(condition.refusal, 0))


def idle_allowance(
    gap_start: pendulum.DateTime,
    gap_end: pendulum.DateTime,
    held: list[Held],
    limit: float,
    instance: str | None = None,
) -> tuple[pendulum.DateTime, float]:
    """Where an idle gap of `instance` really starts and how long it may last. A condition that held the instance
    during the gap (a refusal, a killed worker's lease) moves the start to the moment it cleared; after a breaker
    condition the breaker's pause in force at that moment (`breaker_wait_after`) is designed idle time too."""
    start, allowed = gap_start, limit
    for item in held:
        if instance is not None and not item.condition.affects(instance):
            continue
        if item.end is None or not (item.start < gap_end and item.end > gap_start) or item.end <= start:
            continue
        lasted = (item.end - item.start).total_seconds()
        start, allowed = item.end, limit + (breaker_wait_after(lasted) if item.condition.breaker else 0.0)
    return start, allowed


ABANDONED_TRANSACTION_SECONDS = 90.0
"""How long the Firestore emulator may keep the documents of a killed process's open transactions locked (measured
on a loaded 2-core machine: a lease document read inside a transaction by a chain of a SIGKILLed process could not
be taken over for 60 to 78 s after the kill; transactions on it fail with "Transaction lock timeout" meanwhile).
Inferred for production: Firestore's default pessimistic concurrency holds a transaction's locks until it commits,
rolls back or expires idle."""


def killed(at: pendulum.DateTime, lease_seconds: float, point: str = "") -> Held:
    """A worker process killed at `at`. One process runs the chains of several instances (request concurrency), and
    every one of them dies with it: a chain killed outside a transaction can be taken over once its lease expires,
    but one killed inside a Firestore transaction holds its lease document locked until the transaction is dropped
    (`ABANDONED_TRANSACTION_SECONDS`), and which chains were inside one is not known: the condition holds every
    instance until then."""
    kind = f"worker killed at {point}" if point else "worker killed"
    return Held(Condition(kind, 0.0, {}), at, at.add(seconds=max(lease_seconds, ABANDONED_TRANSACTION_SECONDS)))
