"""One worker process serves several requests at once (max_instance_request_concurrency > 1, THREADS): what the
process shares must be built once and be safe to use from several threads; each chain publishes on its shard."""

from __future__ import annotations

import io
import json
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from shared import runtime
from shared.adapters import clients as clients_module
from shared.adapters.clients import Clients
from shared.adapters.pubsub import Bus
from shared.core import logs
from shared.core.config import parse_config
from shared.core.environment import templates_root
from shared.core.errors import ConfigError
from shared.core.sharding import work_shard_topics
from shared.core.templates import TEMPLATES_DIR
from tests.pipeline_support import demo_config, second_source

THREADS = 8


def _at_once(call: Any) -> list[Any]:
    """`call()` from THREADS threads released together."""
    barrier = threading.Barrier(THREADS)

    def run() -> Any:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(lambda _: run(), range(THREADS)))


def test_the_process_objects_are_built_once_by_concurrent_first_requests() -> None:
    """Defect (before): functools.cache let two first requests each load the config and build a set of Google
    clients (it does not lock around the call)."""
    built = []

    def slow_build() -> object:
        built.append(1)
        time.sleep(0.05)
        return object()

    get = runtime.once(slow_build)
    results = _at_once(get)
    assert len(built) == 1 and all(r is results[0] for r in results)


def test_each_google_client_is_built_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Since Python 3.12 (the deployed runtime) cached_property takes no lock: concurrent first requests each built
    a Firestore client. Clients now builds each client under a lock."""
    made = []

    class SlowFirestore:
        def __init__(self, **kwargs: Any) -> None:
            made.append(kwargs)
            time.sleep(0.05)

    monkeypatch.setattr(clients_module.firestore, "Client", SlowFirestore)
    monkeypatch.setattr(clients_module, "StateStore", lambda client, prefix, **_: client)
    clients = Clients(parse_config(demo_config()))
    stores = _at_once(lambda: clients.state)
    assert len(made) == 1 and all(s is stores[0] for s in stores)


class RecordingPublisher:
    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []

    @staticmethod
    def topic_path(project: str, topic: str) -> str:
        return f"projects/{project}/topics/{topic}"

    def publish(self, topic: str, data: bytes) -> Future[str]:
        self.published.append((topic, data))
        done: Future[str] = Future()
        done.set_result(str(len(self.published)))
        return done


def test_each_instance_is_woken_on_its_own_work_topic() -> None:
    doc = second_source(demo_config())
    config = parse_config(doc)
    publisher = RecordingPublisher()
    shards = work_shard_topics(config.work_topic, config.instances())
    bus = Bus(publisher, config.project, config.work_topic, config.ticks_topic, shards)  # type: ignore[arg-type]
    for instance in config.instances():
        bus.publish_work(instance)
    bus.publish_work("cdc-local:not-configured")
    topics = [topic.rsplit("/", 1)[1] for topic, _ in publisher.published]
    assert topics == ["cdc-work-s0", "cdc-work-s1", "cdc-work"]
    assert json.loads(publisher.published[1][1]) == {"instance": "cdc-local:shop-pg-2", "kind": "work"}


def test_log_lines_from_concurrent_requests_never_interleave() -> None:
    class Chunky(io.StringIO):
        """A stream that yields the GIL between every character written, as a slow pipe would."""

        def write(self, text: str) -> int:
            for char in text:
                super().write(char)
                time.sleep(0)
            return len(text)

    out = Chunky()
    _at_once(lambda: [logs.log("INFO", "chain step", stream=out, instance=f"p:i{n}") for n in range(20)])
    lines = out.getvalue().splitlines()
    assert len(lines) == THREADS * 20
    assert all(json.loads(line)["message"] == "chain step" for line in lines)


def test_the_template_root_can_be_served_from_a_copy(tmp_path: Path) -> None:
    assert templates_root({}) == TEMPLATES_DIR
    assert templates_root({"CDC_TEMPLATES_DIR": str(tmp_path)}) == tmp_path
    with pytest.raises(ConfigError) as caught:
        templates_root({"CDC_TEMPLATES_DIR": str(tmp_path / "missing")})
    assert caught.value.path == "CDC_TEMPLATES_DIR" and "is not a folder" in str(caught.value)
