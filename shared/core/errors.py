"""Every project error, in one tree. The runtime maps these to ack (permanent) or retry (retryable); the CLI
maps them to exit codes through `exit_code`.

    CdcError                      exit 2
    ├── PermanentError            the input can never succeed: log at ERROR and acknowledge
    │   ├── ConfigError           bad configuration (field path, value, what is allowed)
    │   ├── MessageError          a Pub/Sub message that cannot be processed (reason, message id)
    │   ├── WindowError           bad or out-of-order time bounds
    │   ├── TemplateError         a template that cannot render (template name, reason)
    │   ├── TaskConfigMissing     a queued task names a source or table the config no longer has (task)
    │   ├── ExportRejected        the Admin API refused the request itself (HTTP 400/403/404)
    │   ├── ManifestError         a window's manifest cannot be written without guessing (source, window)
    │   └── UsageError            an operator command asked for something impossible (no such task...)
    └── RetryableError            try again later, with backoff
        ├── InstanceBusy          HTTP 409 (or 403) operationInProgress: another operation runs on the instance
        ├── TransientApiError     HTTP 5xx / connection errors from the Admin API
        ├── InstanceUnavailable   the instance cannot take exports now (stopped, IAM still propagating, quota)
        ├── LeaseLost             another worker took the instance lease (ours expired): stop, touch nothing
        ├── LeaseSuspect          the lease is held by a worker whose heartbeat is stale
        └── CloudUnavailable      exit 4: Firestore, Cloud Storage or Pub/Sub could not be reached or refused
            ├── StateUnavailable  Firestore
            ├── StorageUnavailable Cloud Storage
            ├── PublishFailed     Pub/Sub
            └── ServiceUnreachable an operator command's quick check found a service down (before any call)

Foreign errors are mapped in one table per service (shared/adapters/*), always `raise ... from exc`.
Context is kept as attributes (task, instance, window...), and each message ends with a hint.
"""

from __future__ import annotations

from typing import Any


class CdcError(Exception):
    """Base of every project error."""

    hint: str = ""
    exit_code: int = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.detail = message
        if hint is not None:
            self.hint = hint
        super().__init__(f"{message}. {self.hint}" if self.hint else message)


class PermanentError(CdcError):
    """Retrying cannot help."""


class RetryableError(CdcError):
    """A later attempt may succeed."""

    exit_code = 4


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

    hint = "fix the template under templates/ (cdc render shows what it renders)"

    def __init__(self, template: str, reason: str, *, hint: str | None = None) -> None:
        self.template = template
        self.reason = reason
        super().__init__(f"template {template!r}: {reason}", hint=hint)


class TaskConfigMissing(PermanentError):
    """A queued task names a source or table the configuration no longer has."""

    hint = "restore it in the config, or leave the task failed"

    def __init__(self, task: str, source: str, table: str | None) -> None:
        self.task = task
        self.source = source
        self.table = table
        super().__init__(f"task {task} names source {source!r} table {table!r}, absent from the config")


class ExportRejected(PermanentError):
    """The Cloud SQL Admin API rejected the request (bad request, unknown instance, no permission)."""

    hint = "the request itself is wrong: check the instance name, the query and the service account's roles"

    def __init__(self, status: int, reason: str, message: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(f"Cloud SQL Admin API answered {status} {reason}: {message}")


class ManifestError(PermanentError):
    """A complete window's manifest cannot be written truthfully (unknown columns, a schema snapshot that does not
    describe a table): the exports stand, the manifest is recorded as failed and the chain goes on."""

    hint = "fix the template or the table (cdc render shows the columns); a forced backfill of the window rewrites it"

    def __init__(self, source: str, window: str, reason: str) -> None:
        self.source = source
        self.window = window
        self.reason = reason
        super().__init__(f"manifest of {source} window {window}: {reason}")


class UsageError(PermanentError):
    """An operator asked for something that cannot be done (a task that does not exist, a bad option)."""


class InstanceBusy(RetryableError):
    """Another operation is running on the instance (HTTP 409 operationInProgress)."""

    hint = "the chain backs off and resumes by itself"


class TransientApiError(RetryableError):
    """A failure that usually clears by itself (429, 5xx, connection reset)."""

    hint = "retried with backoff"

    def __init__(self, status: int | None, message: str) -> None:
        self.status = status
        super().__init__(f"transient error {status}: {message}")


class InstanceUnavailable(RetryableError):
    """Nothing is wrong with the task: the instance cannot take exports now (stopped or restarting: 400 "instance
    is not running"; permission refused while IAM propagates: 403; quota: 429). The chain pauses the instance
    with backoff (its breaker), spends no task attempts, and resumes by itself."""

    hint = "the instance's chain pauses and retries by itself; cdc status shows the pause"

    def __init__(self, condition: str, status: int, reason: str, message: str) -> None:
        self.condition = condition
        self.status = status
        self.reason = reason
        super().__init__(f"instance unavailable ({condition}: {status} {reason}): {message}")


class LeaseLost(RetryableError):
    """Another worker took the instance lease (ours expired): stop at once, touch nothing more."""

    hint = "the new holder carries the chain"

    def __init__(self, instance: str, holder: str) -> None:
        self.instance = instance
        self.holder = holder
        super().__init__(f"lease on {instance} was taken over from {holder}; stopping")


class LeaseSuspect(RetryableError):
    """The lease is held by a worker whose heartbeat is stale: retry once it has expired."""

    hint = "Pub/Sub redelivers this message; the chain resumes when the stale lease expires"

    def __init__(self, instance: str, holder: str, problem: str) -> None:
        self.instance = instance
        self.holder = holder
        super().__init__(f"lease on {instance} held by {holder} {problem}")


class CloudUnavailable(RetryableError):
    """A Google Cloud service could not be reached, timed out, or refused the credentials."""

    service: str = "Google Cloud"
    hint = (
        "check that the service is reachable: locally `make up` and the emulator variables "
        "(python -m local.stack env); on Google Cloud, Application Default Credentials and the project's roles"
    )

    def __init__(self, operation: str, cause: BaseException) -> None:
        self.operation = operation
        self.cause_type = type(cause).__name__
        text = " ".join(str(cause).split())[:300]
        super().__init__(f"{self.service} {operation} failed: {self.cause_type}: {text}")


class StateUnavailable(CloudUnavailable):
    """Firestore could not be reached, or gave up (contention, deadline, permission)."""

    service = "Firestore"


class StorageUnavailable(CloudUnavailable):
    """Cloud Storage could not be reached or refused."""

    service = "Cloud Storage"


class PublishFailed(CloudUnavailable):
    """Pub/Sub did not accept a message in time."""

    service = "Pub/Sub"


class ServiceUnreachable(CloudUnavailable):
    """An operator command's reachability check failed before any real call (a closed port, no credentials).

    `service` names what was checked, `address` where (host:port or the API host), `problem` what went wrong;
    the hint (given by the caller) says what to do: `make up` and the emulator variables, or credentials.
    """

    def __init__(self, service: str, address: str, problem: str, *, hint: str) -> None:
        self.service = service
        self.address = address
        self.problem = problem
        self.operation = "reachability check"
        self.cause_type = "ServiceUnreachable"
        CdcError.__init__(self, f"{service} at {address} {problem}", hint=hint)


def context(exc: BaseException) -> dict[str, Any]:
    """The attributes an error carries, for structured logs (no message text, which is logged apart)."""
    names = ("task", "instance", "template", "path", "reason", "status", "operation", "holder")
    return {name: getattr(exc, name) for name in names if getattr(exc, name, None) is not None}
