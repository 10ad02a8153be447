"""Pub/Sub push CloudEvents -> Tick / Backfill / Work, with golden input/output pairs in tests/golden/messages/."""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pendulum
import pytest
from cloudevents.http import CloudEvent

from shared.core.config import Config, parse_config
from shared.core.errors import MessageError
from shared.core.messages import (
    MAX_PAYLOAD_BYTES,
    Backfill,
    Tick,
    Verify,
    Work,
    backfill_message,
    encode,
    parse_event,
    tick_message,
    verify_message,
    work_message,
)
from tests.golden import GOLDEN_DIR, assert_golden

REPO = Path(__file__).resolve().parent.parent
DEMO_DOC = json.loads((REPO / "local" / "demo_config.json").read_text())
CONFIG = parse_config(DEMO_DOC)
CASES = sorted(p.name.removesuffix(".in.json") for p in (GOLDEN_DIR / "messages").glob("*.in.json"))
PUBLISHED = "2026-01-02T00:10:00Z"


def push_event(
    data: bytes | str | None,
    *,
    message_id: str | None = "m-1",
    publish_time: str | None = PUBLISHED,
    spelling: str = "camel",
    delivery_attempt: int | None = None,
    ce_attributes: dict[str, str] | None = None,
) -> CloudEvent:
    """A CloudEvent shaped as functions-framework delivers a Pub/Sub push subscription's request."""
    message: dict[str, Any] = {"attributes": {"origin": "test"}}
    if data is not None:
        message["data"] = base64.b64encode(data).decode() if isinstance(data, bytes) else data
    id_key, time_key = ("messageId", "publishTime") if spelling == "camel" else ("message_id", "publish_time")
    if message_id is not None:
        message[id_key] = message_id
    if publish_time is not None:
        message[time_key] = publish_time
    body: dict[str, Any] = {"message": message, "subscription": "projects/cdc-local/subscriptions/cdc-ticks-planner"}
    if delivery_attempt is not None:
        body["deliveryAttempt"] = delivery_attempt
    attributes = {
        "type": "google.cloud.pubsub.topic.v1.messagePublished",
        "source": "//pubsub.googleapis.com/projects/cdc-local/topics/cdc-ticks",
        **(ce_attributes or {}),
    }
    return CloudEvent(attributes, body)


def as_json(parsed: Tick | Backfill | Work) -> dict[str, Any]:
    fields = {
        key: value.isoformat() if isinstance(value, pendulum.DateTime) else value
        for key, value in dataclasses.asdict(parsed).items()
    }
    return {"type": type(parsed).__name__, **fields}


def run_case(case: dict[str, Any], config: Config = CONFIG) -> dict[str, Any]:
    data = case["payload_text"].encode() if "payload_text" in case else encode(case["payload"])
    event = push_event(
        data,
        message_id=case["messageId"],
        publish_time=case["publishTime"],
        spelling=case.get("spelling", "camel"),
        delivery_attempt=case.get("deliveryAttempt"),
    )
    try:
        return as_json(parse_event(event, config))
    except MessageError as e:
        return {"error": {"reason": e.reason, "message_id": e.message_id, "hint": e.hint}}


@pytest.mark.parametrize("name", CASES)
def test_golden_messages(name: str) -> None:
    case = json.loads((GOLDEN_DIR / "messages" / f"{name}.in.json").read_text())
    result = run_case(case)
    assert ("error" in result) == name.startswith("error_")
    if "error" in result:
        assert result["error"]["message_id"] == case["messageId"]
    assert_golden(f"messages/{name}.out.json", json.dumps(result, indent=2, sort_keys=True) + "\n")


def test_tick_clock_is_publish_time_unless_at() -> None:
    tick = parse_event(push_event(tick_message()), CONFIG)
    assert isinstance(tick, Tick)
    assert tick.clock == tick.published == pendulum.datetime(2026, 1, 2, 0, 10, tz="UTC")
    at = pendulum.datetime(2026, 1, 1, 3, tz="UTC")
    tick = parse_event(push_event(tick_message(at)), CONFIG)
    assert isinstance(tick, Tick) and tick.clock == at and tick.message_id == "m-1"


def test_helpers_round_trip() -> None:
    start, end = pendulum.datetime(2026, 1, 1, tz="UTC"), pendulum.datetime(2026, 1, 1, 2, tz="UTC")
    backfill = parse_event(push_event(backfill_message(start, end, tables=["orders"], force=True)), CONFIG)
    assert backfill == Backfill(
        "m-1", pendulum.datetime(2026, 1, 2, 0, 10, tz="UTC"), start, end, "shop", ("orders",), True, False
    )
    work = parse_event(push_event(work_message("cdc-local:shop-pg"), delivery_attempt=2), CONFIG)
    assert work == Work("m-1", pendulum.datetime(2026, 1, 2, 0, 10, tz="UTC"), "cdc-local:shop-pg")
    assert work_message("cdc-local:shop-pg") == b'{"instance":"cdc-local:shop-pg","kind":"work"}'


