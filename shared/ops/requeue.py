"""`cdc retry`: put failed tasks back in the queue and wake their instances' chains."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shared.app.ports import Services
from shared.core.errors import UsageError


@dataclass(frozen=True)
class RetryResult:
    requeued: list[str]
    woken: list[str]


def retry_failed(clients: Services, ids: Sequence[str] | None) -> RetryResult:
    """Re-queue the named failed tasks (all failed tasks when `ids` is None), then publish one work message
    per instance concerned. Naming a task that does not exist or has not failed is an error (nothing is
    re-queued then)."""
    state = clients.state
    if ids is not None:
        found = state.get_tasks(ids)
        missing = [i for i in ids if i not in found]
        if missing:
            raise UsageError(f"no task {', '.join(missing)}", hint="task ids are listed by cdc status and cdc report")
        not_failed = [f"{t.id} is {t.state}" for t in found.values() if t.state != "failed"]
        if not_failed:
            raise UsageError(f"only failed tasks can be retried: {'; '.join(not_failed)}")
    requeued = state.requeue_failed(ids)
    tasks = state.get_tasks(requeued)
    woken = sorted({t.instance for t in tasks.values()})
    for instance in woken:
        clients.bus.publish_work(instance)
    return RetryResult(requeued=sorted(requeued), woken=woken)
