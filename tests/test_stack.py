"""The local stack: lifecycle, prerequisites, and round-trips through its wiring with the real client libraries."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import psycopg
import pytest
from google.api_core import exceptions as gexc
from google.cloud import firestore, pubsub_v1, storage

from local import processes
from local.httpcall import call
from local.ports import PortLayout, port_free
from local.pubsub_wiring import PubSubAdmin, PushSubscription, push_endpoint
from local.stack import (
    DEAD_LETTER_KEEP,
    DEAD_LETTER_TOPIC,
    FUNCTIONS_SOURCE,
    PLANNER_SUBSCRIPTION,
    REPO,
    SERVICES,
    WORKER_SUBSCRIPTION,
    Stack,
)
from tests.conftest import TEST_PORT_BASE

T = TypeVar("T")
# Every stack these tests start sits at an offset from the session's test port base (tests/conftest.py), so
# two suites on one machine with CDC_TEST_PORT_BASE 100 or more apart never collide.
LIFECYCLE_PORT_BASE = TEST_PORT_BASE + 20
REFUSED_PORT_BASE = TEST_PORT_BASE + 40
IDLE_PORT_BASE = TEST_PORT_BASE + 60
ENV_PORT_BASE = TEST_PORT_BASE + 80
FIXTURES = Path(__file__).parent / "fixtures"


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "local.stack", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def _wait_for(predicate: Callable[[], T], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# ----- lifecycle ------------------------------------------------------------------------------------


@pytest.mark.stack
def test_lifecycle_up_status_up_again_down(tmp_path: Path) -> None:
    # pytest's tmp_path is 0700 root: the postgres user cannot traverse it, so this also covers
    # the fallback of the cluster to /tmp.
    state = tmp_path / "state"
    lifecycle = Stack(state, LIFECYCLE_PORT_BASE)
    ports = PortLayout.from_base(LIFECYCLE_PORT_BASE).as_dict()
    assert all(port_free(p) for p in ports.values()), "lifecycle ports busy before the test"
    try:
        info = lifecycle.up()
        assert info.startup_seconds < 10
        expected = {s for s in SERVICES if s not in info.missing}
        assert set(info.started) == expected == set(info.services)
        if FUNCTIONS_SOURCE.is_file():
            assert {"planner", "worker"} <= expected
        assert info.pg_dir.startswith("/tmp/cdc-stack-pg-") and Path(info.pg_dir, "data").is_dir()

        status = lifecycle.status()
        assert all(s["healthy"] for s in status.values()), status
        ours = {pid for rec in info.services.values() for pid in processes.descendants(rec.pid)}
        assert len(ours) >= len(info.services)

        recorded = json.loads((state / "stack.json").read_text())
        assert recorded["ports"] == ports and recorded["env"] == lifecycle.env()
        assert (state / "env").read_text().count("export ") == len(lifecycle.env())
        assert all((state / "logs" / f"{name}.log").is_file() for name in info.services)

        again = lifecycle.up()
        assert {n: r.pid for n, r in again.services.items()} == {n: r.pid for n, r in info.services.items()}
        assert set(again.reused) == expected and again.started == []

        cli_status = _cli("status", "--state-dir", str(state))
        assert cli_status.returncode == 0, cli_status.stdout + cli_status.stderr
        assert cli_status.stdout.count("healthy") >= len(expected)
    finally:
        lifecycle.down()

    assert [pid for pid in ours if processes.alive(pid)] == []
    assert [p for p in ports.values() if not port_free(p)] == []
    assert not Path(info.pg_dir).exists() and not (state / "stack.json").exists()
    assert lifecycle.status() == {}
    assert _cli("status", "--state-dir", str(state)).returncode == 1


def test_status_and_down_without_a_stack(tmp_path: Path) -> None:
    idle = Stack(tmp_path / "none", IDLE_PORT_BASE)
    assert idle.status() == {}
    idle.down()  # nothing recorded: nothing to stop, no error


@pytest.mark.parametrize(
    ("override", "package"),
    [
        ({"CDC_STACK_JAVA": "/nonexistent/java"}, "openjdk-17-jre-headless"),
        ({"PATH": "/nonexistent"}, "openjdk-17-jre-headless"),
        ({"CDC_STACK_FIRESTORE_JAR": "/nonexistent/firestore.jar"}, "google-cloud-cli-firestore-emulator"),
        ({"CDC_STACK_PUBSUB_JAR": "/nonexistent/pubsub-*-all.jar"}, "google-cloud-cli-pubsub-emulator"),
        ({"CDC_STACK_PG_BIN": "/nonexistent/*/bin"}, "postgresql"),
    ],
)
def test_missing_prerequisite_names_the_debian_package(tmp_path: Path, override: dict[str, str], package: str) -> None:
    env = {**os.environ, **override}
    if "PATH" in override:
        env.pop("CDC_STACK_JAVA", None)
    started = time.monotonic()
    result = _cli("up", "--state-dir", str(tmp_path / "state"), "--port-base", str(REFUSED_PORT_BASE), env=env)
    assert result.returncode == 2
    assert f"install the Debian package {package}" in result.stderr, result.stderr
    assert time.monotonic() - started < 5
    assert not (tmp_path / "state" / "stack.json").exists()
    assert all(port_free(p) for p in PortLayout.from_base(REFUSED_PORT_BASE).as_dict().values())


def test_env_command_prints_exports_for_the_client_variables(tmp_path: Path) -> None:
    result = _cli("env", "--state-dir", str(tmp_path), "--port-base", str(ENV_PORT_BASE))
    assert result.returncode == 0
    assert f"export FIRESTORE_EMULATOR_HOST=127.0.0.1:{ENV_PORT_BASE}" in result.stdout
    assert f"export STORAGE_EMULATOR_HOST=http://127.0.0.1:{ENV_PORT_BASE + 2}" in result.stdout
    assert f"export CDC_SQLADMIN_ENDPOINT=http://127.0.0.1:{ENV_PORT_BASE + 4}/" in result.stdout


# ----- wiring ---------------------------------------------------------------------------------------


@pytest.mark.stack
def test_subscriptions_are_wired_like_production(clean_stack: Stack) -> None:
    admin = PubSubAdmin(clean_stack.env()["PUBSUB_EMULATOR_HOST"], clean_stack.project)
    p = clean_stack.project
    for name, topic, port in (
        (PLANNER_SUBSCRIPTION, "cdc-ticks", clean_stack.ports.planner),
        (WORKER_SUBSCRIPTION, "cdc-work", clean_stack.ports.worker),
        # The demo's one Cloud SQL instance has its own work topic (shared/core/sharding.py), as in production.
        ("cdc-work-s0-worker", "cdc-work-s0", clean_stack.ports.worker),
    ):
        sub = admin.get_subscription(name)
        assert sub["topic"] == f"projects/{p}/topics/{topic}"
        assert sub["pushConfig"]["pushEndpoint"] == f"http://127.0.0.1:{port}/projects/{p}/topics/{topic}"
        assert sub["ackDeadlineSeconds"] == 600
        assert sub["retryPolicy"] == {"minimumBackoff": "1s", "maximumBackoff": "10s"}
        assert sub["deadLetterPolicy"] == {
            "deadLetterTopic": f"projects/{p}/topics/{DEAD_LETTER_TOPIC}",
            "maxDeliveryAttempts": 5,
        }
    keep = admin.get_subscription(DEAD_LETTER_KEEP)
    assert keep["topic"] == f"projects/{p}/topics/{DEAD_LETTER_TOPIC}" and "pushEndpoint" not in keep.get(
        "pushConfig", {}
    )
    assert storage.Client(project=p).bucket(clean_stack.bucket).exists()


@pytest.mark.stack
def test_firestore_round_trip_and_reset(clean_stack: Stack) -> None:
    db = firestore.Client(project=clean_stack.project)
    tasks = db.collection("cdc_test_tasks")
    tasks.document("a").set({"instance": "p:i", "state": "pending", "order_key": 2})
    tasks.document("b").set({"instance": "p:i", "state": "done", "order_key": 1})
    assert tasks.document("a").get().to_dict() == {"instance": "p:i", "state": "pending", "order_key": 2}
    pending = [d.id for d in tasks.where(filter=firestore.FieldFilter("state", "==", "pending")).stream()]
    assert pending == ["a"]

    clean_stack.reset()
    assert list(tasks.stream()) == []


@pytest.mark.stack
def test_storage_upload_precondition_refuses_overwrite(clean_stack: Stack) -> None:
    client = storage.Client(project=clean_stack.project)
    blob = client.bucket(clean_stack.bucket).blob("cdc/raw/orders/2026/01/01/orders_20260101T000000.csv")
    blob.upload_from_string(b"1,first\n", if_generation_match=0)
    with pytest.raises(gexc.PreconditionFailed):
        client.bucket(clean_stack.bucket).blob(blob.name).upload_from_string(b"2,second\n", if_generation_match=0)
    assert blob.download_as_bytes() == b"1,first\n"

    clean_stack.reset()
    assert client.bucket(clean_stack.bucket).exists()
    assert list(client.list_blobs(clean_stack.bucket)) == []


@pytest.mark.stack
def test_postgres_create_database_and_dsn(stack: Stack) -> None:
    dsn = stack.create_database("stack_probe")
    assert stack.create_database("stack_probe") == dsn == stack.pg_dsn("stack_probe")
    with psycopg.connect(dsn) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS t (x int)")
        conn.execute("INSERT INTO t VALUES (42)")
        assert conn.execute("SELECT sum(x) FROM t").fetchone()[0] >= 42


# ----- Pub/Sub push into functions-framework ---------------------------------------------------------


@pytest.fixture
def probe(clean_stack: Stack, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The fixture function served by functions-framework behind a push subscription on its own topic,
    with the same policies as the stack's subscriptions (retry, dead-letter topic, 5 attempts)."""
    port = clean_stack.port_base + 10
    out = tmp_path / "received.jsonl"
    out.touch()
    env = {**os.environ, **clean_stack.env(), "PROBE_OUT": str(out)}
    spawned = processes.spawn(
        [sys.executable, "-m", "functions_framework", "--source", str(FIXTURES / "push_probe.py"),
         "--target", "probe", "--signature-type", "cloudevent", "--host", "127.0.0.1", "--port", str(port)],
        log_path=tmp_path / "probe.log", env=env, cwd=REPO,
    )  # fmt: skip
    try:
        _wait_for(lambda: not port_free(port), 30, "the probe function to listen")
        topic = f"probe-{uuid.uuid4().hex[:8]}"
        admin = PubSubAdmin(clean_stack.env()["PUBSUB_EMULATOR_HOST"], clean_stack.project)
        admin.ensure_topic(topic)
        admin.ensure_push_subscription(
            PushSubscription(f"{topic}-push", topic, push_endpoint(port, clean_stack.project, topic), DEAD_LETTER_TOPIC)
        )
        yield topic, out
    finally:
        processes.stop_group(spawned.pgid)