def test_helpers_reject_naive() -> None:
    from datetime import datetime

    from shared.core.errors import WindowError

    with pytest.raises(WindowError):
        tick_message(datetime(2026, 1, 1))


def test_falls_back_to_cloud_event_id_and_time() -> None:
    # functions-framework's conversion of a raw push keeps id and time on the CloudEvent itself
    event = push_event(
        tick_message(), message_id=None, publish_time=None, ce_attributes={"id": "ce-9", "time": "2026-01-01T00:00:00Z"}
    )
    tick = parse_event(event, CONFIG)
    assert (tick.message_id, tick.published) == ("ce-9", pendulum.datetime(2026, 1, 1, tz="UTC"))


def error_of(event: object, config: Config = CONFIG) -> MessageError:
    with pytest.raises(MessageError) as e:
        parse_event(event, config)
    return e.value


def test_oversized_payload() -> None:
    padding = "x" * MAX_PAYLOAD_BYTES
    error = error_of(push_event(encode({"kind": "tick", "pad": padding})))
    assert "larger than 65536 bytes" in error.reason and error.message_id == "m-1"
    just_over = encode({"kind": "tick", "at": "x" * (MAX_PAYLOAD_BYTES - 20)})
    assert len(just_over) > MAX_PAYLOAD_BYTES
    assert "65536" in error_of(push_event(just_over)).reason


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (CloudEvent({"type": "t", "source": "s"}, {"nope": 1}), "not a Pub/Sub push envelope"),
        (CloudEvent({"type": "t", "source": "s"}, None), "not a Pub/Sub push envelope"),
        (object(), "not a Pub/Sub push envelope"),
        (push_event(None), "has no data"),
        (push_event("!!!not base64"), "not valid base64"),
        (push_event(b"\xff\xfe"), "not JSON"),
        (push_event(tick_message(), publish_time="yesterday"), "publishTime 'yesterday' is not an RFC 3339"),
        (push_event(tick_message(), delivery_attempt=0), "deliveryAttempt 0"),
    ],
)
def test_malformed_envelopes(event: object, reason: str) -> None:
    assert reason in error_of(event).reason


def test_missing_message_id() -> None:
    event = push_event(tick_message(), message_id=None)  # the CloudEvent's own id stands in
    assert parse_event(event, CONFIG).message_id == event["id"]
    bare = SimpleNamespace(data={"message": {"data": base64.b64encode(tick_message()).decode()}})
    error = error_of(bare)
    assert error.message_id is None and "no messageId" in error.reason


def two_sources() -> Config:
    doc = copy.deepcopy(DEMO_DOC)
    second = copy.deepcopy(doc["sources"][0])
    second.update(name="crm", instance="cdc-local:crm-pg", database="crm", interval="*/15 * * * *")
    second["tables"] = [{"name": "contacts", "template": "orders.sql"}]
    doc["sources"].append(second)
    return parse_config(doc)


def test_backfill_needs_a_source_when_several() -> None:
    config = two_sources()
    start, end = pendulum.datetime(2026, 1, 1, tz="UTC"), pendulum.datetime(2026, 1, 1, 1, tz="UTC")
    error = error_of(push_event(backfill_message(start, end)), config)
    assert "names no source" in error.reason and "shop, crm" in error.reason
    parsed = parse_event(push_event(backfill_message(start, end, source="crm")), config)
    assert isinstance(parsed, Backfill) and parsed.tables == ("contacts",)
    error = error_of(push_event(backfill_message(start, end, source="crm", tables=["orders"])), config)
    assert "'orders' is not a table of source 'crm'" in error.reason
    # bounds are checked on the named source's grid
    off = pendulum.datetime(2026, 1, 1, 0, 10, tz="UTC")
    assert (
        "not on the '*/15 * * * *' grid"
        in error_of(push_event(backfill_message(start, off, source="crm")), config).reason
    )


def test_work_for_the_second_instance() -> None:
    work = parse_event(push_event(work_message("cdc-local:crm-pg")), two_sources())
    assert isinstance(work, Work) and work.instance == "cdc-local:crm-pg"


def test_backfill_limit_comes_from_config() -> None:
    doc = copy.deepcopy(DEMO_DOC)
    doc["backfill"]["max_windows"] = 2
    start, end = pendulum.datetime(2026, 1, 1, tz="UTC"), pendulum.datetime(2026, 1, 1, 3, tz="UTC")
    error = error_of(push_event(backfill_message(start, end)), parse_config(doc))
    assert "more than the limit of 2" in error.reason


