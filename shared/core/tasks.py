"""Tasks: one export of one table (or the schema) for one window, their states, ids, order and generations.

States and the moves between them (the state store applies them; only the chain and requeue ask for them):

    pending --claim--> submitting --export answered--> running --DONE--> done
       ^                   |                              |
       +---- retry --------+------------------------------+  (attempts left; a new generation if an object
       |                                                      was left behind)
       +---- requeue / force ---- failed | done               (operators; always a new generation)

A task is `finalized` once its watermark and manifest bookkeeping ran after it became done. Consecutive catch-up or
backfill windows of one table may be claimed together and exported by one operation (a pack, shared/app/packs.py):
each still takes these states; its first window carries the operation, the others stay `submitting` until done.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import pendulum

from shared.core.config import SourceConfig
from shared.core.windows import Window, ts_nodash

TaskState = Literal["pending", "submitting", "running", "done", "failed"]
TaskKind = Literal["schema", "table", "verify"]
TaskPurpose = Literal["export", "verify"]
"""`export`: one window of a table (or its schema); `verify`: counts and checksums of a table over a range of
windows (shared/core/verification.py)."""

OPEN_STATES: tuple[TaskState, ...] = ("pending", "submitting", "running")
"""Not finished: the chain still owes work on these."""
IN_FLIGHT_STATES: tuple[TaskState, ...] = ("submitting", "running")
"""An export was (or is being) submitted for these."""
FINISHED_STATES: tuple[TaskState, ...] = ("done", "failed")
"""Nothing more happens to these unless an operator re-queues or forces them."""
UNFINISHED_OR_FAILED: tuple[TaskState, ...] = (*OPEN_STATES, "failed")
"""What `cdc status` counts: everything that is not done."""

LIVE_PRIORITY = 0
BACKFILL_PRIORITY = 1


def task_id(source: str, window_low: pendulum.DateTime, table: str | None) -> str:
    """Deterministic task id; `table` None is the window's schema task."""
    ts = ts_nodash(window_low)
    return f"{source}.{ts}.schema" if table is None else f"{source}.{ts}.table.{table}"


def verify_task_id(
    source: str, low: pendulum.DateTime, high: pendulum.DateTime, table: str, run: str | None = None
) -> str:
    """Deterministic id of a verification of `table` over [low, high): one per schedule period, or one per
    on-demand request (`run`, its message id), so a redelivery plans nothing new and a new request runs again."""
    base = f"{source}.{ts_nodash(low)}.verify.{table}.{ts_nodash(high)}"
    return f"{base}.{run}" if run else base


def window_task_ids(source: str, window_low: pendulum.DateTime, tables: Iterable[str]) -> list[str]:
    """The ids of one window's tasks: the schema task first, then one per table."""
    return [task_id(source, window_low, None), *(task_id(source, window_low, t) for t in tables)]


@dataclass
class Task:
    """One export of one table (or the schema) for one window of one source.

    `update_time` is the state store's version of the document (Firestore's update time): every transition
    is conditional on it, so a concurrent change makes the transition fail instead of being lost.
    """

    source: str
    instance: str
    database: str
    table: str | None
    low: pendulum.DateTime
    high: pendulum.DateTime
    priority: int = LIVE_PRIORITY
    state: TaskState = "pending"
    backfill: bool = False
    offload: bool = False
    attempts: int = 0
    generation: int = 1
    not_before: pendulum.DateTime | None = None
    operation: str | None = None
    uri: str | None = None
    error: dict[str, Any] | None = None
    force_token: str | None = None
    finalized: bool = False
    created_at: pendulum.DateTime | None = None
    submitted_at: pendulum.DateTime | None = None
    done_at: pendulum.DateTime | None = None
    purpose: TaskPurpose = "export"
    run: str | None = None
    pack_uri: str | None = None
    """The pack object this window's rows are exported into (shared/app/packs.py); None: exported on its own."""
    pack_ids: list[str] | None = None
    """The ids of every task of that pack, in window order (this one included)."""
    facts: dict[str, Any] | None = None
    """What Cloud Storage answered when the split created this window's object, plus the rows the split counted:
    `uri`, `bytes`, `rows`, `crc32c`, `md5` (shared/app/packs.py). The manifest takes them for that uri instead of
    reading the object again; a task exported on its own has none."""
    update_time: Any = field(default=None, compare=False, repr=False)

    @property
    def export_uri(self) -> str | None:
        """Where the task's export operation writes: its pack's object, or its own."""
        return self.pack_uri or self.uri

    @property
    def id(self) -> str:
        if self.purpose == "verify":
            return verify_task_id(self.source, self.low, self.high, self.table or "", self.run)
        return task_id(self.source, self.low, self.table)

    @property
    def kind(self) -> TaskKind:
        if self.purpose == "verify":
            return "verify"
        return "schema" if self.table is None else "table"

    @property
    def window(self) -> Window:
        return Window(self.low, self.high)

    @property
    def order_key(self) -> str:
        """Priority first (live before backfill), then oldest window, then the schema before tables."""
        table_part = "0" if self.table is None else f"{2 if self.purpose == 'verify' else 1}{self.table}"
        return f"{self.priority}|{ts_nodash(self.low)}|{self.source}|{table_part}"

    def ready(self, now: pendulum.DateTime) -> bool:
        """Whether a pending task's retry backoff has passed."""
        return self.not_before is None or self.not_before <= now

    def log_fields(self) -> dict[str, Any]:
        """How a task appears in the logs: enough to find it, its instance, window and object."""
        return {
            "task": self.id,
            "instance": self.instance,
            "operation": self.operation,
            "uri": self.uri,
            "window_low": self.low,
            "window_high": self.high,
        }


