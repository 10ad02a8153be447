"""Minimal JSON-over-HTTP calls for health checks and emulator admin endpoints (stdlib only: fast to import)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


class HttpFailure(RuntimeError):
    def __init__(self, method: str, url: str, status: int, body: str) -> None:
        super().__init__(f"{method} {url} -> HTTP {status}: {body[:500]}")
        self.status = status
        self.body = body


def call(method: str, url: str, body: Any = None, *, timeout: float = 5.0) -> tuple[int, Any]:
    """Send a request; return (status, parsed JSON or text). Raises HttpFailure for status >= 400."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        raise HttpFailure(method, url, exc.code, exc.read().decode(errors="replace")) from None
    try:
        return status, json.loads(raw) if raw.strip() else None
    except json.JSONDecodeError:
        return status, raw


def answers(url: str, *, timeout: float = 1.0, expect: str | None = None) -> bool:
    """True when url answers at all (any HTTP status), and, if expect is given, with that body and 200."""
    try:
        status, body = call("GET", url, timeout=timeout)
    except HttpFailure:
        return expect is None
    except (OSError, ValueError):
        return False
    return expect is None or (status == 200 and str(body or "").strip() == expect)