def _received(out: Path, message_id: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    return [r for r in lines if r["id"] == message_id]


@pytest.mark.stack
def test_pubsub_push_reaches_a_functions_framework_cloudevent(clean_stack: Stack, probe: tuple[str, Path]) -> None:
    topic, out = probe
    publisher = pubsub_v1.PublisherClient()
    topic_path = publisher.topic_path(clean_stack.project, topic)
    message_id = publisher.publish(topic_path, b'{"kind":"tick"}', origin="test").result(timeout=10)

    records = _wait_for(lambda: _received(out, message_id), 20, "the push delivery")
    for record in records:
        record.pop("at")
    assert records == [
        {
            "id": message_id,
            "source": f"//pubsub.googleapis.com/projects/{clean_stack.project}/topics/{topic}",
            "type": "google.cloud.pubsub.topic.v1.messagePublished",
            "message_id": message_id,
            "data": '{"kind":"tick"}',
            "attributes": {"origin": "test"},
        }
    ]
    time.sleep(1.5)  # acknowledged by the 2xx: no redelivery
    assert len(_received(out, message_id)) == 1


@pytest.mark.stack
def test_failing_push_is_redelivered_then_dead_lettered(clean_stack: Stack, probe: tuple[str, Path]) -> None:
    topic, out = probe
    publisher = pubsub_v1.PublisherClient()
    message_id = publisher.publish(publisher.topic_path(clean_stack.project, topic), b"boom", fail="1").result(
        timeout=10
    )

    subscriber = pubsub_v1.SubscriberClient()
    keep = subscriber.subscription_path(clean_stack.project, DEAD_LETTER_KEEP)

    def dead_lettered() -> list[pubsub_v1.types.ReceivedMessage]:
        response = subscriber.pull(subscription=keep, max_messages=10, timeout=5)
        if response.received_messages:
            subscriber.acknowledge(subscription=keep, ack_ids=[m.ack_id for m in response.received_messages])
        return list(response.received_messages)

    received = _wait_for(dead_lettered, 60, "the message in the dead-letter subscription")
    assert [m.message.data for m in received] == [b"boom"]
    attributes = dict(received[0].message.attributes)
    assert attributes["fail"] == "1"
    # The emulator, like Pub/Sub, stamps dead-lettered messages with where they came from and how often
    # they were tried. (Locally the push body has no deliveryAttempt, and functions-framework would drop it.)
    assert attributes["CloudPubSubDeadLetterSourceDeliveryCount"] == "5"
    assert attributes["CloudPubSubDeadLetterSourceSubscription"] == f"{topic}-push"
    time.sleep(1.5)  # and nothing is delivered after it was dead-lettered
    attempts = _received(out, message_id)
    assert len(attempts) == 5, attempts  # max_delivery_attempts, each one a separate HTTP 500
    assert {r["data"] for r in attempts} == {"boom"}
    assert all(b["at"] - a["at"] >= 0.9 for a, b in itertools.pairwise(attempts))  # backoff


@pytest.mark.stack
def test_reset_drops_queued_messages(clean_stack: Stack) -> None:
    publisher = pubsub_v1.PublisherClient()
    publisher.publish(publisher.topic_path(clean_stack.project, DEAD_LETTER_TOPIC), b"stale").result(timeout=10)
    clean_stack.reset()
    pull = (
        f"http://{clean_stack.env()['PUBSUB_EMULATOR_HOST']}/v1/projects/{clean_stack.project}"
        f"/subscriptions/{DEAD_LETTER_KEEP}:pull"
    )
    assert call("POST", pull, {"maxMessages": 10, "returnImmediately": True})[1] in (None, {})


@pytest.mark.stack
@pytest.mark.skipif(not FUNCTIONS_SOURCE.is_file(), reason="functions/main.py does not exist yet")
def test_restart_functions_with_extra_env(stack: Stack) -> None:
    before = stack.info().services
    try:
        info = stack.restart_functions(extra_env={"CDC_TEST_MARKER": "42"})
        for name in ("planner", "worker"):
            rec = info.services[name]
            assert rec.pid != before[name].pid
            environ = Path(f"/proc/{rec.pid}/environ").read_bytes().split(b"\0")
            assert b"CDC_TEST_MARKER=42" in environ
        assert all(s["healthy"] for s in stack.status().values())
    finally:
        info = stack.restart_functions()
    assert info.functions_extra_env == {}
