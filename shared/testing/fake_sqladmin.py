"""A fake Cloud SQL Admin API (follows shared.app.ports.AdminApi) on a fake clock, plus the bucket it writes to.

It answers as the real API does (and as local/sqladmin_emulator does over HTTP), in the project's error types
the real adapter maps to:
- one operation per instance: `export` while another operation is not DONE raises InstanceBusy (HTTP 409
  operationInProgress);
- an export to an object that already exists is accepted, and its operation ends DONE with an error
  (ALREADY_EXISTS): the API refuses to overwrite;
- a failed operation is DONE with `error.errors[{code, message}]`; an unknown operation name is HTTP 404
  operationDoesNotExist (ExportRejected);
- operations are listed newest first.
Fault knobs: `fail_next` (optionally leaving the object behind, as an operation that wrote its file and then
failed), `busy_for` (a foreign operation such as a backup), `refuse` (instance stopped, IAM refusing, quota),
`transient` (5xx answers), `forget` (an operation whose name stops resolving), `hang_next` (an export that
never finishes until it is cancelled: `cancel_operation` ends it DONE with OPERATION_CANCELLED, as the emulator
does; cancelling a DONE operation is refused with 400), `jitter` (each export runs `duration` x uniform(1 -/+ j),
as the emulator's duration_jitter), `limit_calls` (more calls than this in any 60 s of the fake clock answer 429
rateLimitExceeded, whatever the method, as the emulator's calls_per_minute and the real per-minute quota do).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import random
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from shared.app.ports import ObjectStat
from shared.core.errors import ExportRejected, InstanceBusy, InstanceUnavailable, TransientApiError
from shared.core.operations import Operation
from shared.testing.clock import FakeClock

_REFUSALS = {
    "not running": (400, "invalid", "Invalid request: Invalid request since instance is not running."),
    "permission": (403, "notAuthorized", "The client is not authorized to make this request."),
    "quota": (429, "rateLimitExceeded", "Quota exceeded for quota metric 'Queries'."),
    "not ready": (
        409,
        "invalidState",
        "The instance or operation is not in an appropriate state to handle the request.",
    ),
}


def _stat_of(data: bytes) -> ObjectStat:
    return ObjectStat(len(data), None, base64.b64encode(hashlib.md5(data).digest()).decode(), None)


class InMemoryObjects:
    """The export bucket as a dict of key -> bytes (follows shared.app.ports.ObjectStore)."""

    def __init__(self, bucket: str) -> None:
        self.bucket_name = bucket
        self.data: dict[str, bytes] = {}
        self.json_writes: list[str] = []

    def exists(self, key: str) -> bool:
        return key in self.data

    def stat(self, key: str) -> ObjectStat | None:
        return _stat_of(self.data[key]) if key in self.data else None

    def stream(self, key: str) -> Iterator[bytes]:
        data = self.data[key]
        yield from (data[i : i + 65536] for i in range(0, len(data), 65536))

    def create_json(self, key: str, document: dict[str, Any]) -> bool:
        if key in self.data:
            return False
        self.data[key] = json.dumps(document, sort_keys=True, default=str).encode()
        self.json_writes.append(key)
        return True

    def create_bytes(self, key: str, data: bytes, content_type: str) -> ObjectStat | None:
        if key in self.data:
            return None
        self.data[key] = bytes(data)
        return _stat_of(self.data[key])  # the upload's answer: the object's metadata, as Cloud Storage's insert gives

    def key_of(self, uri: str) -> str:
        prefix = f"gs://{self.bucket_name}/"
        if not uri.startswith(prefix):
            raise KeyError(f"{uri} is not in bucket {self.bucket_name}")
        return uri[len(prefix) :]


@dataclass
class _FakeOperation:
    name: str
    instance: str
    uri: str | None
    inserted: float
    duration: float
    kind: str = "EXPORT"
    error: tuple[str, str] | None = None
    leave_object: bool = False
    content: bytes = b""
    finished: bool = False
    ended: float | None = None
    forgotten: bool = False
    hung: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Failure:
    code: str
    message: str
    leave_object: bool


class FakeAdminApi:
    """Operations run on the fake clock: PENDING, then RUNNING, then DONE after `duration` seconds."""

    def __init__(
        self,
        clock: FakeClock,
        objects: InMemoryObjects,
        *,
        duration: float = 2.0,
        content: Callable[[dict[str, Any]], bytes] | None = None,
    ) -> None:
        self.clock = clock
        self.objects = objects
        self.duration = duration
        self._content = content or (lambda body: b"1,a\n")
        self._ids = itertools.count(1)
        self._operations: dict[str, _FakeOperation] = {}
        self._failures: list[_Failure] = []
        self._transient = 0
        self._hang_next = 0
        self._refusals: dict[str, tuple[str, float]] = {}
        self._jitter = 0.0
        self._rng = random.Random(0)
        self._per_minute = 0
        self._accepted: deque[float] = deque()
        self.calls: list[str] = []
        self.call_times: list[float] = []
        """The fake clock's monotonic time of every call (answered or refused), in order."""
        self.rate_limited: list[int] = []
        """Which calls (indexes into `calls`) `limit_calls` refused with 429."""
        self.exported: list[str] = []
        """The uri of every export the API accepted, in order."""
        self.overwrite_attempts = 0
        self.cancelled: list[str] = []
        """The name of every operation cancelled, in order."""

    # ---- fault knobs ------------------------------------------------------------------------------

    def fail_next(self, code: str = "INTERNAL_ERROR", message: str = "injected", *, leave_object: bool = False) -> None:
        """The next export's operation ends DONE with this error (after writing its object if `leave_object`)."""
        self._failures.append(_Failure(code, message, leave_object))

    def busy_for(self, instance: str, seconds: float, kind: str = "BACKUP_VOLUME") -> str:
        """A foreign operation that holds the instance ("project:instance") for `seconds`."""
        return self._start(instance.split(":", 1)[1], None, seconds, kind=kind).name

    def refuse(self, instance: str, condition: str, seconds: float) -> None:
        """Exports to the instance ("project:instance") are refused for `seconds`, as the real API refuses them:
        `not running` (400 invalid), `not ready` (409 invalidState: restarting, maintenance), `permission`
        (403 notAuthorized) or `quota` (429 rateLimitExceeded)."""
        self._refusals[instance.split(":", 1)[1]] = (condition, self.clock.monotonic() + seconds)

    def transient(self, answers: int) -> None:
        """The next `answers` calls fail with HTTP 503."""
        self._transient = answers

    def forget(self, name: str) -> None:
        """The operation's name stops resolving (operations.get answers 404)."""
        self._operations[name].forgotten = True

    def jitter(self, fraction: float, *, seed: int = 0) -> None:
        """Each new export runs `duration` x uniform(1 - fraction, 1 + fraction) (seeded, reproducible)."""
        if not 0 <= fraction <= 1:
            raise ValueError(f"jitter is a fraction of the duration in [0, 1], not {fraction}")
        self._jitter, self._rng = fraction, random.Random(seed)

    def limit_calls(self, per_minute: int) -> None:
        """More calls than `per_minute` in any 60 s answer 429 rateLimitExceeded (0: no limit). Refused calls do not
        count towards the limit."""
        self._per_minute, self._accepted = per_minute, deque()

    def hang_next(self, exports: int = 1) -> None:
        """The next `exports` exports stay RUNNING until cancelled (an operation that never finishes)."""
        self._hang_next += exports

    # ---- the API ----------------------------------------------------------------------------------

    def export(self, project: str, instance: str, body: dict[str, Any]) -> Operation:
        self._call("export")
        self._advance()
        refusal = self._refusals.get(instance)
        if refusal is not None and self.clock.monotonic() < refusal[1]:
            raise InstanceUnavailable(refusal[0], *_REFUSALS[refusal[0]])
        if any(op.instance == instance and not op.finished for op in self._operations.values()):
            raise InstanceBusy(
                "instance busy (409 operationInProgress): Operation failed because another operation was already "
                "in progress."
            )
        uri = body["exportContext"]["uri"]
        duration = self.duration
        if self._jitter:
            duration *= self._rng.uniform(1 - self._jitter, 1 + self._jitter)
        op = self._start(instance, uri, duration, content=self._content(body))
        self.exported.append(uri)
        if self._hang_next > 0:
            self._hang_next -= 1
            op.hung = True
        if self._failures:
            failure = self._failures.pop(0)
            op.error, op.leave_object = (failure.code, failure.message), failure.leave_object
        return self._resource(op)

    def get_operation(self, project: str, name: str) -> Operation:
        self._call("get")
        self._advance()
        op = self._operations.get(name)
        if op is None or op.forgotten:
            raise ExportRejected(404, "operationDoesNotExist", f"The Cloud SQL operation {name!r} does not exist.")
        return self._resource(op)

    def list_operations(self, project: str, instance: str, max_results: int = 100) -> list[Operation]:
        self._call("list")
        self._advance()
        ops = [op for op in self._operations.values() if op.instance == instance and not op.forgotten]
        ops.sort(key=lambda op: op.inserted, reverse=True)
        return [self._resource(op) for op in ops[:max_results]]

    def cancel_operation(self, project: str, name: str) -> None:
        self._call("cancel")
        self._advance()
        op = self._operations.get(name)
        if op is None or op.forgotten:
            raise ExportRejected(404, "operationDoesNotExist", f"The Cloud SQL operation {name!r} does not exist.")
        if op.finished:
            raise ExportRejected(400, "invalid", f"Invalid request: operation {name} is already DONE.")
        op.finished, op.ended = True, self.clock.monotonic()
        op.error = ("OPERATION_CANCELLED", "The operation was cancelled by the user.")
        self.cancelled.append(name)

    # ---- inside -----------------------------------------------------------------------------------

    def _call(self, method: str) -> None:
        self.calls.append(method)
        now = self.clock.monotonic()
        self.call_times.append(now)
        if self._per_minute:
            while self._accepted and now - self._accepted[0] >= 60:
                self._accepted.popleft()
            if len(self._accepted) >= self._per_minute:
                self.rate_limited.append(len(self.calls) - 1)
                raise InstanceUnavailable("quota", *_REFUSALS["quota"])
            self._accepted.append(now)
        if self._transient > 0:
            self._transient -= 1
            raise TransientApiError(503, "The service is currently unavailable.")

    def _start(self, instance: str, uri: str | None, duration: float, **fields: Any) -> _FakeOperation:
        name = f"op-{next(self._ids):06d}"
        op = _FakeOperation(name, instance, uri, self.clock.monotonic(), duration, **fields)
        self._operations[name] = op
        return op

    def _advance(self) -> None:
        """Finish every operation whose time has come: write its object, or refuse to overwrite."""
        now = self.clock.monotonic()
        for op in self._operations.values():
            if op.finished or op.hung or now < op.inserted + op.duration:
                continue
            op.finished, op.ended = True, op.inserted + op.duration
            if op.uri is None:
                continue
            key = self.objects.key_of(op.uri)
            if self.objects.exists(key):
                self.overwrite_attempts += 1
                op.error = ("ALREADY_EXISTS", f"The object {op.uri} already exists.")
            elif op.error is None or op.leave_object:
                self.objects.data[key] = op.content

    def _resource(self, op: _FakeOperation) -> Operation:
        elapsed = self.clock.monotonic() - op.inserted
        status = "DONE" if op.finished else ("PENDING" if elapsed < min(0.1, op.duration / 2) else "RUNNING")
        error = op.error if op.finished else None
        # The API's times as the fake clock's wall time: insertTime (also startTime), and endTime once DONE.
        inserted = self._wall(op.inserted)
        ended = self._wall(op.ended) if op.ended is not None else None
        return Operation(
            name=op.name,
            status=status,
            uri=op.uri,
            error_code=error[0] if error else None,
            error_message=error[1] if error else None,
            insert_time=inserted,
            start_time=inserted,
            end_time=ended,
        )

    def _wall(self, monotonic: float) -> str:
        return (
            self.clock.now().subtract(microseconds=round((self.clock.monotonic() - monotonic) * 1_000_000)).isoformat()
        )
