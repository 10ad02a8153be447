"""The real services one process uses, each client created on first use (never at import)."""

from __future__ import annotations

import time
from functools import cached_property

import pendulum
from google.cloud import firestore, pubsub_v1, storage

from shared.adapters.firestore_state import StateStore
from shared.adapters.pubsub import Bus
from shared.adapters.sqladmin import SqlAdmin
from shared.adapters.storage import ObjectStore
from shared.core.config import Config


class SystemClock:
    """The wall clock and real sleeping (follows shared.app.ports.Clock)."""

    def now(self) -> pendulum.DateTime:
        return pendulum.now("UTC")

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class Clients:
    """Lazily built Google clients bound to one configuration (follows shared.app.ports.Services)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.clock = SystemClock()

    @cached_property
    def state(self) -> StateStore:
        client = firestore.Client(project=self.config.project, database=self.config.firestore_database)
        return StateStore(
            client, self.config.firestore_prefix, writes_per_second=self.config.firestore_writes_per_second
        )

    @cached_property
    def bus(self) -> Bus:
        return Bus(pubsub_v1.PublisherClient(), self.config.project, self.config.work_topic, self.config.ticks_topic)

    @cached_property
    def objects(self) -> ObjectStore:
        return ObjectStore(storage.Client(project=self.config.project), self.config.bucket)

    @cached_property
    def sqladmin(self) -> SqlAdmin:
        return SqlAdmin(self.config.sqladmin_endpoint)
