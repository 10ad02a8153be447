"""Operations: the resource, the per-instance one-at-a-time slot, and the background runners."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

import psycopg

from local.sqladmin_emulator import api_errors
from local.sqladmin_emulator.exporter import CsvExport, Exporter, OperationFailed
from local.sqladmin_emulator.faults import Faults
from shared.core.logs import log

# How long a new operation stays PENDING before it starts (the real service queues for a moment too).
PENDING_SECONDS = 0.05


def rfc3339(t: datetime | None) -> str | None:
    """`2012-11-15T16:19:00.094Z`: UTC, milliseconds, Z, as the API writes times."""
    if t is None:
        return None
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Operation:
    """One operation and its run state. Mutable fields change only under OperationStore's lock."""

    name: str
    project: str
    instance: str
    operation_type: str
    user: str
    insert_time: datetime
    export_context: dict[str, Any] | None = None
    export: CsvExport | None = None
    status: str = "PENDING"
    start_time: datetime | None = None
    end_time: datetime | None = None
    error: tuple[str, str] | None = None  # (code, message)
    cancelled: threading.Event = field(default_factory=threading.Event)
    committing: bool = False  # the upload started: too late to cancel
    lost: str | None = None  # fault: "hang" (RUNNING until cancelled) or "vanish" (forgotten once DONE)
    connection: psycopg.Connection | None = None

    def resource(self, base_url: str) -> dict[str, Any]:
        """The API representation; `base_url` is e.g. `http://127.0.0.1:P/v1/`."""
        doc: dict[str, Any] = {
            "kind": "sql#operation",
            "targetLink": f"{base_url}projects/{self.project}/instances/{self.instance}",
            "status": self.status,
            "user": self.user,
            "insertTime": rfc3339(self.insert_time),
            "startTime": rfc3339(self.start_time),
            "endTime": rfc3339(self.end_time),
            "operationType": self.operation_type,
            "name": self.name,
            "targetId": self.instance,
            "selfLink": f"{base_url}projects/{self.project}/operations/{self.name}",
            "targetProject": self.project,
        }
        if self.export_context is not None:
            doc["exportContext"] = self.export_context
        if self.error is not None:
            code, message = self.error
            doc["error"] = {
                "kind": "sql#operationErrors",
                "errors": [{"kind": "sql#operationError", "code": code, "message": message}],
            }
        return {k: v for k, v in doc.items() if v is not None}

    def summary(self) -> dict[str, Any]:
        """The admin view (`GET /_emulator/operations`)."""
        return {
            "name": self.name,
            "project": self.project,
            "instance": self.instance,
            "operationType": self.operation_type,
            "uri": self.export.uri if self.export else None,
            "status": self.status,
            "insertTime": rfc3339(self.insert_time),
            "startTime": rfc3339(self.start_time),
            "endTime": rfc3339(self.end_time),
            "error": {"code": self.error[0], "message": self.error[1]} if self.error else None,
        }


