"""How long exports recently ran, by the API's own times: what shared/app/polling.py forecasts from.

Nothing is written for it. A chain keeps, for its invocation, the run time (`insertTime` to `endTime`) of every
export it saw end, and once per invocation learns those of the instance's recent exports from one
`operations.list` (the listing shared/app/lost.py already reads; its items carry the export's uri and times).
A table's history is its previous windows' done tasks (one batched read of `TABLE_HISTORY` documents, made while
the export runs) looked up by their objects' uris. Not the tasks' own claim-to-done times: a wait behind a busy
instance, or a retry, inflates those (the same reason lost.py times stuck exports by the listing).
"""

from __future__ import annotations

from collections.abc import Iterable

import pendulum

from shared.app.lost import accepted_at
from shared.app.ports import StateStore
from shared.core.operations import Operation
from shared.core.tasks import Task, task_id

TABLE_HISTORY = 3
"""Previous windows of a table looked up for its forecast."""
CHAIN_HISTORY = 8
"""Recent exports (any table) that stand in for a table with no history of its own."""


def previous_uris(state: StateStore, task: Task) -> list[str]:
    """The objects of the table's exports of its previous `TABLE_HISTORY` windows (done ones), newest first."""
    if task.purpose != "export":
        return []
    span = task.high - task.low
    ids = [task_id(task.source, task.low - span * k, task.table) for k in range(1, TABLE_HISTORY + 1)]
    found = state.get_tasks(ids)
    return [t.uri for tid in ids if (t := found.get(tid)) is not None and t.state == "done" and t.uri]


def run_time(operation: Operation) -> float | None:
    """How long a successful export ran, from the API accepting it to its end; None if unknown (failed, running,
    or its times absent)."""
    if not operation.done or operation.failed:
        return None
    began, ended = accepted_at(operation), _parse(operation.end_time)
    return None if began is None or ended is None else max(0.0, (ended - began).total_seconds())


class ExportTimes:
    """Run times of the instance's recent exports by object uri, and in order (newest first)."""

    def __init__(self) -> None:
        self._by_uri: dict[str, float] = {}
        self._newest: list[str] = []
        self.listed = False
        """Whether the operation list was read (once per invocation, whatever it answered)."""

    def record(self, operation: Operation) -> None:
        """An export the chain saw end."""
        seconds = run_time(operation)
        if operation.uri and seconds is not None:
            self._by_uri[operation.uri] = seconds
            self._newest.insert(0, operation.uri)

    def learn(self, listed: Iterable[Operation]) -> None:
        """The instance's recent operations, newest first, as `operations.list` answers; older than anything the
        chain saw end itself, so they rank after it."""
        self.listed = True
        for operation in listed:
            seconds = run_time(operation)
            if operation.uri and seconds is not None and operation.uri not in self._by_uri:
                self._by_uri[operation.uri] = seconds
                self._newest.append(operation.uri)

    def of(self, uri: str) -> float | None:
        return self._by_uri.get(uri)

    def recent(self, count: int = CHAIN_HISTORY, *, exclude: Iterable[str] = ()) -> list[float]:
        """The run times of the `count` most recent exports, newest first, but those of `exclude`."""
        skip = set(exclude)
        return [self._by_uri[uri] for uri in self._newest if uri not in skip][:count]


def _parse(text: str | None) -> pendulum.DateTime | None:
    try:
        parsed = pendulum.parse(text or "")
    except (ValueError, TypeError):
        return None
    return parsed if isinstance(parsed, pendulum.DateTime) else None
