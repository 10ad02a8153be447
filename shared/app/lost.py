"""Exports the chain lost sight of: an operation that never finishes (stuck) or whose name stops resolving (vanished).

Neither says anything certain about the object, so both end in a retry on a new generation: the export API never
overwrites, and an operation we gave up on may still write its object late.
- Stuck: not DONE `stuck_limit` after the API accepted it (a multiple of how long the table's previous window's
  export ran, by the operation list's times; at least the configured floor). The chain asks `operations.cancel`
  and keeps polling: the operation ends cancelled (retried, the attempt spent: a query that never ends must
  eventually fail) or, cancelled too late, finished (adopted as it is).
- Vanished: `operations.get` answers 404 and `operations.list` no longer shows the operation. The outcome is
  unknown, not refused, so the retry spends no attempt (before, three vanishings failed the task).
"""

from __future__ import annotations

import pendulum

from shared.app.ports import StateStore
from shared.core.config import WorkerSettings
from shared.core.operations import Operation
from shared.core.tasks import Task, task_id

VANISHED_STATUS = 404
"""operations.get's answer for a name it does not know (operationDoesNotExist)."""
VANISHED_CODE = f"HTTP_{VANISHED_STATUS}"
"""The error code `Operation.unknown` gives an operation that is neither readable nor listed any more."""


def previous_export(state: StateStore, task: Task) -> Task | None:
    """The same table's task for the previous window, if it is done (its export's duration is the yardstick)."""
    if task.purpose != "export":
        return None
    previous = state.get_task(task_id(task.source, task.low - (task.high - task.low), task.table))
    return previous if previous is not None and previous.state == "done" else None


def run_seconds(operation: Operation | None) -> float | None:
    """How long a finished export ran, by the API's own times (start, else insert, to end); None if unknown.
    Not the task's claim-to-done time: that includes waits behind a busy instance and polling."""
    if operation is None or not operation.done or operation.failed:
        return None
    began, ended = _time(operation.start_time or operation.insert_time), _time(operation.end_time)
    return None if began is None or ended is None else max(0.0, (ended - began).total_seconds())


def accepted_at(operation: Operation) -> pendulum.DateTime | None:
    """When the API accepted the export (its `insertTime`); None if absent or unreadable. Measured from here, a
    task that waited behind a busy instance before its export was accepted is not taken for stuck."""
    return _time(operation.insert_time)


def _time(text: str | None) -> pendulum.DateTime | None:
    try:
        parsed = pendulum.parse(text or "")
    except (ValueError, TypeError):
        return None
    return parsed if isinstance(parsed, pendulum.DateTime) else None


def stuck_limit(settings: WorkerSettings, last: float | None) -> float:
    """How old an export may get before it counts as stuck. Without a previous duration to compare with, the
    floor times the factor (a first export of a large table may be slow)."""
    if last is None:
        return settings.stuck_min_seconds * settings.stuck_factor
    return max(settings.stuck_min_seconds, settings.stuck_factor * last)
