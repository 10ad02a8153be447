"""Cloud SQL Admin API client: submit exports, read and list operations.

Every API error is mapped to a project error through one table (`_classify`), so callers only see
`InstanceBusy`, `TransientApiError` or `ExportRejected`. The client is built from the discovery document
shipped inside google-api-python-client (no network needed to build it); the endpoint is overridable so
the same code talks to the local Admin API emulator.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

import google.auth
import httplib2
from google.auth.credentials import AnonymousCredentials, Credentials
from google_auth_httplib2 import AuthorizedHttp
from googleapiclient import discovery
from googleapiclient.errors import HttpError

from shared.errors import ExportRejected, InstanceBusy, TransientApiError

OperationStatus = Literal["PENDING", "RUNNING", "DONE", "SQL_OPERATION_STATUS_UNSPECIFIED"]

_BUSY_REASON = "operationInProgress"
_TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
_QUICK_RETRY_DELAYS = (0.1, 0.3, 1.0)
_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class Operation:
    """What the pipeline needs from an operation resource."""

    name: str
    status: OperationStatus
    uri: str | None
    error_code: str | None
    error_message: str | None
    insert_time: str | None
    start_time: str | None
    end_time: str | None

    @property
    def done(self) -> bool:
        return self.status == "DONE"

    @property
    def failed(self) -> bool:
        return self.done and self.error_code is not None

    @classmethod
    def unknown(cls, name: str, uri: str | None, status: int, message: str) -> Operation:
        """A stand-in for an operation the API no longer answers for: DONE, with its outcome unknown."""
        return cls(name, "DONE", uri, f"HTTP_{status}", message, None, None, None)

    @classmethod
    def from_resource(cls, resource: dict[str, Any]) -> Operation:
        errors = (resource.get("error") or {}).get("errors") or []
        first = errors[0] if errors else {}
        return cls(
            name=resource["name"],
            status=resource.get("status", "SQL_OPERATION_STATUS_UNSPECIFIED"),
            uri=(resource.get("exportContext") or {}).get("uri"),
            error_code=first.get("code") if errors else None,
            error_message=first.get("message") if errors else None,
            insert_time=resource.get("insertTime"),
            start_time=resource.get("startTime"),
            end_time=resource.get("endTime"),
        )


def _reason(exc: HttpError) -> str:
    details = exc.error_details
    if isinstance(details, list) and details and isinstance(details[0], dict):
        return str(details[0].get("reason", ""))
    try:
        body = json.loads(exc.content.decode("utf-8", "replace"))
        return str(body["error"]["errors"][0]["reason"])
    except (ValueError, KeyError, IndexError, TypeError):
        return ""


def _classify(exc: HttpError) -> Exception:
    """The one table from API errors to project errors."""
    status = exc.status_code
    reason = _reason(exc)
    message = exc.reason or str(exc)
    if status == 409 or (status == 403 and reason == _BUSY_REASON):
        return InstanceBusy(f"instance busy ({status} {reason or 'conflict'}): {message}")
    if status in _TRANSIENT_STATUSES:
        return TransientApiError(status, message)
    return ExportRejected(status, reason, message)


class SqlAdmin:
    """A thin, error-mapping wrapper over `sqladmin` v1 (instances.export, operations.get/list)."""

    def __init__(self, endpoint: str | None = None, credentials: Credentials | None = None) -> None:
        if credentials is None:
            credentials = AnonymousCredentials() if endpoint else google.auth.default()[0]
        options = {"api_endpoint": endpoint} if endpoint else None
        self._credentials = credentials
        self._local = threading.local()
        self._api = discovery.build(
            "sqladmin",
            "v1",
            credentials=credentials,
            client_options=options,
            static_discovery=True,
            cache_discovery=False,
        )

    def _http(self) -> AuthorizedHttp:
        """One HTTP connection per thread: httplib2 is not thread-safe, and one process may run the
        chains of several instances at once."""
        http = getattr(self._local, "http", None)
        if http is None:
            http = self._local.http = AuthorizedHttp(self._credentials, http=httplib2.Http(timeout=_TIMEOUT_SECONDS))
        return http

    def _call(self, request: Any) -> dict[str, Any]:
        """Execute with a few quick retries for transient errors, then map whatever remains."""
        for delay in (*_QUICK_RETRY_DELAYS, None):
            try:
                return request.execute(http=self._http(), num_retries=0)
            except HttpError as exc:
                mapped = _classify(exc)
                if not isinstance(mapped, TransientApiError) or delay is None:
                    raise mapped from exc
            except (TimeoutError, OSError, httplib2.HttpLib2Error) as exc:
                if delay is None:
                    raise TransientApiError(None, f"{type(exc).__name__}: {exc}") from exc
            time.sleep(delay)
        raise AssertionError("unreachable")

    def export(self, project: str, instance: str, body: dict[str, Any]) -> Operation:
        """Submit `instances.export`; returns the new operation (usually PENDING)."""
        request = self._api.instances().export(project=project, instance=instance, body=body)
        return Operation.from_resource(self._call(request))

    def get_operation(self, project: str, name: str) -> Operation:
        return Operation.from_resource(
            self._call(self._api.operations().get(project=project, operation=name))
        )

    def list_operations(self, project: str, instance: str, max_results: int = 100) -> list[Operation]:
        """Recent operations on the instance, newest first."""
        request = self._api.operations().list(project=project, instance=instance, maxResults=max_results)
        return [Operation.from_resource(item) for item in self._call(request).get("items", [])]
