"""The Google clients one process uses, each created on first use (never at import)."""

from __future__ import annotations

from functools import cached_property

from google.cloud import firestore, pubsub_v1, storage

from shared.bus import Bus
from shared.config import Config
from shared.objects import ObjectStore
from shared.sqladmin import SqlAdmin
from shared.state import StateStore


class Clients:
    """Lazily built clients bound to one configuration."""

    def __init__(self, config: Config) -> None:
        self.config = config

    @cached_property
    def state(self) -> StateStore:
        client = firestore.Client(project=self.config.project, database=self.config.firestore_database)
        return StateStore(client, self.config.firestore_prefix)

    @cached_property
    def bus(self) -> Bus:
        return Bus(pubsub_v1.PublisherClient(), self.config.project, self.config.work_topic)

    @cached_property
    def objects(self) -> ObjectStore:
        return ObjectStore(storage.Client(project=self.config.project), self.config.bucket)

    @cached_property
    def sqladmin(self) -> SqlAdmin:
        return SqlAdmin(self.config.sqladmin_endpoint)
