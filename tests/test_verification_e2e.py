"""Verification on the emulator stack: late rows and deletes found and repaired, nothing re-exported when nothing
changed, live windows first, schema drift recorded. Its own database, so the rows it changes touch no other test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

from local.demo_data import TABLES, delete_one, insert_row, seed
from tests.cli_stack_support import cdc
from tests.pipeline_support import START, Pipeline, demo_config

pytestmark = pytest.mark.stack

DATABASE = "verifyshop"
HOURS = 3
TASKS_PER_WINDOW = 1 + len(TABLES)


@pytest.fixture
def pipeline(stack: Any, stack_env: dict[str, str], tmp_path: Path) -> Pipeline:
    seed(stack.pg_dsn("postgres"), START, hours=HOURS + 2, rows_per_table=600, database=DATABASE)
    doc = demo_config()
    doc["sources"][0]["database"] = DATABASE
    p = Pipeline(stack, doc, tmp_path / "config.json", None)
    for hour in range(HOURS):
        p.tick_for(hour)
    p.driver.wait_idle(expect_tasks=HOURS * TASKS_PER_WINDOW)
    return p


def raw_exports(p: Pipeline) -> list[str]:
    return sorted(op["uri"] for op in p.operations() if "/raw/" in (op.get("uri") or ""))


def test_late_rows_and_a_delete_are_repaired_in_one_verification_and_nothing_else_moves(pipeline: Pipeline) -> None:
    p = pipeline
    dsn = p.stack.pg_dsn("postgres")
    for i in range(5):
        insert_row(dsn, "orders", 90_000_000 + i, START.add(hours=1, minutes=30 + i), database=DATABASE)
    assert delete_one(dsn, "payments", START, START.add(hours=1), database=DATABASE) == 1
    before = raw_exports(p)
    result = cdc(
        "verify", "--start", START.isoformat(), "--end", START.add(hours=HOURS).isoformat(), "--wait", "--json"
    )
    assert result.returncode == 0, result.stderr
    reported = json.loads(result.stdout)
    assert reported["complete"] and len(reported["tasks"]) == len(TABLES)
    assert sorted((r["table"], r["rows_exported"] - r["rows_now"]) for r in reported["repaired"]) == [
        ("orders", -5),
        ("payments", 1),
    ]
    p.driver.wait_idle(expect_tasks=HOURS * TASKS_PER_WINDOW + len(TABLES))

    repaired = {m["replaced_because"]["table"]: m for m in p.state.manifests() if m.get("replaced_because")}
    assert set(repaired) == {"orders", "payments"}
    assert (
        repaired["orders"]["replaced_because"]["rows_now"] - repaired["orders"]["replaced_because"]["rows_exported"]
        == 5
    )
    assert (
        repaired["payments"]["replaced_because"]["rows_exported"] - repaired["payments"]["replaced_because"]["rows_now"]
        == 1
    )
    after = raw_exports(p)
    new = sorted(set(after) - set(before))
    assert len(new) == 2 and all(".g2.csv" in uri for uri in new)
    objects = p.objects()
    for manifest in repaired.values():
        assert manifest["version"] == 2 and manifest["previous"].endswith("/_manifest.json")
        assert manifest["previous"] in objects and manifest["key"] in objects  # the history stays
        for uri in new:
            assert uri.replace(".g2.csv", ".csv").split("/", 3)[3] in objects  # the previous generation stays
    mismatched = [(c.table, c.low) for c in p.driver.reconcile(p.dsn) if not c.equal]
    assert mismatched == []
    assert all(e["to"] > e["from"] for e in p.state.watermark_history())

    # Nothing changed since: a second verification re-exports nothing.
    p.driver.verify(START, START.add(hours=HOURS))
    p.driver.wait_idle(expect_tasks=HOURS * TASKS_PER_WINDOW + 2 * len(TABLES))
    assert raw_exports(p) == after


def test_a_live_window_goes_before_queued_verifications(pipeline: Pipeline) -> None:
    p = pipeline
    p.faults(min_duration=0.5)
    p.driver.verify(START, START.add(hours=HOURS))
    p.tick_for(HOURS)
    p.driver.wait_idle(expect_tasks=(HOURS + 1) * TASKS_PER_WINDOW + len(TABLES))
    tasks = p.state.all_tasks()
    live = [t for t in tasks if t.purpose == "export" and t.low == START.add(hours=HOURS)]
    verifications = sorted((t for t in tasks if t.purpose == "verify"), key=lambda t: t.submitted_at)
    first_live = min(t.submitted_at for t in live)
    # At most the verification export already in flight when the tick landed goes first.
    assert len([t for t in verifications if t.submitted_at < first_live]) <= 1


def test_schema_drift_is_recorded_in_the_next_windows_manifest(pipeline: Pipeline) -> None:
    """A column added mid-run, then dropped: each change is in the manifest of the first window after it."""
    p = pipeline
    for hour, statement in (
        (HOURS, "ALTER TABLE orders ADD COLUMN extra text"),
        (HOURS + 1, "ALTER TABLE orders DROP COLUMN extra"),
    ):
        with psycopg.connect(p.stack.pg_dsn(DATABASE), autocommit=True) as conn:
            conn.execute(statement)
        p.tick_for(hour)
        p.driver.wait_idle(expect_tasks=(hour + 1) * TASKS_PER_WINDOW)
    manifests = {m["window"]["low"]: m for m in p.state.manifests()}

    def drift(hour: int) -> list[tuple[str, str, str, str]]:
        changes = manifests[START.add(hours=hour).isoformat()]["schema_drift"]
        return [(d["table"], d["column"], d["change"], d["severity"]) for d in changes]

    assert drift(HOURS - 1) == []
    assert drift(HOURS) == [("orders", "extra", "added", "WARNING")]
    assert drift(HOURS + 1) == [("orders", "extra", "removed", "WARNING")]  # not a column the export selects
