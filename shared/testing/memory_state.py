"""An in-memory state store that follows shared.app.ports.StateStore as Firestore does for the pipeline.

Faithful where the chain depends on it: every task transition is conditional on the task's `update_time`
(a version that moves on every write, like Firestore's update time), creates never overwrite, a forced
re-queue happens once per token, watermarks walk with the same rule (core/tasks.walk_watermark) and never move
back, cursors only move forward, and leases follow shared/app/lease.decide_acquire atomically.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

import pendulum

from shared.app.lease import HANDOVER_HOLDER, Fence, Lease, decide_acquire, decide_renew
from shared.core.config import MAX_PACK_WINDOWS
from shared.core.errors import LeaseLost
from shared.core.tasks import (
    FINISHED_STATES,
    IN_FLIGHT_STATES,
    OPEN_STATES,
    CreateResult,
    Task,
    TaskState,
    may_promote,
    next_generation,
    rank_changes,
    walk_watermark,
)
from shared.core.windows import Window, ts_nodash


class InMemoryState:
    """The pipeline's state in dictionaries, safe to share between threads."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._versions = itertools.count(1)
        self.tasks: dict[str, Task] = {}
        self.watermark_values: dict[tuple[str, str], pendulum.DateTime] = {}
        self.watermark_log: list[dict[str, Any]] = []
        self.cursors: dict[str, pendulum.DateTime] = {}
        self.leases: dict[str, Lease] = {}
        self.manifest_docs: dict[str, dict[str, Any]] = {}
        self.breakers: dict[str, dict[str, Any]] = {}
        self.writes = 0

    def _store(self, task: Task) -> Task:
        stored = replace(task, update_time=next(self._versions))
        self.tasks[task.id] = stored
        self.writes += 1
        return replace(stored)

    # ---- tasks: planning and reading ---------------------------------------------------------------

    def create_tasks(self, tasks: Sequence[Task], *, force_token: str | None = None) -> CreateResult:
        """As the Firestore adapter: a create-only write per task (one that exists is left as it is), then a read of
        the tasks that existed only when the request may change them (forced, or a rank above the lowest)."""
        created = forced = existing = reads = changes = 0
        with self._lock:
            for task in tasks:
                current = self.tasks.get(task.id)
                if current is None:
                    self._store(replace(task, force_token=force_token or task.force_token))
                    created += 1
                    continue
                existing += 1
                if not force_token and not may_promote(task):
                    continue
                reads += 1
                if not force_token and current.state == "pending" and task.priority < current.priority:
                    ranks = rank_changes(current, task)
                    self._store(replace(current, priority=ranks["priority"], backfill=ranks["backfill"]))
                    changes += 1
                if force_token and current.force_token != force_token and current.state in FINISHED_STATES:
                    self._store(
                        replace(
                            current,
                            state="pending",
                            generation=next_generation(current),
                            attempts=0,
                            not_before=None,
                            operation=None,
                            uri=None,
                            error=None,
                            finalized=False,
                            force_token=force_token,
                            offload=task.offload,
                            priority=task.priority,
                            backfill=task.backfill,
                        )
                    )
                    forced += 1
                    changes += 1
        writes = len({t.id for t in tasks}) + changes  # one create per document, as one BatchWrite sends it
        return CreateResult(created=created, forced=forced, existing=existing, reads=reads, writes=writes)

    def get_tasks(self, ids: Iterable[str]) -> dict[str, Task]:
        with self._lock:
            return {i: replace(self.tasks[i]) for i in ids if i in self.tasks}

    def get_task(self, tid: str) -> Task | None:
        return self.get_tasks([tid]).get(tid)

    def _select(self, **equals: Any) -> list[Task]:
        with self._lock:
            return [replace(t) for t in self.tasks.values() if all(getattr(t, k) == v for k, v in equals.items())]

    def next_pending(self, instance: str, limit: int = 10) -> list[Task]:
        return sorted(self._select(instance=instance, state="pending"), key=lambda t: t.order_key)[:limit]

    def pending_from(self, instance: str, low: pendulum.DateTime, limit: int = 10) -> list[Task]:
        found = [t for t in self._select(instance=instance, state="pending") if t.low >= low]
        return sorted(found, key=lambda t: (t.low, t.order_key))[:limit]

    def tasks_in_state(self, state: TaskState, *, instance: str | None = None) -> list[Task]:
        return self._select(state=state) if instance is None else self._select(instance=instance, state=state)

    def unfinalized(self, instance: str) -> list[Task]:
        return self._select(instance=instance, state="done", finalized=False)

    def has_open_tasks(self, instance: str) -> bool:
        return any(self._select(instance=instance, state=s) for s in OPEN_STATES)

    def tasks_from(self, low: pendulum.DateTime) -> list[Task]:
        return [t for t in self._select() if t.low >= low]

    def all_tasks(self, *, source: str | None = None) -> list[Task]:
        return self._select() if source is None else self._select(source=source)

    def count_tasks(self, state: TaskState, *, source: str) -> int:
        return len(self._select(source=source, state=state))

    def tasks_to_show(self) -> list[Task]:
        """As Firestore's queries: an in-flight task is found by its claim's `submitted_at` (every claim writes it)."""
        with self._lock:
            return [
                replace(t)
                for t in self.tasks.values()
                if t.error is not None or (t.state in IN_FLIGHT_STATES and t.submitted_at is not None)
            ]

    # ---- tasks: transitions -----------------------------------------------------------------------

    def _transition(self, task: Task, fence: Fence | None, **changes: Any) -> Task | None:
        with self._lock:
            if fence is not None and not fence.admits(self.leases.get(fence.instance)):
                raise LeaseLost(fence.instance, fence.holder)
            current = self.tasks.get(task.id)
            if current is None or current.update_time != task.update_time:
                return None
            return self._store(replace(current, **changes))

    def claim(
        self, task: Task, *, uri: str, generation: int, now: pendulum.DateTime, fence: Fence | None = None
    ) -> Task | None:
        return self._transition(
            task,
            fence,
            state="submitting",
            uri=uri,
            generation=generation,
            attempts=task.attempts + 1,
            operation=None,
            submitted_at=now,
        )

    def claim_pack(
        self,
        tasks: Sequence[Task],
        *,
        uris: Sequence[str],
        generations: Sequence[int],
        pack_uri: str | None,
        now: pendulum.DateTime,
        fence: Fence | None = None,
    ) -> list[Task] | None:
        ids = [t.id for t in tasks]
        with self._lock:  # all or none, as Firestore's commit with one precondition per document
            if not self._all_current(tasks, fence):
                return None
            return [
                self._store(
                    replace(
                        self.tasks[task.id],
                        state="submitting",
                        uri=uri,
                        generation=generation,
                        attempts=task.attempts + 1,
                        operation=None,
                        submitted_at=now,
                        pack_uri=pack_uri,
                        pack_ids=list(ids) if pack_uri else None,
                    )
                )
                for task, uri, generation in zip(tasks, uris, generations, strict=True)
            ]

    def _all_current(self, tasks: Sequence[Task], fence: Fence | None) -> bool:
        """Whether every task is as the caller read it (under the lock); LeaseLost when the fence is stale."""
        if fence is not None and not fence.admits(self.leases.get(fence.instance)):
            raise LeaseLost(fence.instance, fence.holder)
        return all(self.tasks.get(t.id) is not None and self.tasks[t.id].update_time == t.update_time for t in tasks)

    def mark_pack_done(
        self,
        tasks: Sequence[Task],
        facts: Sequence[dict[str, Any]],
        now: pendulum.DateTime,
        *,
        fence: Fence | None = None,
    ) -> list[Task] | None:
        if len(tasks) > MAX_PACK_WINDOWS:  # as the Firestore adapter: one commit
            raise ValueError(f"a pack of {len(tasks)} windows is more than one Firestore commit holds")
        with self._lock:  # all or none, as Firestore's commit with one precondition per document
            if not self._all_current(tasks, fence):
                return None
            return [
                self._store(
                    replace(self.tasks[t.id], state="done", done_at=now, finalized=False, error=None, facts=dict(f))
                )
                for t, f in zip(tasks, facts, strict=True)
            ]

    def mark_running(self, task: Task, operation: str, *, fence: Fence | None = None) -> Task | None:
        return self._transition(task, fence, state="running", operation=operation)

    def mark_done(self, task: Task, now: pendulum.DateTime, *, fence: Fence | None = None) -> Task | None:
        return self._transition(task, fence, state="done", done_at=now, finalized=False, error=None)

    def mark_retry(
        self,
        task: Task,
        *,
        error: dict[str, Any] | None,
        not_before: pendulum.DateTime,
        generation: int,
        refund: bool = False,
        fence: Fence | None = None,
    ) -> Task | None:
        attempts = max(0, task.attempts - 1) if refund else task.attempts
        return self._transition(
            task,
            fence,
            state="pending",
            error=error,
            not_before=not_before,
            generation=generation,
            operation=None,
            attempts=attempts,
        )

    def mark_failed(self, task: Task, error: dict[str, Any], *, fence: Fence | None = None) -> Task | None:
        return self._transition(task, fence, state="failed", error=error)

    def mark_finalized(self, task: Task) -> None:
        with self._lock:
            if task.id in self.tasks:
                self._store(replace(self.tasks[task.id], finalized=True))

    def requeue_failed(self, ids: Iterable[str] | None = None) -> list[str]:
        tasks = self.get_tasks(ids).values() if ids is not None else self.tasks_in_state("failed")
        requeued = []
        for task in tasks:
            if task.state != "failed":
                continue
            changes = {"state": "pending", "attempts": 0, "not_before": None, "generation": next_generation(task)}
            if self._transition(task, None, **changes) is not None:
                requeued.append(task.id)
        return requeued

    # ---- watermarks and cursors -------------------------------------------------------------------

    def init_watermark(self, source: str, table: str, value: pendulum.DateTime) -> bool:
        with self._lock:
            if (source, table) in self.watermark_values:
                return False
            self.watermark_values[(source, table)] = value
            return True

    def get_watermark(self, source: str, table: str) -> pendulum.DateTime | None:
        return self.watermark_values.get((source, table))

    def watermarks(self) -> dict[tuple[str, str], pendulum.DateTime]:
        return dict(self.watermark_values)

    def advance_watermark(
        self, source: str, table: str, now: pendulum.DateTime
    ) -> tuple[pendulum.DateTime, pendulum.DateTime] | None:
        with self._lock:
            start = self.watermark_values.get((source, table))
            if start is None:
                return None

            def read(tid: str) -> tuple[TaskState, pendulum.DateTime] | None:
                task = self.tasks.get(tid)
                return (task.state, task.high) if task is not None else None

            value = walk_watermark(source, table, start, read)
            if value <= start:
                return None
            self.watermark_values[(source, table)] = value
            self.watermark_log.append({"source": source, "table": table, "from": start, "to": value, "at": now})
            return start, value

    def watermark_history(self) -> list[dict[str, Any]]:
        return sorted(self.watermark_log, key=lambda e: (e["source"], e["table"], e["at"], e["to"]))

    def get_cursor(self, source: str) -> pendulum.DateTime | None:
        return self.cursors.get(source)

    def advance_cursor(self, source: str, planned_through: pendulum.DateTime) -> None:
        with self._lock:
            current = self.cursors.get(source)
            if current is None or planned_through > current:
                self.cursors[source] = planned_through

    # ---- leases -----------------------------------------------------------------------------------

    def acquire_lease(self, instance: str, holder: str, ttl: float, now: pendulum.DateTime) -> Lease:
        with self._lock:
            lease = decide_acquire(self.leases.get(instance), holder, ttl, now)
            if lease.acquired:
                self.leases[instance] = replace(lease, acquired=False, previous_holder=None)
            return lease

    def renew_lease(self, instance: str, holder: str, ttl: float, now: pendulum.DateTime) -> bool:
        with self._lock:
            lease = decide_renew(self.leases.get(instance), holder, ttl, now)
            if lease is not None:
                self.leases[instance] = replace(lease, acquired=False)
            return lease is not None

    def release_lease(self, instance: str, holder: str) -> None:
        with self._lock:
            if instance in self.leases and self.leases[instance].holder == holder:
                del self.leases[instance]

    def hand_over_lease(self, instance: str, holder: str, now: pendulum.DateTime) -> None:
        with self._lock:
            current = self.leases.get(instance)
            if current is not None and current.holder == holder:
                self.leases[instance] = replace(current, holder=HANDOVER_HOLDER, expires=now)

    def get_lease(self, instance: str) -> Lease | None:
        return self.leases.get(instance)

    def live_chains(self, now: pendulum.DateTime) -> int:
        with self._lock:
            return sum(1 for lease in self.leases.values() if lease.live(now))

    # ---- instance breakers ---------------------------------------------------------------------------

    def breaker(self, instance: str) -> dict[str, Any] | None:
        return dict(self.breakers[instance]) if instance in self.breakers else None

    def save_breaker(self, instance: str, record: dict[str, Any]) -> None:
        self.breakers[instance] = dict(record)

    def clear_breaker(self, instance: str) -> None:
        self.breakers.pop(instance, None)

    # ---- manifests --------------------------------------------------------------------------------

    def save_manifest(self, source: str, window: Window, manifest: dict[str, Any]) -> None:
        self.manifest_docs[f"{source}.{ts_nodash(window.low)}"] = manifest

    def get_manifest(self, source: str, window: Window) -> dict[str, Any] | None:
        return self.manifest_docs.get(f"{source}.{ts_nodash(window.low)}")

    def manifests(self, source: str | None = None) -> list[dict[str, Any]]:
        return [d for d in self.manifest_docs.values() if source is None or d.get("source") == source]
