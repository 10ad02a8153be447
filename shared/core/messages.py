"""The messages on our topics (tick, backfill, verify, work), parsed from the CloudEvents of Pub/Sub pushes.

    cloud_event.data == {"message": {"data": <base64 JSON>, "messageId" | "message_id": ...,
                                     "publishTime" | "publish_time": <RFC 3339>, "attributes": {...}},
                         "subscription": ..., "deliveryAttempt"?: n}

(functions-framework drops "subscription" and "deliveryAttempt" when it converts a raw push; the message id
and publish time then fall back to the CloudEvent's `id` and `time`.) The JSON payloads:

    {"kind": "tick", "at"?: RFC 3339}                       clock = `at`, else the publish time
    {"kind": "backfill", "start": ..., "end": ..., "source"?: name, "tables"?: [names], "force"?: bool,
     "offload"?: bool}
    {"kind": "work", "instance": "project:instance"}
    {"kind": "verify", "start": ..., "end": ..., "source"?: name, "tables"?: [names]}   (same rules as a backfill)

Backfill (and verify) rules: `source` may be left out only when the config has exactly one source (a backfill is an
operator's deliberate act; with several sources, guessing could export the wrong database). `tables`
defaults to all of the source's tables and may only name configured ones. `start`/`end` must be on the
source's grid, `end` after `start`, at most `backfill.max_windows` windows, and `end` no later than the
latest window due at publish time (later windows belong to the live schedule). `offload` defaults to the
source's setting. Unknown keys are rejected. Anything malformed raises MessageError(reason, message_id):
the functions log it at ERROR and acknowledge it.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pendulum import DateTime

from shared.core.config import INSTANCE_RE, Config, SourceConfig
from shared.core.errors import ConfigError, MessageError, WindowError
from shared.core.windows import backfill_windows, parse_timestamp, require_aware

MAX_PAYLOAD_BYTES = 64 * 1024

_KEYS = {
    "tick": ("kind", "at"),
    "backfill": ("kind", "start", "end", "source", "tables", "force", "offload"),
    "work": ("kind", "instance"),
    "verify": ("kind", "start", "end", "source", "tables"),
}


@dataclass(frozen=True)
class Tick:
    message_id: str
    published: DateTime
    clock: DateTime


@dataclass(frozen=True)
class Backfill:
    """A resolved backfill: `source` and `tables` are always filled in, `offload` is the effective setting."""

    message_id: str
    published: DateTime
    start: DateTime
    end: DateTime
    source: str
    tables: tuple[str, ...]
    force: bool
    offload: bool


@dataclass(frozen=True)
class Work:
    message_id: str
    published: DateTime
    instance: str


@dataclass(frozen=True)
class Verify:
    """An on-demand verification of a range of windows (`cdc verify`): resolved like a backfill."""

    message_id: str
    published: DateTime
    start: DateTime
    end: DateTime
    source: str
    tables: tuple[str, ...]


Message = Tick | Backfill | Work | Verify


def _iso(t: datetime) -> str:
    return require_aware(t, "timestamp").isoformat()


def encode(message: Mapping[str, Any]) -> bytes:
    """The Pub/Sub data of a message dict: compact JSON, keys sorted (stable bytes for the same message)."""
    return json.dumps(message, sort_keys=True, separators=(",", ":")).encode()


def tick_message(at: datetime | None = None) -> bytes:
    return encode({"kind": "tick"} if at is None else {"kind": "tick", "at": _iso(at)})


def work_message(instance: str) -> bytes:
    return encode({"kind": "work", "instance": instance})


def verify_message(
    start: datetime, end: datetime, *, source: str | None = None, tables: Sequence[str] | None = None
) -> bytes:
    message: dict[str, Any] = {"kind": "verify", "start": _iso(start), "end": _iso(end)}
    if source is not None:
        message["source"] = source
    if tables is not None:
        message["tables"] = list(tables)
    return encode(message)


def backfill_message(
    start: datetime,
    end: datetime,
    *,
    source: str | None = None,
    tables: Sequence[str] | None = None,
    force: bool = False,
    offload: bool | None = None,
) -> bytes:
    message: dict[str, Any] = {"kind": "backfill", "start": _iso(start), "end": _iso(end), "force": force}
    if source is not None:
        message["source"] = source
    if tables is not None:
        message["tables"] = list(tables)
    if offload is not None:
        message["offload"] = offload
    return encode(message)


class _Parser:
    """Parses one event; knows the message id so that every error carries it."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.message_id: str | None = None

    def fail(self, reason: str, hint: str | None = None) -> MessageError:
        return MessageError(reason, message_id=self.message_id, hint=hint)

    def timestamp(self, value: object, name: str) -> DateTime:
        try:
            return parse_timestamp(value, name)
        except WindowError as e:
            raise self.fail(f"{name} {value!r} {e.problem}", e.hint or None) from e

    def envelope(self, cloud_event: Any) -> tuple[DateTime, dict[str, Any]]:
        data = getattr(cloud_event, "data", None)
        message = data.get("message") if isinstance(data, Mapping) else None
        if not isinstance(message, Mapping):
            raise self.fail(f"event data is not a Pub/Sub push envelope with a 'message' object: {str(data)[:80]!r}")
        attributes = _event_attributes(cloud_event)
        message_id = message.get("messageId", message.get("message_id", attributes.get("id")))
        self.message_id = str(message_id) if message_id is not None else None
        if self.message_id is None:
            raise self.fail("the Pub/Sub message has no messageId")
        published = self.timestamp(
            message.get("publishTime", message.get("publish_time", attributes.get("time"))), "publishTime"
        )
        delivery_attempt = data.get("deliveryAttempt")
        if delivery_attempt is not None and (type(delivery_attempt) is not int or delivery_attempt < 1):
            raise self.fail(f"deliveryAttempt {delivery_attempt!r} is not a positive integer")
        return published, self.payload(message.get("data"))

    def payload(self, encoded: object) -> dict[str, Any]:
        if not isinstance(encoded, str) or not encoded:
            raise self.fail("the Pub/Sub message has no data (expected base64 JSON)")
        if len(encoded) > (MAX_PAYLOAD_BYTES * 4) // 3 + 4:
            raise self.fail(f"the payload is larger than {MAX_PAYLOAD_BYTES} bytes")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as e:
            raise self.fail(f"the message data is not valid base64: {e}") from e
        if len(raw) > MAX_PAYLOAD_BYTES:
            raise self.fail(f"the payload is {len(raw)} bytes, more than {MAX_PAYLOAD_BYTES}")
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise self.fail(f"the payload is not JSON: {e}") from e
        if not isinstance(body, dict):
            raise self.fail(f"the payload is not a JSON object: {raw[:60]!r}")
        kind = body.get("kind")
        if kind not in _KEYS:
            raise self.fail(f"kind {kind!r} is not one of {', '.join(_KEYS)}")
        for key in body:
            if key not in _KEYS[kind]:
                close = difflib.get_close_matches(key, _KEYS[kind], n=1)
                advice = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(_KEYS[kind])}"
                raise self.fail(f"{kind} message key {key!r} is not known; {advice}")
        return body

    def flag(self, body: Mapping[str, Any], key: str, default: bool) -> bool:
        value = body.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(f"{key} {value!r} is not true or false")
        return value

    def tick(self, published: DateTime, body: Mapping[str, Any]) -> Tick:
        clock = self.timestamp(body["at"], "at") if "at" in body else published
        return Tick(message_id=self.message_id or "", published=published, clock=clock)

    def work(self, published: DateTime, body: Mapping[str, Any]) -> Work:
        instance = body.get("instance")
        if not isinstance(instance, str) or not INSTANCE_RE.fullmatch(instance):
            raise self.fail(f"instance {instance!r} is not 'project:instance'")
        if instance not in self.config.instances():
            known = ", ".join(self.config.instances())
            raise self.fail(f"instance {instance!r} is not the instance of any configured source (known: {known})")
        return Work(message_id=self.message_id or "", published=published, instance=instance)

    def request_source(self, kind: str, body: Mapping[str, Any]) -> SourceConfig:
        name = body.get("source")
        if name is None:
            if len(self.config.sources) > 1:
                names = ", ".join(s.name for s in self.config.sources)
                raise self.fail(f"{kind} names no source and the config has several ({names})", 'add "source"')
            return self.config.sources[0]
        if not isinstance(name, str):
            raise self.fail(f"source {name!r} is not a source name")
        try:
            return self.config.source(name)
        except ConfigError as e:
            raise self.fail(f"source {name!r} {e.problem}") from e

    def request_tables(self, source: SourceConfig, body: Mapping[str, Any]) -> tuple[str, ...]:
        tables = body.get("tables")
        if tables is None:
            return source.table_names
        if not isinstance(tables, list) or not tables:
            raise self.fail(f"tables {tables!r} is not a non-empty list of table names")
        for name in tables:
            if not isinstance(name, str) or name not in source.table_names:
                known = ", ".join(source.table_names)
                raise self.fail(f"table {name!r} is not a table of source {source.name!r} (known: {known})")
        if len(set(tables)) != len(tables):
            raise self.fail(f"tables {tables!r} lists a table twice")
        return tuple(tables)

    def settled_range(
        self, kind: str, published: DateTime, body: Mapping[str, Any]
    ) -> tuple[SourceConfig, DateTime, DateTime]:
        """The source and [start, end) of a backfill or verify request: on the grid, within the window cap,
        settled at publish time."""
        for key in ("start", "end"):
            if key not in body:
                raise self.fail(f"{kind} has no {key!r}")
        start = self.timestamp(body["start"], "start")
        end = self.timestamp(body["end"], "end")
        source = self.request_source(kind, body)
        try:
            backfill_windows(
                source.schedule,
                start,
                end,
                clock=published,
                settle=source.settle,
                limit=self.config.backfill_max_windows,
                clock_name="publish time",
            )
        except WindowError as e:
            raise self.fail(f"{kind} {e.detail}", e.hint or None) from e
        return source, start, end

    def verify(self, published: DateTime, body: Mapping[str, Any]) -> Verify:
        source, start, end = self.settled_range("verify", published, body)
        return Verify(
            message_id=self.message_id or "",
            published=published,
            start=start,
            end=end,
            source=source.name,
            tables=self.request_tables(source, body),
        )

    def backfill(self, published: DateTime, body: Mapping[str, Any]) -> Backfill:
        source, start, end = self.settled_range("backfill", published, body)
        return Backfill(
            message_id=self.message_id or "",
            published=published,
            start=start,
            end=end,
            source=source.name,
            tables=self.request_tables(source, body),
            force=self.flag(body, "force", False),
            offload=self.flag(body, "offload", source.offload),
        )


def _event_attributes(cloud_event: Any) -> Mapping[str, Any]:
    """CloudEvent context attributes (id, time, ...) when the object exposes them, else nothing."""
    get_attributes = getattr(cloud_event, "get_attributes", None)
    return get_attributes() if callable(get_attributes) else {}


def parse_event(cloud_event: Any, config: Config) -> Message:
    """Parse a functions-framework CloudEvent carrying a Pub/Sub push into a Tick, Backfill or Work."""
    parser = _Parser(config)
    published, body = parser.envelope(cloud_event)
    if body["kind"] == "tick":
        return parser.tick(published, body)
    if body["kind"] == "work":
        return parser.work(published, body)
    if body["kind"] == "verify":
        return parser.verify(published, body)
    return parser.backfill(published, body)