class OperationStore:
    """Every operation ever run, and which one holds each instance's slot."""

    def __init__(self, exporter: Exporter, faults: Faults, user: str) -> None:
        self._exporter = exporter
        self._faults = faults
        self._user = user
        self._lock = threading.Lock()
        self._ops: dict[str, Operation] = {}
        self._slots: dict[tuple[str, str], Operation] = {}

    # --- starting ---------------------------------------------------------------------------------

    def _claim(self, project: str, instance: str, operation_type: str, **extra: Any) -> Operation:
        """Create and register an operation if the instance is free, atomically; else 409."""
        op = Operation(
            name=str(uuid.uuid4()),
            project=project,
            instance=instance,
            operation_type=operation_type,
            user=self._user,
            insert_time=_now(),
            **extra,
        )
        with self._lock:
            holder = self._slots.get((project, instance))
            if holder is not None:
                raise api_errors.busy()
            self._slots[(project, instance)] = op
            self._ops[op.name] = op
        return op

    def start_export(self, project: str, instance: str, context: dict[str, Any], export: CsvExport) -> Operation:
        op = self._claim(project, instance, "EXPORT", export_context=context, export=export)
        op.lost = self._faults.draw_lost()  # drawn once accepted: a 409 uses up no fault
        log(
            "INFO", "export accepted", operation=op.name, instance=f"{project}:{instance}", uri=export.uri, lost=op.lost
        )
        threading.Thread(target=self._run_export, args=(op,), name=f"export-{op.name}", daemon=True).start()
        return op

    def start_foreign(self, project: str, instance: str, seconds: float) -> Operation:
        """A non-export operation (as a backup would be) that keeps the instance busy for `seconds`."""
        op = self._claim(project, instance, "BACKUP_VOLUME")
        with self._lock:
            op.status, op.start_time = "RUNNING", op.insert_time
        log(
            "INFO",
            "foreign operation started",
            operation=op.name,
            instance=f"{project}:{instance}",
            seconds=seconds,
        )
        threading.Thread(target=self._run_foreign, args=(op, seconds), name=f"foreign-{op.name}", daemon=True).start()
        return op

    # --- reading ----------------------------------------------------------------------------------

    def get(self, project: str, name: str) -> Operation:
        with self._lock:
            op = self._ops.get(name)
        if op is None or op.project != project:
            raise api_errors.operation_not_found(name)
        return op

    def list(self, project: str, instance: str | None) -> list[Operation]:
        """Newest first, as operations.list answers."""
        with self._lock:
            ops = [
                o for o in self._ops.values() if o.project == project and (instance is None or o.instance == instance)
            ]
        return ops[::-1]

    def all(self) -> list[Operation]:
        with self._lock:
            return list(self._ops.values())

    def render(self, op: Operation, base_url: str) -> dict[str, Any]:
        with self._lock:
            return op.resource(base_url)

    def summaries(self) -> list[dict[str, Any]]:
        with self._lock:
            return [op.summary() for op in self._ops.values()]

    # --- changing ---------------------------------------------------------------------------------

    def cancel(self, project: str, name: str) -> None:
        """Ask a running operation to stop. It ends DONE with OPERATION_CANCELLED, unless its upload
        already started (then it completes normally, as a real late cancel would)."""
        op = self.get(project, name)
        with self._lock:
            if op.status == "DONE":
                raise api_errors.invalid(f"operation {name} is already DONE and cannot be cancelled.")
            if op.committing:
                return
            op.cancelled.set()
            conn = op.connection
        if conn is not None:
            # Interrupts a running COPY. If the COPY already ended and closed the connection, the
            # runner sees the flag instead.
            with contextlib.suppress(psycopg.Error):
                conn.cancel_safe()
        log("INFO", "operation cancel requested", operation=name)

    def reset(self) -> None:
        """Forget every operation and free every slot (runners still going finish into the void)."""
        with self._lock:
            for op in self._ops.values():
                op.cancelled.set()
            self._ops.clear()
            self._slots.clear()

    # --- runners ----------------------------------------------------------------------------------

    def _set(self, op: Operation, **changes: Any) -> None:
        with self._lock:
            for key, value in changes.items():
                setattr(op, key, value)

    def _finish(self, op: Operation, error: tuple[str, str] | None) -> None:
        with self._lock:
            op.status, op.end_time, op.error, op.connection = "DONE", _now(), error, None
            if self._slots.get((op.project, op.instance)) is op:
                del self._slots[(op.project, op.instance)]
            if op.lost == "vanish":  # inferred failure mode: operations.get answers 404, operations.list omits it
                self._ops.pop(op.name, None)
        log(
            "INFO" if error is None else "WARNING",
            "operation done",
            operation=op.name,
            instance=f"{op.project}:{op.instance}",
            operation_type=op.operation_type,
            uri=op.export.uri if op.export else None,
            error=error,
        )

    def _hold(self, op: Operation, started: float, seconds: float) -> bool:
        """Wait until `seconds` have passed since `started`; False when cancelled meanwhile."""
        remaining = seconds - (time.monotonic() - started)
        return not op.cancelled.wait(remaining) if remaining > 0 else not op.cancelled.is_set()

    def _run_foreign(self, op: Operation, seconds: float) -> None:
        started = time.monotonic()
        cancelled = not self._hold(op, started, seconds)
        self._finish(op, _cancelled_error() if cancelled else None)

    def _run_export(self, op: Operation) -> None:
        assert op.export is not None
        if op.cancelled.wait(PENDING_SECONDS):
            self._finish(op, _cancelled_error())
            return
        self._set(op, status="RUNNING", start_time=_now())
        if op.lost == "hang":
            op.cancelled.wait()  # until operations.cancel (or a reset): no timeout, as a hung operation has none
            self._finish(op, _cancelled_error())
            return
        # The fixed cost of an operation (the real API takes tens of seconds for even an empty export: inferred from
        # its operations' start and end times, not documented): RUNNING, holding the instance, before the query.
        if not self._hold(op, time.monotonic(), self._faults.settings.op_overhead_seconds):
            self._finish(op, _cancelled_error())
            return
        started = time.monotonic()
        hold = self._faults.draw_duration()
        spool: IO[bytes] | None = None
        error: tuple[str, str] | None = None
        try:
            # A vanishing export writes its object by definition (hang_exports / vanish_exports): no random failure.
            reason = None if op.lost == "vanish" else self._faults.draw_operation_failure(op.export.uri)
            if reason is not None:
                raise OperationFailed(
                    "INTERNAL_ERROR", f"An internal error occurred during the export (injected: {reason})."
                )
            self._exporter.check_absent(op.export)
            spool = self._exporter.copy(op.export, on_connection=lambda c: self._set(op, connection=c))
            self._set(op, connection=None)
            if not self._hold(op, started, hold):
                raise _Cancelled
            with self._lock:
                if op.cancelled.is_set():
                    raise _Cancelled
                op.committing = True
            self._exporter.upload(op.export, spool)
            if self._faults.draw_failure_after_write(op.export.uri):
                raise OperationFailed(
                    "INTERNAL_ERROR", "An internal error occurred after the export file was written (injected)."
                )
        except _Cancelled:
            pass  # reported below, from the flag
        except OperationFailed as exc:
            error = (exc.code, exc.message)
        except Exception as exc:  # an emulator bug must still end the operation, visibly
            log("ERROR", "export crashed", operation=op.name, error=repr(exc))
            error = ("INTERNAL_ERROR", f"The emulator failed: {exc!r}")
        finally:
            if spool is not None:
                spool.close()
        if op.cancelled.is_set() and not op.committing:
            self._finish(op, _cancelled_error())
            return
        if error is not None and not self._hold(op, started, hold):
            self._finish(op, _cancelled_error())
            return
        self._finish(op, error)


class _Cancelled(Exception):
    """Unwinds an export runner after a cancel request."""


def _cancelled_error() -> tuple[str, str]:
    return ("OPERATION_CANCELLED", "The operation was cancelled by the user.")