# --- exact reasons, boundaries and the verify message -----------------------------------------------------------


def at(hour: int) -> pendulum.DateTime:
    return pendulum.datetime(2026, 1, 1, hour, tz="UTC")


def test_verify_message_round_trip_with_and_without_its_options() -> None:
    parsed = parse_event(push_event(verify_message(at(0), at(3))), CONFIG)
    assert parsed == Verify(
        message_id="m-1",
        published=pendulum.parse(PUBLISHED),
        start=at(0),
        end=at(3),
        source="shop",
        tables=CONFIG.sources[0].table_names,
    )
    narrowed = parse_event(push_event(verify_message(at(0), at(1), source="shop", tables=["payments"])), CONFIG)
    assert isinstance(narrowed, Verify) and (narrowed.source, narrowed.tables) == ("shop", ("payments",))
    assert json.loads(verify_message(at(0), at(1))) == {
        "kind": "verify",
        "start": "2026-01-01T00:00:00+00:00",
        "end": "2026-01-01T01:00:00+00:00",
    }
    assert json.loads(verify_message(at(0), at(1), source="shop", tables=("orders",))) == {
        "kind": "verify",
        "start": "2026-01-01T00:00:00+00:00",
        "end": "2026-01-01T01:00:00+00:00",
        "source": "shop",
        "tables": ["orders"],
    }


def test_backfill_message_carries_exactly_its_options() -> None:
    assert json.loads(backfill_message(at(0), at(1))) == {
        "kind": "backfill",
        "start": "2026-01-01T00:00:00+00:00",
        "end": "2026-01-01T01:00:00+00:00",
        "force": False,
    }
    assert json.loads(backfill_message(at(0), at(1), source="shop", tables=("orders",), force=True, offload=False)) == {
        "kind": "backfill",
        "start": "2026-01-01T00:00:00+00:00",
        "end": "2026-01-01T01:00:00+00:00",
        "force": True,
        "source": "shop",
        "tables": ["orders"],
        "offload": False,
    }


def test_naive_times_in_helpers_name_the_value() -> None:
    from shared.core.errors import WindowError

    with pytest.raises(WindowError) as e:
        verify_message(datetime(2026, 1, 1), at(1))
    assert "timestamp 2026-01-01T00:00:00 has no UTC offset" in str(e.value)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"kind": "verify", "end": "2026-01-01T01:00:00Z"}, "verify has no 'start'"),
        ({"kind": "verify", "start": "2026-01-01T00:00:00Z"}, "verify has no 'end'"),
        ({"kind": "backfill", "start": "2026-01-01T00:00:00Z"}, "backfill has no 'end'"),
        (
            {"kind": "verify", "start": "2026-01-01T00:00:00", "end": "2026-01-01T01:00:00Z"},
            "start '2026-01-01T00:00:00' has no UTC offset (a naive timestamp is ambiguous)",
        ),
        (
            {"kind": "verify", "start": "2026-01-01T00:00:00Z", "end": "soon"},
            "end 'soon' is not an RFC 3339 timestamp with a UTC offset, e.g. 2026-01-01T00:00:00Z",
        ),
        (
            {"kind": "verify", "start": "2026-01-01T01:00:00Z", "end": "2026-01-01T00:00:00Z"},
            "verify end 2026-01-01T00:00:00+00:00 is not after start 2026-01-01T01:00:00+00:00",
        ),
        (
            {"kind": "verify", "start": "2026-01-01T00:00:00Z", "end": "2026-01-01T01:00:00Z", "source": 3},
            "source 3 is not a source name",
        ),
        (
            {"kind": "verify", "start": "2026-01-01T00:00:00Z", "end": "2026-01-01T01:00:00Z", "source": "crm"},
            "source 'crm' is not a configured source",
        ),
        (
            {"kind": "verify", "start": "2026-01-01T00:00:00Z", "end": "2026-01-01T01:00:00Z", "tables": []},
            "tables [] is not a non-empty list of table names",
        ),
        (
            {"kind": "verify", "start": "2026-01-01T00:00:00Z", "end": "2026-01-01T01:00:00Z", "tables": "orders"},
            "tables 'orders' is not a non-empty list of table names",
        ),
        (
            {
                "kind": "verify",
                "start": "2026-01-01T00:00:00Z",
                "end": "2026-01-01T01:00:00Z",
                "tables": ["orders", "orders"],
            },
            "tables ['orders', 'orders'] lists a table twice",
        ),
        (
            {"kind": "verify", "start": "2026-01-01T00:00:00Z", "end": "2026-01-01T01:00:00Z", "zzz": True},
            "verify message key 'zzz' is not known; known keys: kind, start, end, source, tables",
        ),
        ({"kind": "tick", "att": "2026-01-01T00:00:00Z"}, "tick message key 'att' is not known; did you mean 'at'?"),
        (
            {"kind": "work", "instance": "cdc-local:nope"},
            "instance 'cdc-local:nope' is not the instance of any configured source (known: cdc-local:shop-pg)",
        ),
        ({"kind": "work", "instance": "nope"}, "instance 'nope' is not 'project:instance'"),
        ({"kind": "ping"}, "kind 'ping' is not one of tick, backfill, work, verify"),
        (
            {"kind": "backfill", "start": "2026-01-01T00:00:00Z", "end": "2026-01-01T01:00:00Z", "force": "yes"},
            "force 'yes' is not true or false",
        ),
    ],
)
def test_exact_reasons(body: dict[str, Any], reason: str) -> None:
    error = error_of(push_event(encode(body)))
    assert error.reason.startswith(reason), error.reason
    assert error.message_id == "m-1"


