"""`cdc status` on a long queue reads only what it shows: counts by aggregation, and the few tasks it lists."""

from __future__ import annotations

from typing import Any

import pendulum

from bench.costsim import CountingState
from shared.core.config import parse_config
from shared.core.tasks import BACKFILL_PRIORITY, Task, window_tasks
from shared.core.windows import Window
from shared.ops import status
from shared.testing.memory_state import InMemoryState
from tests.test_chain import config_doc
from tests.test_ops_seam import CONFIG, HOUR, SOURCE, T0, finish

WINDOWS = 600  # x (schema + 2 tables) = 1,800 tasks: more than status counts per table


def _long_queue() -> tuple[InMemoryState, list[str]]:
    state = InMemoryState()
    windows = [Window(T0 + HOUR * i, T0 + HOUR * (i + 1)) for i in range(WINDOWS)]
    tasks = window_tasks(SOURCE, windows, priority=BACKFILL_PRIORITY, offload=False)
    state.create_tasks(tasks)
    failed, retrying, running = tasks[1].id, tasks[2].id, tasks[0].id
    finish(state, failed, {"code": "INTERNAL_ERROR", "message": "boom"})
    claimed = state.claim(state.get_task(retrying), uri="gs://b/r.csv", generation=1, now=T0)  # type: ignore[arg-type]
    state.mark_retry(claimed, error={"code": "X", "message": "again"}, not_before=T0 + HOUR, generation=1)  # type: ignore[arg-type]
    claimed = state.claim(state.get_task(running), uri="gs://b/s.csv", generation=1, now=T0)  # type: ignore[arg-type]
    state.mark_running(claimed, "op-1")  # type: ignore[arg-type]
    return state, [failed, retrying, running]


def test_status_of_a_long_queue_reads_only_the_documents_it_shows() -> None:
    """Defect (before): status read every task that was not done (here 1,800 documents; 36,720 in the load run)."""
    inner, (failed, retrying, running) = _long_queue()
    counting = CountingState(inner, step_seconds=60)

    result = status.collect_status(CONFIG, counting, clock=T0 + HOUR * WINDOWS)  # type: ignore[arg-type]

    reads = sum(n for (_, kind), n in counting.counts.items() if kind == "read")
    assert reads <= 12, counting.counts
    source = result.sources[0]
    assert source.pending == WINDOWS * 3 - 2  # the failed and the running one are not pending
    assert [e.task for e in source.failed_tasks] == [failed]
    assert [e.task for e in source.retrying] == [retrying]
    assert source.in_flight is not None and source.in_flight.task == running
    assert source.next_task is not None  # the instance's next task in queue order
    assert all(row.pending is None for row in source.tables)  # not counted per table: too many
    rows = {row.table: row for row in source.tables}
    assert (rows["(schema)"].running, rows["orders"].failed) == (1, 1)
    text = status.format_status(result)
    assert f"  queue: {WINDOWS * 3 - 2:,} pending, next {source.next_task.task}" in text
    assert f"per table counted up to {status.PENDING_DETAIL_LIMIT:,} pending" in text
    assert result.to_json()["sources"][0]["pending"] == WINDOWS * 3 - 2


def test_a_short_queue_is_still_counted_per_table() -> None:
    inner = InMemoryState()
    windows = [Window(T0 + HOUR * i, T0 + HOUR * (i + 1)) for i in range(3)]
    inner.create_tasks(window_tasks(SOURCE, windows, priority=BACKFILL_PRIORITY, offload=False))
    source = status.collect_status(CONFIG, inner, clock=pendulum.now("UTC")).sources[0]
    assert {row.table: row.pending for row in source.tables} == {"(schema)": 3, **dict.fromkeys(SOURCE.table_names, 3)}
    assert source.pending == 3 * (len(SOURCE.table_names) + 1)


def test_sources_on_one_instance_read_its_next_task_once() -> None:
    """The next task is the instance's (its chain's queue), so sources that share an instance share that query:
    on a long queue each one is the price of a walk over every pending task."""
    doc = config_doc()
    second = {**doc["sources"][0], "name": "shop_eu", "database": "shop_eu", "tables": [{"name": "refunds"}]}
    config = parse_config({**doc, "sources": [doc["sources"][0], second]})
    inner = InMemoryState()
    windows = [Window(T0 + HOUR * i, T0 + HOUR * (i + 1)) for i in range(2)]
    for source in config.sources:
        inner.create_tasks(window_tasks(source, windows, priority=BACKFILL_PRIORITY, offload=False))
    calls: list[str] = []

    class Spy:
        """The store, recording which instances' next task is asked for."""

        def next_pending(self, instance: str, limit: int = 10) -> list[Task]:
            calls.append(instance)
            return inner.next_pending(instance, limit)

        def __getattr__(self, name: str) -> Any:
            return getattr(inner, name)

    result = status.collect_status(config, Spy(), clock=T0 + HOUR * 3)  # type: ignore[arg-type]

    assert calls == [config.sources[0].instance]
    expected = inner.next_pending(config.sources[0].instance, limit=1)[0].id
    assert [s.next_task.task for s in result.sources if s.next_task] == [expected, expected]
    assert [s.pending for s in result.sources] == [2 * (len(SOURCE.table_names) + 1), 2 * 2]
