"""The pipeline end to end: Pub/Sub push -> functions-framework -> Firestore -> Admin API emulator -> storage.

Nothing is mocked: ticks are published to the Pub/Sub emulator, the planner and the worker run in
functions-framework, exports run against PostgreSQL through the Admin API emulator, and the CSVs are
read back from fake-gcs-server and compared row for row with the source.
"""

from __future__ import annotations

import base64
import itertools
import json
from collections import Counter
from pathlib import Path

import pendulum
import pytest
import requests

from local.demo_data import TABLES, insert_row, seed, source_rows
from tests.pipeline_support import HOURS, ROWS_PER_TABLE, START, Pipeline, demo_config, second_source

pytestmark = pytest.mark.stack

TABLE_NAMES = list(TABLES)


@pytest.fixture(scope="module")
def seeded(stack):
    return seed(stack.pg_dsn("postgres"), START, hours=HOURS, rows_per_table=ROWS_PER_TABLE)


@pytest.fixture
def pipeline(stack, stack_env, seeded, tmp_path: Path):
    """Functions restarted with the test's config first, then every emulator emptied: nothing from an
    earlier test can write into this one."""

    def start(doc=None, extra_env=None) -> Pipeline:
        return Pipeline(stack, doc or demo_config(), tmp_path / "config.json", extra_env)

    return start


def _assert_reconciled(p: Pipeline, expected_windows: int) -> None:
    checks = p.driver.reconcile(p.dsn)
    assert len(checks) == expected_windows
    mismatched = [(c.table, c.low, c.bucket_rows, c.source_rows) for c in checks if not c.equal]
    assert mismatched == []


def test_one_tick_exports_the_schema_and_every_table(pipeline):
    p = pipeline()
    p.tick_for(0)
    p.driver.wait_idle(expect_tasks=1 + len(TABLE_NAMES))

    tasks = p.state.all_tasks()
    assert sorted((t.table or "") for t in tasks) == sorted(["", *TABLE_NAMES])
    assert {t.state for t in tasks} == {"done"}
    assert {(t.low, t.high) for t in tasks} == {(START, START.add(hours=1))}
    for check in p.driver.reconcile(p.dsn):
        assert check.equal, check
        assert check.bucket_rows > 400  # ~500 rows per table per hour, boundary rows included

    orders = next(t for t in tasks if t.table == "orders")
    assert orders.uri == "gs://cdc-exports/cdc/raw/orders/2026/11/20/orders_20261120T000000.csv"
    manifests = p.state.manifests()
    assert len(manifests) == 1
    manifest = manifests[0]
    assert [o["table"] for o in manifest["objects"]] == sorted(TABLE_NAMES)
    orders = next(o for o in manifest["objects"] if o["table"] == "orders")
    assert orders["columns"][0] == {"name": "id", "type": "bigint", "nullable": False}
    assert [c["name"] for c in orders["columns"]] == TABLES["orders"]
    assert manifest["schema_snapshot"]["orders"][0]["name"] == "id"
    source_rows = {c.table: c.source_rows for c in p.driver.reconcile(p.dsn)}
    assert {o["table"]: o["rows"] for o in manifest["objects"]} == source_rows
    assert all(o["md5"] and o["bytes"] == p.objects()[o["uri"].split("/", 3)[3]] for o in manifest["objects"])
    assert "cdc/manifests/shop/2026/11/20/20261120T000000/_manifest.json" in p.objects()


def test_consecutive_ticks_tile_the_range_without_gaps_or_duplicates(pipeline):
    p = pipeline()
    for hour in range(HOURS):
        p.tick_for(hour)
    p.driver.wait_idle(timeout=180, expect_tasks=HOURS * (1 + len(TABLE_NAMES)))

    _assert_reconciled(p, HOURS * len(TABLE_NAMES))
    end = START.add(hours=HOURS)
    for table in TABLE_NAMES:
        exported = [
            row
            for t in p.state.tasks_in_state("done")
            if t.table == table
            for row in p.driver.read_export(p.config.sources[0], t.uri)
        ]
        ids = [row[0] for row in exported]
        assert len(ids) == len(set(ids)), f"duplicate rows in {table}"
        assert sorted(exported) == sorted(source_rows(p.dsn, table, START, end))
        assert p.state.get_watermark("shop", table) == end
    assert len(p.state.manifests()) == HOURS


