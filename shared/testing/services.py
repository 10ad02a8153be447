"""The whole seam in one object: config, in-memory state, fake Admin API and bucket, a recording bus, a fake
clock (follows shared.app.ports.Services). `drain` runs the work messages the chain publishes, as Pub/Sub would."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pendulum

from shared.app.chain import ChainStats
from shared.app.worker import run_work
from shared.core.config import Config
from shared.core.messages import Work
from shared.core.templates import Templates
from shared.testing.clock import FakeClock
from shared.testing.fake_sqladmin import FakeAdminApi, InMemoryObjects
from shared.testing.memory_state import InMemoryState


@dataclass
class RecordingBus:
    """Keeps published work messages instead of sending them (follows shared.app.ports.WorkBus)."""

    published: list[str] = field(default_factory=list)
    _ids: int = 0

    def publish_work(self, instance: str) -> str:
        self._ids += 1
        self.published.append(instance)
        return f"work-{self._ids}"


class FakeServices:
    def __init__(
        self,
        config: Config,
        *,
        start: pendulum.DateTime | None = None,
        duration: float = 2.0,
        content: Callable[[dict[str, Any]], bytes] | None = None,
    ) -> None:
        self.config = config
        self.clock = FakeClock(start)
        self.state = InMemoryState()
        self.objects = InMemoryObjects(config.bucket)
        self.sqladmin = FakeAdminApi(self.clock, self.objects, duration=duration, content=content)
        self.bus = RecordingBus()
        self._messages = 0

    def work(self, instance: str, message_id: str | None = None) -> Work:
        self._messages += 1
        return Work(message_id=message_id or f"m-{self._messages}", published=self.clock.now(), instance=instance)

    def drain(self, instance: str, templates: Templates, *, max_invocations: int = 50) -> list[ChainStats | None]:
        """Deliver a work message for `instance`, then every continuation the chain publishes, until it stops."""
        results = [run_work(self.work(instance), self, templates)]
        while self.bus.published and len(results) < max_invocations:
            results.append(run_work(self.work(self.bus.published.pop(0)), self, templates))
        return results
