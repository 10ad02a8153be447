"""The real services one process uses, each client created on first use (never at import)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

import pendulum
from google.cloud import firestore, pubsub_v1, storage

from shared.adapters.firestore_state import StateStore
from shared.adapters.pubsub import Bus
from shared.adapters.sqladmin import SqlAdmin
from shared.adapters.storage import ObjectStore
from shared.core.config import Config
from shared.core.sharding import work_shard_topics


class SystemClock:
    """The wall clock and real sleeping (follows shared.app.ports.Clock)."""

    def now(self) -> pendulum.DateTime:
        return pendulum.now("UTC")

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


T = TypeVar("T")


class _BuiltOnce(Generic[T]):
    """A client built on first use, once per `Clients` even when two requests of one process ask at the same
    moment (cached_property no longer locks since Python 3.12: each would build, and connect, its own)."""

    def __init__(self, build: Callable[[Clients], T]) -> None:
        self._build = build
        self._name = build.__name__
        self.__doc__ = build.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    def __get__(self, obj: Clients | None, owner: type | None = None) -> T:
        if obj is None:
            return self  # type: ignore[return-value]
        value = obj.__dict__.get(self._name)
        if value is None:
            with obj._build_lock:
                value = obj.__dict__.get(self._name)
                if value is None:
                    value = obj.__dict__[self._name] = self._build(obj)
        return value


class Clients:
    """Lazily built Google clients bound to one configuration (follows shared.app.ports.Services). One instance
    serves every request of a process, so several threads share each client once built: Firestore and Pub/Sub run
    on gRPC channels, which are thread-safe; Cloud Storage's client is documented as safe to share across threads
    (it uses requests/urllib3; googleapis/google-cloud-python#5763); httplib2 is not thread-safe, so the Admin API
    client keeps one HTTP connection per thread (shared/adapters/sqladmin.py)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.clock = SystemClock()
        self._build_lock = threading.Lock()

    @_BuiltOnce
    def state(self) -> StateStore:
        client = firestore.Client(project=self.config.project, database=self.config.firestore_database)
        return StateStore(
            client, self.config.firestore_prefix, writes_per_second=self.config.firestore_writes_per_second
        )

    @_BuiltOnce
    def bus(self) -> Bus:
        shards = work_shard_topics(self.config.work_topic, self.config.instances())
        return Bus(
            pubsub_v1.PublisherClient(), self.config.project, self.config.work_topic, self.config.ticks_topic, shards
        )

    @_BuiltOnce
    def objects(self) -> ObjectStore:
        return ObjectStore(storage.Client(project=self.config.project), self.config.bucket)

    @_BuiltOnce
    def sqladmin(self) -> SqlAdmin:
        return SqlAdmin(self.config.sqladmin_endpoint)
