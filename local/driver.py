"""Drive the pipeline from outside, as Cloud Scheduler and an operator would, and check what landed.

Used by the demo, the end-to-end tests and the benchmarks. Needs the emulator environment variables
(FIRESTORE_EMULATOR_HOST, PUBSUB_EMULATOR_HOST, STORAGE_EMULATOR_HOST) in os.environ.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pendulum
from google.cloud import pubsub_v1

from local.demo_data import source_rows
from shared.adapters.clients import Clients
from shared.core.config import Config, SourceConfig
from shared.core.csvformat import read_rows
from shared.core.messages import encode, tick_message, verify_message
from shared.core.tasks import OPEN_STATES, Task


@dataclass(frozen=True)
class WindowCheck:
    """One (table, window) compared between the bucket and the source."""

    source: str
    table: str
    low: pendulum.DateTime
    high: pendulum.DateTime
    uri: str | None
    bucket_rows: int
    source_rows: int
    equal: bool


class Driver:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.clients = Clients(config)
        self._publisher = pubsub_v1.PublisherClient()

    def tick(self, at: pendulum.DateTime) -> str:
        """What Cloud Scheduler sends, with an explicit clock."""
        return self.clients.bus.publish_ticks(tick_message(at))

    def backfill(self, start: pendulum.DateTime, end: pendulum.DateTime, **options: Any) -> str:
        """A backfill request; `options` go into the message as they are (tests send malformed ones too)."""
        body = {"kind": "backfill", "start": start.isoformat(), "end": end.isoformat(), **options}
        return self.clients.bus.publish_ticks(encode(body))

    def verify(self, start: pendulum.DateTime, end: pendulum.DateTime, **options: Any) -> str:
        """An on-demand verification of [start, end) (what `cdc verify` publishes)."""
        return self.clients.bus.publish_ticks(verify_message(start, end, **options))

    def work(self, instance: str) -> str:
        return self.clients.bus.publish_work(instance)

    def raw(self, topic: str, data: bytes) -> str:
        path = self._publisher.topic_path(self.config.project, topic)
        return self._publisher.publish(path, data).result(timeout=30)

    # ---- waiting ---------------------------------------------------------------------------------

    def open_tasks(self) -> list[Task]:
        state = self.clients.state
        return [t for s in OPEN_STATES for t in state.tasks_in_state(s)]

    def wait_idle(self, timeout: float = 120.0, *, expect_tasks: int = 1, quiet: float = 1.0) -> float:
        """Wait until at least `expect_tasks` tasks exist, none is open and no lease is held for `quiet` s."""
        started = time.monotonic()
        idle_since: float | None = None
        while time.monotonic() - started < timeout:
            state = self.clients.state
            tasks = state.all_tasks()
            busy = (
                len(tasks) < expect_tasks
                or any(t.state in OPEN_STATES or (t.state == "done" and not t.finalized) for t in tasks)
                or any(state.get_lease(i) for i in self.config.instances())
            )
            if busy:
                idle_since = None
            elif idle_since is None:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since >= quiet:
                return time.monotonic() - started
            time.sleep(0.2)
        open_ = [(t.id, t.state) for t in self.open_tasks()][:10]
        raise TimeoutError(f"pipeline not idle after {timeout:.0f}s; open tasks: {open_}")

    # ---- what landed -----------------------------------------------------------------------------

    def read_export(self, source: SourceConfig, uri: str) -> list[tuple[str | None, ...]]:
        objects = self.clients.objects
        return [tuple(r) for r in read_rows(objects.stream(objects.key_of(uri)), source.csv.dialect)]

    def reconcile(self, dsn: str) -> list[WindowCheck]:
        """Every done table task compared row for row with the source's `[low, high)`."""
        checks = []
        for task in sorted(self.clients.state.tasks_in_state("done"), key=lambda t: (t.low, t.table or "")):
            if task.table is None or task.purpose != "export":
                continue
            source = self.config.source(task.source)
            exported = self.read_export(source, task.uri or "")
            expected = source_rows(dsn, task.table, task.low, task.high, database=source.database)
            checks.append(
                WindowCheck(
                    source=task.source,
                    table=task.table,
                    low=task.low,
                    high=task.high,
                    uri=task.uri,
                    bucket_rows=len(exported),
                    source_rows=len(expected),
                    equal=exported == expected,
                )
            )
        return checks
