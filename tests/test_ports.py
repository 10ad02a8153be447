"""Every implementation of a port offers every method the port names (the real adapters, the in-memory seam and
the benchmark's counting proxy), so a method added to a port cannot be forgotten in one of them."""

from __future__ import annotations

import inspect

import pytest

from bench.costsim import CountingState
from shared.adapters.clients import SystemClock
from shared.adapters.firestore_state import StateStore as FirestoreStateStore
from shared.adapters.pubsub import Bus
from shared.adapters.sqladmin import SqlAdmin
from shared.adapters.storage import ObjectStore as GcsObjectStore
from shared.app import ports
from shared.testing.clock import FakeClock
from shared.testing.fake_sqladmin import FakeAdminApi, InMemoryObjects
from shared.testing.memory_state import InMemoryState
from shared.testing.services import RecordingBus


def members(protocol: type) -> set[str]:
    return {name for name, _ in inspect.getmembers(protocol, inspect.isfunction) if not name.startswith("_")}


@pytest.mark.parametrize(
    ("protocol", "implementation"),
    [
        (ports.StateStore, FirestoreStateStore),
        (ports.StateStore, InMemoryState),
        (ports.StateStore, CountingState),
        (ports.AdminApi, SqlAdmin),
        (ports.AdminApi, FakeAdminApi),
        (ports.ObjectStore, GcsObjectStore),
        (ports.ObjectStore, InMemoryObjects),
        (ports.WorkBus, Bus),
        (ports.WorkBus, RecordingBus),
        (ports.Clock, SystemClock),
        (ports.Clock, FakeClock),
    ],
    ids=lambda value: value.__name__,
)
def test_an_implementation_offers_every_method_of_its_port(protocol: type, implementation: type) -> None:
    missing = sorted(m for m in members(protocol) if not callable(getattr(implementation, m, None)))
    assert not missing, f"{implementation.__name__} lacks {missing} of {protocol.__name__}"
