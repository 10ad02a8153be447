"""Every project error, in one tree. Functions map these to ack (permanent) or retry (retryable).

    CdcError
    ├── PermanentError        the input can never succeed: log at ERROR and acknowledge
    │   ├── ConfigError       bad configuration (field path, value, what is allowed)
    │   ├── MessageError      a Pub/Sub message that cannot be processed (reason, message id)
    │   ├── WindowError       bad or out-of-order time bounds
    │   ├── TemplateError     a template that cannot render (template name, reason)
    │   └── ExportRejected    the Admin API refused the request itself (HTTP 400/404)
    └── RetryableError        try again later, with backoff
        ├── InstanceBusy      HTTP 409 (or 403) operationInProgress: another operation runs on the instance
        └── TransientApiError HTTP 429 / 5xx / connection errors

Each message ends with a hint on how to fix or what happens next.
"""

from __future__ import annotations


class CdcError(Exception):
    """Base of every project error."""

    hint: str = ""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.detail = message
        if hint is not None:
            self.hint = hint
        super().__init__(f"{message}. {self.hint}" if self.hint else message)


class PermanentError(CdcError):
    """Retrying cannot help."""


class RetryableError(CdcError):
    """A later attempt may succeed."""


class ConfigError(PermanentError):
    """The configuration is invalid; carries the field path and offending value."""

    def __init__(self, path: str, value: object, problem: str, *, hint: str | None = None) -> None:
        self.path = path
        self.value = value
        self.problem = problem
        super().__init__(f"{path}: {value!r} {problem}", hint=hint)


class MessageError(PermanentError):
    """A message that can never be processed; it is logged and acknowledged."""

    def __init__(self, reason: str, *, message_id: str | None = None, hint: str | None = None) -> None:
        self.reason = reason
        self.message_id = message_id
        super().__init__(reason, hint=hint)


class WindowError(PermanentError):
    """Bounds that are naive, out of order or off the grid, or an interval that cannot be parsed.

    `value` is the offending input and `problem` what is wrong with it (both optional), so callers such as the
    config parser can re-raise the problem under their own field path.
    """

    def __init__(self, message: str, *, value: object = None, problem: str = "", hint: str | None = None) -> None:
        self.value = value
        self.problem = problem or message
        super().__init__(message, hint=hint)


class TemplateError(PermanentError):
    """A template failed to render or rendered something the export cannot run."""

    def __init__(self, template: str, reason: str, *, hint: str | None = None) -> None:
        self.template = template
        self.reason = reason
        super().__init__(f"template {template!r}: {reason}", hint=hint)


class ExportRejected(PermanentError):
    """The Cloud SQL Admin API rejected the request (bad request, unknown instance, no permission)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(f"Cloud SQL Admin API answered {status} {reason}: {message}")


class InstanceBusy(RetryableError):
    """Another operation is running on the instance (HTTP 409 operationInProgress)."""

    hint = "the chain backs off and resumes by itself"


class TransientApiError(RetryableError):
    """A failure that usually clears by itself (429, 5xx, connection reset)."""

    def __init__(self, status: int | None, message: str) -> None:
        self.status = status
        super().__init__(f"transient error {status}: {message}", hint="retried with backoff")
