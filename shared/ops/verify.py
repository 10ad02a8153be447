"""`cdc verify`: check a verification request as the planner will, publish it, and report what it found.

Like `cdc backfill`, the request is parsed by the planner's own parser before it is published, so what passes
here is planned. With --wait it follows the verification tasks and then lists the windows it found changed and
re-queued (their re-exports run behind live work, like any re-export).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import pendulum

from shared.app.ports import StateStore
from shared.core.config import Config
from shared.core.messages import Verify, parse_event, verify_message
from shared.core.tasks import verify_task_id
from shared.core.windows import latest_settled_window


@dataclass(frozen=True)
class _LocalEvent:
    data: dict[str, Any]


def default_range(config: Config, source_name: str | None, now: pendulum.DateTime) -> tuple[pendulum.DateTime, ...]:
    """The last day of settled windows of the source (the source is resolved as the planner would)."""
    source = config.source(source_name) if source_name else config.sources[0]
    end = latest_settled_window(source.schedule, now, source.settle).high
    return source.schedule.floor(end.subtract(days=1)), end


def snap(
    config: Config, source_name: str | None, start: pendulum.DateTime, end: pendulum.DateTime, now: pendulum.DateTime
) -> tuple[pendulum.DateTime, pendulum.DateTime]:
    """`--start -6h --end now` means the whole windows in between that are settled: start down to its window's
    low, end down to a boundary and no later than the latest settled window."""
    source = config.source(source_name) if source_name else config.sources[0]
    latest = latest_settled_window(source.schedule, now, source.settle).high
    return source.schedule.floor(start), min(source.schedule.floor(end), latest)


def request_data(
    start: pendulum.DateTime, end: pendulum.DateTime, source: str | None, tables: list[str] | None
) -> bytes:
    return verify_message(start, end, source=source, tables=tables)


def check_verify(config: Config, data: bytes, now: pendulum.DateTime) -> Verify:
    """Parse `data` as the planner would if Pub/Sub published it at `now`; raises MessageError."""
    message = {"data": base64.b64encode(data).decode(), "messageId": "cdc-cli-check", "publishTime": now.isoformat()}
    parsed = parse_event(_LocalEvent({"message": message}), config)
    if not isinstance(parsed, Verify):  # verify_message always encodes kind=verify
        raise TypeError(f"expected a verification, parsed {type(parsed).__name__}")
    return parsed


def task_ids(request: Verify, message_id: str) -> list[str]:
    """The verification tasks the planner creates for the published request (one per table)."""
    return [verify_task_id(request.source, request.start, request.end, t, message_id) for t in request.tables]


def repairs(state: StateStore, config: Config, request: Verify, ids: list[str]) -> list[dict[str, Any]]:
    """The windows these verification tasks found changed (each re-queued as a new generation)."""
    source = config.source(request.source)
    found = []
    for window in source.schedule.windows_between(request.start, request.end):
        record = state.get_manifest(source.name, window) or {}
        for key in ("pending_reason", "replaced_because"):
            reason = record.get(key)
            if reason and reason.get("verification") in ids:
                found.append({**reason, "window_high": window.high.isoformat()})
                break
    return found
