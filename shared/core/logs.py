"""Structured JSON logs, one object per line, with the `severity` field Cloud Logging reads."""

from __future__ import annotations

import json
import sys
import threading
from datetime import UTC, date, datetime
from typing import Any, Literal, TextIO

_WRITE_LOCK = threading.Lock()
"""One line at a time: requests served on threads of one process log to the same stream."""

Severity = Literal["DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL"]


def _default(value: object) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def log(severity: Severity, message: str, *, stream: TextIO | None = None, **fields: Any) -> None:
    """Write one structured log line. Extra fields become top-level JSON keys (jsonPayload in Cloud Logging);
    `time` (RFC 3339, UTC) is the entry's timestamp for Cloud Logging and the only clock local log files have."""
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    entry = {"severity": severity, "message": message, "time": stamp, **fields}
    line = json.dumps(entry, default=_default, ensure_ascii=False) + "\n"
    out = stream or sys.stdout
    with _WRITE_LOCK:
        out.write(line)
        out.flush()


def info(message: str, **fields: Any) -> None:
    log("INFO", message, **fields)


def warning(message: str, **fields: Any) -> None:
    log("WARNING", message, **fields)


def error(message: str, **fields: Any) -> None:
    log("ERROR", message, **fields)