def window_tasks(
    source: SourceConfig,
    windows: Iterable[Window],
    *,
    priority: int,
    offload: bool,
    tables: Iterable[str] | None = None,
) -> list[Task]:
    """One schema task plus one task per table (default: all of the source's) for each window, in queue order."""
    names = list(tables) if tables else list(source.table_names)
    return [
        Task(
            source=source.name,
            instance=source.instance,
            database=source.database,
            table=table,
            low=window.low,
            high=window.high,
            priority=priority,
            backfill=priority == BACKFILL_PRIORITY,
            offload=offload,
        )
        for window in windows
        for table in [None, *names]
    ]


def verify_tasks(
    source: SourceConfig,
    low: pendulum.DateTime,
    high: pendulum.DateTime,
    tables: Iterable[str],
    run: str | None = None,
) -> list[Task]:
    """One verification task per table over [low, high), queued behind live work."""
    return [
        Task(
            source=source.name,
            instance=source.instance,
            database=source.database,
            table=table,
            low=low,
            high=high,
            priority=BACKFILL_PRIORITY,
            backfill=True,
            offload=source.offload,
            purpose="verify",
            run=run,
        )
        for table in tables
    ]


def rank_changes(current: Task, requested: Task) -> dict[str, Any]:
    """The fields that move a queued task to the rank of a new request for it (priority, backfill flag, order)."""
    ranked = dataclasses.replace(current, priority=requested.priority, backfill=requested.backfill)
    return {"priority": ranked.priority, "backfill": ranked.backfill, "order_key": ranked.order_key}


def may_promote(requested: Task) -> bool:
    """Whether planning `requested` again can raise the rank of a task queued already: only a rank above the lowest
    (backfill) can. When it cannot, planning need not read the documents that exist (a redelivered backfill)."""
    return requested.priority < BACKFILL_PRIORITY


def next_generation(task: Task) -> int:
    """The generation of a re-export (retry after a failure that left an object, requeue, force): the export
    API refuses to overwrite, so every re-export writes a new object name."""
    return task.generation + 1


@dataclass(frozen=True)
class CreateResult:
    """What planning a batch of tasks did: newly created, re-queued by a force, already there; and the document
    reads and writes it took (a create refused because the document exists is a write attempt, not a read)."""

    created: int
    forced: int
    existing: int
    reads: int = 0
    writes: int = 0


WATERMARK_WALK_LIMIT = 500
"""Most windows one watermark advance crosses (the rest on the next)."""


def walk_watermark(
    source: str,
    table: str,
    start: pendulum.DateTime,
    read: Callable[[str], tuple[TaskState, pendulum.DateTime] | None],
) -> pendulum.DateTime:
    """Where a table's watermark moves from `start`: across every consecutive done window, stopping at the first
    window whose task is missing or not done. `read(task id)` gives that task's (state, high), or None."""
    value = start
    for _ in range(WATERMARK_WALK_LIMIT):
        found = read(task_id(source, value, table))
        if found is None or found[0] != "done":
            break
        value = found[1]
    return value


LIVE_RANK, CATCH_UP_RANK, BACKFILL_RANK = 0, 1, 2
"""The order of work when a task is claimed: live windows, then catch-up, then backfill."""


def claim_rank(task: Task, live_low: pendulum.DateTime | None) -> int:
    """A task's rank, decided when it is claimed rather than frozen when its document was written.

    Live: the window is its source's latest settled one (`live_low` and later), whoever created the document
    and whether or not it is a forced re-export. Catch-up: an older window a tick planned. Backfill: an older
    window a backfill planned or forced (and verifications).
    """
    if live_low is not None and task.low >= live_low and task.purpose == "export":
        return LIVE_RANK
    return BACKFILL_RANK if task.backfill else CATCH_UP_RANK


def claim_order(tasks: Iterable[Task], live_lows: Mapping[str, pendulum.DateTime]) -> list[Task]:
    """Tasks (duplicates dropped) by rank, then the queue's own order: oldest window, schema before tables."""
    unique = {t.id: t for t in tasks}.values()
    return sorted(unique, key=lambda t: (claim_rank(t, live_lows.get(t.source)), t.order_key.split("|", 1)[1]))