def test_the_hint_of_a_request_without_a_source_when_there_are_several() -> None:
    error = error_of(push_event(verify_message(at(0), at(1))), two_sources())
    assert error.reason == "verify names no source and the config has several (shop, crm)"
    assert error.hint == 'add "source"'


def test_envelope_reasons_are_exact() -> None:
    assert error_of(push_event(None)).reason == "the Pub/Sub message has no data (expected base64 JSON)"
    assert error_of(push_event("")).reason == "the Pub/Sub message has no data (expected base64 JSON)"
    assert error_of(push_event(b"[1, 2]")).reason == "the payload is not a JSON object: b'[1, 2]'"
    assert error_of(push_event("YQ")).reason.startswith("the message data is not valid base64")  # no padding
    assert error_of(push_event("YWJj\n")).reason.startswith("the message data is not valid base64")
    bare = SimpleNamespace(data={"message": {"data": base64.b64encode(tick_message()).decode()}})
    assert error_of(bare).reason == "the Pub/Sub message has no messageId"
    weird = CloudEvent({"type": "t", "source": "s"}, {"nope": 1})
    assert (
        error_of(weird).reason == "event data is not a Pub/Sub push envelope with a 'message' object: \"{'nope': 1}\""
    )


@pytest.mark.parametrize("attempt", [1, 7])
def test_a_positive_delivery_attempt_is_accepted(attempt: int) -> None:
    assert isinstance(parse_event(push_event(tick_message(), delivery_attempt=attempt), CONFIG), Tick)


def test_delivery_attempt_must_be_an_integer() -> None:
    error = error_of(push_event(tick_message(), delivery_attempt=True))  # type: ignore[arg-type]
    assert error.reason == "deliveryAttempt True is not a positive integer"


def test_payload_size_limits_are_exact() -> None:
    base = encode({"kind": "tick", "at": ""})
    fits = encode({"kind": "tick", "at": "x" * (MAX_PAYLOAD_BYTES - len(base))})
    assert len(fits) == MAX_PAYLOAD_BYTES
    assert "is not an RFC 3339" in error_of(push_event(fits)).reason  # read, then refused for its content
    over = encode({"kind": "tick", "at": "x" * (MAX_PAYLOAD_BYTES - len(base) + 1)})
    assert error_of(push_event(over)).reason == f"the payload is {MAX_PAYLOAD_BYTES + 1} bytes, more than 65536"
    # base64 longer than any 64 KiB payload's encoding is refused before decoding
    limit = (MAX_PAYLOAD_BYTES * 4) // 3 + 4
    assert error_of(push_event("A" * (limit + 1))).reason == "the payload is larger than 65536 bytes"
    assert "larger than" not in error_of(push_event("A" * limit)).reason


def test_ids_are_the_messages_own() -> None:
    work = parse_event(push_event(work_message("cdc-local:shop-pg"), message_id="w-9"), CONFIG)
    assert work.message_id == "w-9"
    tick = parse_event(push_event(tick_message(at(5)), message_id="t-9"), CONFIG)
    assert (tick.message_id, tick.clock) == ("t-9", at(5))


def test_long_envelopes_and_payloads_are_quoted_to_a_bound() -> None:
    error = error_of(object())
    assert error.message_id is None
    long_data = {"nope": "x" * 200}
    error = error_of(CloudEvent({"type": "t", "source": "s"}, long_data))
    assert error.reason == f"event data is not a Pub/Sub push envelope with a 'message' object: {str(long_data)[:80]!r}"
    raw = json.dumps(list(range(100))).encode()
    assert error_of(push_event(raw)).reason == f"the payload is not a JSON object: {raw[:60]!r}"


def test_an_unknown_instance_lists_every_known_one() -> None:
    error = error_of(push_event(work_message("cdc-local:nope")), two_sources())
    assert error.reason == (
        "instance 'cdc-local:nope' is not the instance of any configured source "
        "(known: cdc-local:shop-pg, cdc-local:crm-pg)"
    )
