"""Cloud SQL Admin API client: submit exports, read, list and cancel operations.

Every API error is mapped to a project error through one table (`_classify`), so callers only see
`InstanceBusy`, `TransientApiError` or `ExportRejected`. The client is built from the discovery document
shipped inside google-api-python-client (no network needed to build it); the endpoint is overridable so
the same code talks to the local Admin API emulator.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import google.auth
import httplib2
from google.auth.credentials import AnonymousCredentials, Credentials
from google_auth_httplib2 import AuthorizedHttp
from googleapiclient import discovery
from googleapiclient.errors import HttpError

from shared.core.errors import ExportRejected, InstanceBusy, InstanceUnavailable, TransientApiError
from shared.core.operations import Operation

_BUSY_REASON = "operationInProgress"
_INVALID_STATE_REASON = "invalidState"
_TRANSIENT_STATUSES = frozenset({500, 502, 503, 504})
_QUICK_RETRY_DELAYS = (0.1, 0.3, 1.0)
_TIMEOUT_SECONDS = 60


def _reason(exc: HttpError) -> str:
    details = exc.error_details
    if isinstance(details, list) and details and isinstance(details[0], dict):
        return str(details[0].get("reason", ""))
    try:
        body = json.loads(exc.content.decode("utf-8", "replace"))
        return str(body["error"]["errors"][0]["reason"])
    except (ValueError, KeyError, IndexError, TypeError):
        return ""


def _busy(status: int, reason: str, message: str) -> Exception:
    return InstanceBusy(f"instance busy ({status} {reason or 'conflict'}): {message}")


def _transient(status: int, reason: str, message: str) -> Exception:
    return TransientApiError(status, message)


def _unavailable(condition: str) -> Callable[[int, str, str], Exception]:
    return lambda status, reason, message: InstanceUnavailable(condition, status, reason, message)


def _not_running(status: int, reason: str, message: str) -> bool:
    return status == 400 and "not running" in message.lower()


def _invalid_state(status: int, reason: str, message: str) -> bool:
    return status == 409 and reason == _INVALID_STATE_REASON


ERRORS: tuple[tuple[Callable[[int, str, str], bool], Callable[[int, str, str], Exception]], ...] = (
    # Not ready: restarting, under maintenance, being updated (confirmed in public reports of the real answer:
    # 409, reason "invalidState", "The instance or operation is not in an appropriate state to handle the
    # request."; hashicorp/terraform#4557, GoogleCloudPlatform/k8s-config-connector#124). Instance-level, before
    # the busy row: it is not another operation the chain can wait out in seconds.
    (_invalid_state, _unavailable("not ready")),
    # Busy: 409 operationInProgress (confirmed: the API's documented answer); older API versions answered 403
    # with the same reason.
    (lambda status, reason, message: status == 409 or (status == 403 and reason == _BUSY_REASON), _busy),
    # Instance-level, nothing wrong with the task: stopped or restarting (confirmed in public reports of the
    # real answer: 400, reason "invalid", "Invalid request since instance is not running."; the reason is
    # generic, so the message tells), a permission refused (403: IAM still propagating after an apply, or
    # revoked), quota (429 rateLimitExceeded).
    (_not_running, _unavailable("not running")),
    (lambda status, reason, message: status == 403, _unavailable("permission")),
    (lambda status, reason, message: status == 429, _unavailable("quota")),
    # Server errors: transient, retried in place.
    (lambda status, reason, message: status in _TRANSIENT_STATUSES, _transient),
    # Anything else is the request's own fault (400 invalid request, 404 instanceDoesNotExist...).
    (lambda status, reason, message: True, ExportRejected),
)
"""The one table from API errors (HTTP status, error reason) to project errors: the first row that matches."""


def _classify(exc: HttpError) -> Exception:
    status, reason = exc.status_code, _reason(exc)
    message = exc.reason or str(exc)
    return next(make(status, reason, message) for matches, make in ERRORS if matches(status, reason, message))


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
        return Operation.from_resource(self._call(self._api.operations().get(project=project, operation=name)))

    def list_operations(self, project: str, instance: str, max_results: int = 100) -> list[Operation]:
        """Recent operations on the instance, newest first."""
        request = self._api.operations().list(project=project, instance=instance, maxResults=max_results)
        return [Operation.from_resource(item) for item in self._call(request).get("items", [])]

    def cancel_operation(self, project: str, name: str) -> None:
        """Ask the API to stop an operation (`operations.cancel`, confirmed in the v1 reference: POST, empty body,
        empty answer). The operation still has to be polled: it ends DONE, cancelled or (too late) finished."""
        self._call(self._api.operations().cancel(project=project, operation=name))
