"""HTTP front: routes the Admin API paths (v1 and v1beta4) and the `/_emulator/` admin endpoints."""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from local.sqladmin_emulator import api_errors
from local.sqladmin_emulator.api_errors import ApiError
from local.sqladmin_emulator.calls import CallLog
from local.sqladmin_emulator.exporter import Exporter, parse_export_request
from local.sqladmin_emulator.faults import Faults, FaultSettings
from local.sqladmin_emulator.operations import OperationStore
from shared.core.logs import log

# (version prefix)(project)(rest): both API versions share the same resource paths under their prefix.
_REFUSALS = {
    "rate_limited": api_errors.rate_limited,
    "forbidden": api_errors.not_authorized,
    "stopped": api_errors.not_running,
    "maintenance": api_errors.not_ready,
}
_API_PATH = re.compile(r"^/(v1|sql/v1beta4)/projects/([^/]+)/(.*)$")
_EXPORT = re.compile(r"^instances/([^/]+)/export$")
_OPERATION = re.compile(r"^operations/([^/]+)$")
_CANCEL = re.compile(r"^operations/([^/]+)/cancel$")


class EmulatorServer(ThreadingHTTPServer):
    """Holds the emulator's state; one handler thread per connection."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        *,
        pg_conninfo: str,
        storage_endpoint: str,
        faults: FaultSettings,
        user: str = "cloudsql-emulator@localhost",
    ) -> None:
        super().__init__(address, _Handler)
        self.faults = Faults(faults)
        self.store = OperationStore(Exporter(pg_conninfo, storage_endpoint), self.faults, user)
        self.calls = CallLog()
        self._stats_lock = threading.Lock()
        self._stats: Counter[str] = Counter()

    def count(self, key: str) -> None:
        with self._stats_lock:
            self._stats[key] += 1

    def stats(self) -> dict[str, Any]:
        with self._stats_lock:
            answers = dict(self._stats)
        statuses = Counter(op.status for op in self.store.all())
        return {"faults": self.faults.counts(), "answers": answers, "operations": dict(statuses)}


class _Handler(BaseHTTPRequestHandler):
    server: EmulatorServer
    protocol_version = "HTTP/1.1"
    server_version = "sqladmin-emulator"
    # Headers and body go out as separate writes: without this, Nagle's algorithm holds the body until
    # the client's delayed ACK (~40 ms per call on a kept-alive connection polled quickly).
    disable_nagle_algorithm = True

    # --- plumbing ---------------------------------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:
        """Silence http.server's stderr lines; requests are logged as JSON in _dispatch."""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _read_json(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ApiError(400, "parseError", f"Invalid JSON payload received. {exc}") from None

    def _send(self, status: int, doc: Any) -> None:
        body = json.dumps(doc, ensure_ascii=False, indent=1).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        started = time.monotonic()
        self._about: tuple[str, str | None, str | None] = ("other", None, None)  # verb, instance, operation
        try:
            body = self._read_json() if method == "POST" else None
            if url.path.startswith("/_emulator/"):
                status, doc = self._admin(method, url.path[len("/_emulator/") :], body, query)
            else:
                status, doc = self._api(method, url.path, query, body)
        except ApiError as exc:
            status, doc = exc.code, exc.body()
            self.server.count(f"http_{exc.code}_{exc.reason}")
        except Exception as exc:  # keep serving; report like the real service's 500
            log("ERROR", "request crashed", method=method, path=url.path, error=repr(exc))
            status, doc = 500, ApiError(500, "backendError", f"Internal error: {exc!r}").body()
        self._send(status, doc)
        if not url.path.startswith("/_emulator/"):
            self.server.calls.add(self._about[0], status, *self._about[1:])
        if not url.path.startswith("/_emulator/") or method == "POST":
            log(
                "DEBUG" if method == "GET" else "INFO",
                "request",
                method=method,
                path=url.path,
                status=status,
                ms=round((time.monotonic() - started) * 1000, 1),
            )

    # --- the Admin API ----------------------------------------------------------------------------

    def _api(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        match = _API_PATH.match(path)
        if match is None:
            raise api_errors.not_found(path)
        version, project, rest = match.groups()
        self._about = _about(method, rest, query, self.server.store, project)
        settings = self.server.faults.settings
        if settings.request_latency > 0:
            time.sleep(settings.request_latency)
        if self.server.faults.draw_http_error():
            raise api_errors.unavailable()
        export = _EXPORT.match(rest) if method == "POST" else None
        instance = export.group(1) if export else query.get("instance")
        refusal = self.server.faults.refuse(instance, exporting=export is not None)
        if refusal is not None:
            raise _REFUSALS[refusal]()
        base_url = f"http://{self.headers.get('Host', 'localhost')}/{version}/"
        store = self.server.store

        if method == "POST" and (m := _EXPORT.match(rest)):
            context, export = parse_export_request(body)
            op = store.start_export(project, m.group(1), context, export)
            self._about = ("export", m.group(1), op.name)
            return 200, store.render(op, base_url)
        if method == "GET" and (m := _OPERATION.match(rest)):
            return 200, store.render(store.get(project, m.group(1)), base_url)
        if method == "GET" and rest == "operations":
            return 200, self._list(project, query, base_url)
        if method == "POST" and (m := _CANCEL.match(rest)):
            store.cancel(project, m.group(1))
            return 200, {}
        raise api_errors.not_found(path)

    def _list(self, project: str, query: dict[str, str], base_url: str) -> dict[str, Any]:
        ops = self.server.store.list(project, query.get("instance"))
        try:
            offset = int(query.get("pageToken") or 0)
            size = int(query.get("maxResults") or 0) or len(ops) or 1
        except ValueError:
            raise api_errors.invalid("maxResults and pageToken must be integers.") from None
        page = ops[offset : offset + size]
        doc: dict[str, Any] = {
            "kind": "sql#operationsList",
            "items": [self.server.store.render(op, base_url) for op in page],
        }
        if offset + size < len(ops):
            doc["nextPageToken"] = str(offset + size)
        return doc

    # --- admin endpoints --------------------------------------------------------------------------

    def _admin(self, method: str, name: str, body: Any, query: dict[str, str]) -> tuple[int, Any]:
        server = self.server
        if method == "GET" and name == "healthz":
            return 200, {"status": "ok"}
        if name == "faults":
            if method == "POST":
                if not isinstance(body, dict):
                    raise api_errors.invalid("the body must be a JSON object of fault settings.")
                server.faults.update(body)
                log("INFO", "faults updated", faults=server.faults.as_dict())
            return 200, server.faults.as_dict()
        if method == "GET" and name == "operations":
            return 200, {"operations": server.store.summaries()}
        if method == "GET" and name == "stats":
            return 200, server.stats()
        if method == "GET" and name == "calls":
            return 200, {"calls": server.calls.since(float(query.get("since") or 0))}
        if method == "POST" and name == "foreign-operation":
            return 200, self._foreign(body)
        if method == "POST" and name == "reset":
            server.store.reset()
            server.faults.reset()
            server.calls.clear()
            return 200, {"status": "reset", "faults": server.faults.as_dict()}
        raise api_errors.not_found(f"/_emulator/{name}")

    def _foreign(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise api_errors.invalid('the body must be {"project", "instance", "seconds"}.')
        project, instance, seconds = body.get("project"), body.get("instance"), body.get("seconds")
        if not isinstance(project, str) or not project or not isinstance(instance, str) or not instance:
            raise api_errors.invalid("project and instance are required strings.")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            raise api_errors.invalid(f"seconds must be a non-negative number, got {seconds!r}.")
        op = self.server.store.start_foreign(project, instance, float(seconds))
        base_url = f"http://{self.headers.get('Host', 'localhost')}/v1/"
        return self.server.store.render(op, base_url)


def _about(
    method: str, rest: str, query: dict[str, str], store: OperationStore, project: str
) -> tuple[str, str | None, str | None]:
    """What an API call is (verb, instance, operation), for the call log; an export's operation is known once made."""
    if method == "POST" and (m := _EXPORT.match(rest)):
        return "export", m.group(1), None
    for verb, pattern in (("get", _OPERATION if method == "GET" else None), ("cancel", _CANCEL)):
        if pattern is not None and (m := pattern.match(rest)):
            try:
                return verb, store.get(project, m.group(1)).instance, m.group(1)
            except ApiError:
                return verb, None, m.group(1)
    if method == "GET" and rest == "operations":
        return "list", query.get("instance"), None
    return "other", None, None
