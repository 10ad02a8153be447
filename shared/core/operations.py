"""A Cloud SQL Admin API operation, as the pipeline reads it (`operations.get` / `operations.list` items).

Confirmed from the API reference: `status` is PENDING, RUNNING or DONE (SQL_OPERATION_STATUS_UNSPECIFIED
otherwise); a failed operation is DONE with `error.errors[{code, message}]`; an export's target is
`exportContext.uri`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

OperationStatus = Literal["PENDING", "RUNNING", "DONE", "SQL_OPERATION_STATUS_UNSPECIFIED"]


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
