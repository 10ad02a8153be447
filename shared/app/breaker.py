"""The per-instance breaker: an instance-level condition pauses the instance's chain, never its tasks.

Stopped or restarting instances, permissions refused while IAM propagates, and quota (InstanceUnavailable) say
nothing about the task being exported. The chain keeps its claimed task, waits with jittered exponential backoff
(capped), spends no task attempt, and tries again by itself; the pause is recorded in the state store (`cdc
status` shows it), logged once at ERROR when it lasts past ALERT_AFTER_SECONDS (alertable), and cleared when an
export is accepted again.
"""

from __future__ import annotations

import random
from typing import Any

import pendulum

from shared.app.ports import Clock, StateStore
from shared.core import logs
from shared.core.errors import InstanceUnavailable

FIRST_PAUSE_SECONDS = 5.0
MAX_PAUSE_SECONDS = 300.0
ALERT_AFTER_SECONDS = 900.0


class Breaker:
    """One instance's breaker, as its lease holder sees it."""

    def __init__(self, state: StateStore, clock: Clock, instance: str) -> None:
        self.state = state
        self.clock = clock
        self.instance = instance

    def trip(self, exc: InstanceUnavailable) -> float:
        """Record one more refusal; returns how long to pause before the next try."""
        now = self.clock.now()
        record: dict[str, Any] = self.state.breaker(self.instance) or {
            "opened_at": now.isoformat(),
            "refusals": 0,
            "alerted": False,
        }
        refusals = int(record["refusals"]) + 1
        pause = min(MAX_PAUSE_SECONDS, FIRST_PAUSE_SECONDS * 2 ** (refusals - 1)) * random.uniform(0.8, 1.2)
        record.update(
            refusals=refusals,
            condition=exc.condition,
            status=exc.status,
            message=exc.detail[:300],
            last_refusal_at=now.isoformat(),
            retry_at=now.add(seconds=pause).isoformat(),
        )
        paused_for = (now - _parse(record["opened_at"])).total_seconds()
        fields = {
            "instance": self.instance,
            "condition": exc.condition,
            "refusals": refusals,
            "paused_seconds": paused_for,
        }
        if paused_for >= ALERT_AFTER_SECONDS and not record["alerted"]:
            record["alerted"] = True
            logs.error("instance paused for long: exports wait; no task fails", **fields, error=exc.detail)
        else:
            logs.warning("instance unavailable: pausing its chain", **fields, seconds=round(pause, 1), error=exc.detail)
        self.state.save_breaker(self.instance, record)
        return pause

    def reset(self) -> None:
        """An export was accepted: the instance is back."""
        record = self.state.breaker(self.instance)
        if record is not None:
            self.state.clear_breaker(self.instance)
            logs.info("instance available again; chain resumed", instance=self.instance, refusals=record["refusals"])


def _parse(text: str) -> pendulum.DateTime:
    parsed = pendulum.parse(text)
    assert isinstance(parsed, pendulum.DateTime)
    return parsed