def test_backfill_of_24_windows_does_not_starve_live_ticks(pipeline):
    p = pipeline()
    p.faults(min_duration=0.2)
    p.tick_for(0)
    p.driver.backfill(START.subtract(hours=24), START, source="shop")
    for hour in (1, 2):
        p.tick_for(hour)
    total = (24 + 3) * (1 + len(TABLE_NAMES))
    p.driver.wait_idle(timeout=240, expect_tasks=total)

    tasks = p.state.all_tasks()
    assert len(tasks) == total
    assert {t.state for t in tasks} == {"done"}
    live = [t for t in tasks if not t.backfill]
    backfill = [t for t in tasks if t.backfill]
    assert len(backfill) == 24 * (1 + len(TABLE_NAMES))
    # Once a live task exists, at most the export already in flight runs before it: no backfill
    # export may be submitted between a live task's creation and its own submission, beyond one.
    for task in live:
        overtaking = [b for b in backfill if task.created_at < b.submitted_at < task.submitted_at]
        assert len(overtaking) <= 1, (task.id, [b.id for b in overtaking])
    # The backfill never moved the live watermark backwards or past the live range.
    for table in TABLE_NAMES:
        assert p.state.get_watermark("shop", table) == START.add(hours=3)
    _assert_reconciled(p, 27 * len(TABLE_NAMES))


def _push_body(data: dict, message_id: str, publish_time: str) -> dict:
    return {
        "message": {
            "data": base64.b64encode(json.dumps(data).encode()).decode(),
            "messageId": message_id,
            "publishTime": publish_time,
            "attributes": {},
        },
        "subscription": "projects/cdc-local/subscriptions/cdc-ticks-planner",
    }


def test_redelivered_tick_backfill_and_work_change_nothing(pipeline, stack):
    p = pipeline()
    planner_url = f"http://127.0.0.1:{stack.ports.planner}/projects/cdc-local/topics/cdc-ticks"
    tick = _push_body(
        {"kind": "tick", "at": START.add(hours=1, minutes=5).isoformat()}, "tick-1", "2026-11-20T01:05:00Z"
    )
    backfill = _push_body(
        {"kind": "backfill", "start": START.subtract(hours=2).isoformat(), "end": START.isoformat(), "force": True},
        "backfill-1",
        "2026-11-20T01:05:00Z",
    )
    for body in (tick, backfill):
        response = requests.post(planner_url, json=body, timeout=60)
        assert response.status_code == 200, response.text
    expected = 3 * (1 + len(TABLE_NAMES))
    p.driver.wait_idle(expect_tasks=expected)
    before = (len(p.state.all_tasks()), len(p.operations()), sorted(p.objects()))

    # The same messages again (same ids: a Pub/Sub redelivery), a new tick for the same clock,
    # and a burst of work messages.
    for body in (tick, backfill):
        assert requests.post(planner_url, json=body, timeout=60).status_code == 200
    p.driver.tick(START.add(hours=1, minutes=5))
    for _ in range(3):
        p.driver.work("cdc-local:shop-pg")
    p.driver.wait_idle(expect_tasks=expected, quiet=2.0)

    after = (len(p.state.all_tasks()), len(p.operations()), sorted(p.objects()))
    assert after == before
    assert before[0] == expected
    assert {t.generation for t in p.state.all_tasks()} == {1}


