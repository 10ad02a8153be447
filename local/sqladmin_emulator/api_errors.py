"""HTTP errors in the JSON shape Google APIs answer with (what googleapiclient's HttpError parses)."""

from __future__ import annotations

from typing import Any

BUSY_MESSAGE = (
    "Operation failed because another operation was already in progress. "
    "Try your request after the current operation is complete."
)

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    503: "UNAVAILABLE",
}


class ApiError(Exception):
    """An answer other than 2xx, raised anywhere while handling a request."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message

    def body(self) -> dict[str, Any]:
        # No "details" key: googleapiclient would prefer it over "errors" for HttpError.error_details.
        error: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "errors": [{"message": self.message, "domain": "global", "reason": self.reason}],
        }
        if self.code in _STATUS_NAMES:
            error["status"] = _STATUS_NAMES[self.code]
        return {"error": error}


def invalid(problem: str) -> ApiError:
    return ApiError(400, "invalid", f"Invalid request: {problem}")


def busy() -> ApiError:
    return ApiError(409, "operationInProgress", BUSY_MESSAGE)


def operation_not_found(name: str) -> ApiError:
    return ApiError(404, "operationDoesNotExist", f"The Cloud SQL operation {name!r} does not exist.")


def unavailable() -> ApiError:
    return ApiError(503, "backendError", "The service is currently unavailable.")


def not_found(path: str) -> ApiError:
    return ApiError(404, "notFound", f"The requested URL {path} was not found on this server.")


# Production failure modes. Confirmed from public reports of the real API's answers (googleapi "Error 400:
# Invalid request: Invalid request since instance is not running., invalid": cloudquery/cloudquery#6966,
# GoogleCloudPlatform/terraformer#1838, turbot/steampipe-plugin-gcp#243). Inferred (the shape every Google API
# uses for the status; the exact wording is not documented): the 403 notAuthorized and 429 rateLimitExceeded texts.


def not_running() -> ApiError:
    return ApiError(400, "invalid", "Invalid request: Invalid request since instance is not running.")


def not_ready() -> ApiError:
    """Restarting, under maintenance, being updated. Confirmed in public reports of the real answer (googleapi
    "Error 409: The instance or operation is not in an appropriate state to handle the request., invalidState":
    hashicorp/terraform#4557, GoogleCloudPlatform/k8s-config-connector#124, django-cloud-deploy#237)."""
    return ApiError(
        409, "invalidState", "The instance or operation is not in an appropriate state to handle the request."
    )


def not_authorized() -> ApiError:
    return ApiError(403, "notAuthorized", "The client is not authorized to make this request.")


def rate_limited() -> ApiError:
    return ApiError(
        429,
        "rateLimitExceeded",
        "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute per user' of service "
        "'sqladmin.googleapis.com'.",
    )
