"""The one table from Cloud SQL Admin API errors to project errors."""

from __future__ import annotations

import json

import httplib2
import pytest
from googleapiclient.errors import HttpError

from shared.adapters.sqladmin import _classify
from shared.core.errors import ExportRejected, InstanceBusy, InstanceUnavailable, TransientApiError
from shared.core.operations import Operation


def http_error(status: int, reason: str, message: str = "boom") -> HttpError:
    body = {"error": {"code": status, "message": message, "errors": [{"reason": reason, "message": message}]}}
    return HttpError(httplib2.Response({"status": status}), json.dumps(body).encode())


@pytest.mark.parametrize(
    ("status", "reason", "expected"),
    [
        (409, "operationInProgress", InstanceBusy),
        (403, "operationInProgress", InstanceBusy),
        (429, "rateLimitExceeded", InstanceUnavailable),
        (500, "backendError", TransientApiError),
        (503, "backendError", TransientApiError),
        (400, "invalid", ExportRejected),
        (403, "notAuthorized", InstanceUnavailable),
        (404, "instanceDoesNotExist", ExportRejected),
    ],
)
# Defect (fixed): 403 while IAM propagates and 429 quota failed every queued task after one attempt.
def test_errors_map_through_one_table(status: int, reason: str, expected: type) -> None:
    mapped = _classify(http_error(status, reason))
    assert type(mapped) is expected
    if isinstance(mapped, ExportRejected):
        assert (mapped.status, mapped.reason) == (status, reason)


def test_operation_done_with_error() -> None:
    op = Operation.from_resource(
        {
            "name": "op-1",
            "status": "DONE",
            "exportContext": {"uri": "gs://b/k.csv"},
            "error": {"errors": [{"code": "ERROR_RDBMS", "message": "relation does not exist"}]},
        }
    )
    assert (op.done, op.failed, op.uri, op.error_code) == (True, True, "gs://b/k.csv", "ERROR_RDBMS")
    running = Operation.from_resource({"name": "op-2", "status": "RUNNING"})
    assert (running.done, running.failed) == (False, False)


def test_a_stopped_instance_is_instance_level_and_other_400s_are_the_requests_fault() -> None:
    """The real answer for a stopped instance (reported publicly): 400, reason "invalid", the message tells."""
    stopped = _classify(http_error(400, "invalid", "Invalid request: Invalid request since instance is not running."))
    assert isinstance(stopped, InstanceUnavailable) and stopped.condition == "not running" and stopped.status == 400
    assert (
        type(_classify(http_error(400, "invalid", "Invalid request: exportContext.uri is malformed.")))
        is ExportRejected
    )


def test_an_instance_restarting_or_under_maintenance_is_instance_level_not_busy() -> None:
    """The real answer (reported publicly): 409, reason "invalidState". Before: every 409 was "busy", backed off in
    seconds without a breaker, so a maintenance of minutes never showed in `cdc status` nor alerted."""
    message = "The instance or operation is not in an appropriate state to handle the request."
    not_ready = _classify(http_error(409, "invalidState", message))
    assert isinstance(not_ready, InstanceUnavailable) and not_ready.condition == "not ready" and not_ready.status == 409
    busy = "Operation failed because another operation was already in progress."
    assert isinstance(_classify(http_error(409, "operationInProgress", busy)), InstanceBusy)