def test_two_instances_run_in_parallel_but_each_is_serial(pipeline):
    p = pipeline(second_source(demo_config()))
    p.faults(min_duration=0.3)
    for hour in range(2):
        p.tick_for(hour)
    p.driver.wait_idle(timeout=120, expect_tasks=2 * 2 * (1 + len(TABLE_NAMES)))

    exports = [op for op in p.operations() if op.get("operationType", "EXPORT") == "EXPORT"]
    by_instance: dict[str, list[tuple[pendulum.DateTime, pendulum.DateTime]]] = {}
    for op in exports:
        span = (pendulum.parse(op["startTime"]), pendulum.parse(op["endTime"]))
        by_instance.setdefault(op["instance"], []).append(span)
    assert set(by_instance) == {"shop-pg", "shop-pg-2"}
    for spans in by_instance.values():
        spans.sort()
        assert all(a_end <= b_start for (_, a_end), (b_start, _) in itertools.pairwise(spans))
    first, second = by_instance["shop-pg"], by_instance["shop-pg-2"]
    parallel = any(a0 < b1 and b0 < a1 for a0, a1 in first for b0, b1 in second)
    assert parallel, "the two chains never ran at the same time"
    _assert_reconciled(p, 2 * 2 * len(TABLE_NAMES))


def test_a_row_committed_during_the_settle_delay_is_captured(pipeline, stack):
    p = pipeline()
    window_high = START.add(hours=4)
    late_id = 9_000_001
    # A tick before the settle delay has passed does not plan the window (only the one before it)...
    p.driver.tick(window_high.add(minutes=1))
    p.driver.wait_idle(expect_tasks=1 + len(TABLE_NAMES))
    assert {t.high for t in p.state.all_tasks()} == {START.add(hours=3)}
    # ...then the late transaction commits, with an event time inside the window...
    insert_row(stack.pg_dsn("postgres"), "orders", late_id, window_high.subtract(seconds=1))
    try:
        # ...and the tick after the settle delay exports it.
        p.driver.tick(window_high.add(minutes=5))
        p.driver.wait_idle(expect_tasks=2 * (1 + len(TABLE_NAMES)))
        orders = next(t for t in p.state.all_tasks() if t.table == "orders" and t.high == window_high)
        assert orders.low == START.add(hours=3)
        ids = [row[0] for row in p.driver.read_export(p.config.sources[0], orders.uri)]
        assert str(late_id) in ids
        _assert_reconciled(p, 2 * len(TABLE_NAMES))
    finally:
        import psycopg

        with psycopg.connect(stack.pg_dsn("shop"), autocommit=True) as conn:
            conn.execute("DELETE FROM orders WHERE id = %s", (late_id,))


def test_a_permanently_failing_export_stops_the_watermark_but_not_the_chain(pipeline):
    doc = demo_config()
    doc["worker"]["max_attempts"] = 2
    p = pipeline(doc)
    p.faults(fail_uri_regex=r"orders_20261120T010000")
    for hour in range(3):
        p.tick_for(hour)
    p.driver.wait_idle(timeout=120, expect_tasks=3 * (1 + len(TABLE_NAMES)))

    tasks = {t.id: t for t in p.state.all_tasks()}
    failed = [t for t in tasks.values() if t.state == "failed"]
    assert [t.id for t in failed] == ["shop.20261120T010000.table.orders"]
    assert failed[0].attempts == 2
    assert failed[0].error["message"]
    assert Counter(t.state for t in tasks.values()) == Counter({"done": 14, "failed": 1})
    assert p.state.get_watermark("shop", "orders") == START.add(hours=1)
    for table in ("payments", "shipments", "page_views"):
        assert p.state.get_watermark("shop", table) == START.add(hours=3)
    # Retries never tried to overwrite an object: no export in the emulator's log was refused because its
    # object already existed, and each attempt of the failing task is an operation of that log.
    exports = [op for op in p.operations() if op.get("uri")]
    refused = [op["uri"] for op in exports if (op["error"] or {}).get("code") == "ALREADY_EXISTS"]
    assert refused == []
    failing = [op for op in exports if "orders_20261120T010000" in op["uri"]]
    assert [op["error"]["code"] for op in failing] == ["INTERNAL_ERROR"] * failed[0].attempts
