"""Packing on the local stack: a backfill packed into one export per table (Pub/Sub push -> functions -> Firestore
claim of many windows -> the Admin API emulator running PostgreSQL's COPY of the UNION ALL -> the split into
fake-gcs-server), compared byte for byte with the same windows exported one by one through the same emulator."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from bench import packing
from local.demo_data import seed
from shared.core.csvformat import count_rows, decompressed
from shared.core.templates import Templates, export_request_body
from tests.pipeline_support import HOURS, ROWS_PER_TABLE, START, Pipeline, demo_config

pytestmark = pytest.mark.stack

DIALECTS = {
    "default": {"escape": "22", "quote": "22", "fields_terminated_by": "2C", "gzip": False},
    "pipe-backslash-gzip": {"escape": "5C", "quote": "22", "fields_terminated_by": "7C", "gzip": True},
}


@pytest.fixture(scope="module")
def seeded(stack: Any) -> dict[str, int]:
    return seed(stack.pg_dsn("postgres"), START, hours=HOURS, rows_per_table=ROWS_PER_TABLE)


def export_alone(p: Pipeline, body: dict[str, Any]) -> None:
    """One export through the Admin API emulator, waited for: what one export per window writes."""
    sqladmin = p.driver.clients.sqladmin
    source = p.config.sources[0]
    operation = sqladmin.export(source.instance_project, source.instance_name, body)
    deadline = time.monotonic() + 30
    while not operation.done:
        assert time.monotonic() < deadline, f"reference export {operation.name} not DONE"
        time.sleep(0.05)
        operation = sqladmin.get_operation(source.instance_project, operation.name)
    assert not operation.failed, operation.error_message


def assert_equal_to_exports_one_by_one(p: Pipeline) -> int:
    """Every table task's object equals the same window exported alone (decompressed; still gzip when the source
    says so) and is the one its manifest names; returns the rows the manifests count."""
    source = p.config.sources[0]
    objects, templates = p.driver.clients.objects, Templates()
    extension = ".csv.gz" if source.csv.gzip else ".csv"
    manifests = {m["window"]["low"]: m for m in p.state.manifests()}
    assert {m["status"] for m in manifests.values()} == {"written"}
    rows = 0
    for task in (t for t in p.state.all_tasks() if t.table):
        query = templates.render_query(source, task.table or "", task.window)
        uri = f"gs://{p.config.bucket}/reference/{task.table}_{task.window.ts_nodash}{extension}"
        export_alone(p, export_request_body(source, query, uri, offload=False))
        reference = b"".join(objects.stream(objects.key_of(uri)))
        ours = b"".join(objects.stream(objects.key_of(task.uri or "")))
        assert ours.startswith(b"\x1f\x8b") == source.csv.gzip
        assert b"".join(decompressed([ours])) == b"".join(decompressed([reference])), task.id
        entry = next(o for o in manifests[task.low.isoformat()]["objects"] if o.get("table") == task.table)
        assert entry["uri"] == task.uri
        # The facts the split took from Cloud Storage's answer to its upload are those the bucket keeps.
        stat = objects.stat(objects.key_of(task.uri or ""))
        assert stat is not None and (entry["bytes"], entry["md5"], entry["crc32c"]) == (
            stat.size,
            stat.md5,
            stat.crc32c,
        )
        assert entry["rows"] == count_rows(reference, source.csv.dialect)
        rows += entry["rows"]
    return rows


@pytest.mark.parametrize("dialect", list(DIALECTS))
def test_a_packed_backfill_equals_one_export_per_window(
    stack: Any, stack_env: dict[str, str], seeded: dict[str, int], tmp_path: Path, dialect: str
) -> None:
    doc = demo_config()
    doc["worker"]["pack"] = {"max_windows": 48}
    doc["sources"][0]["csv"] = DIALECTS[dialect]
    p = Pipeline(stack, doc, tmp_path / "config.json", None)
    source = p.config.sources[0]
    p.driver.backfill(START, START.add(hours=HOURS))
    p.driver.wait_idle(expect_tasks=HOURS * (1 + len(source.tables)), timeout=240)
    tasks = p.state.all_tasks()
    assert {t.state for t in tasks} == {"done"} and all(t.finalized for t in tasks)
    assert all(t.pack_uri and t.generation == 1 for t in tasks if t.table)
    exported = [o["uri"] for o in p.operations() if o.get("uri")]
    assert len([u for u in exported if "/packs/" in u]) == len(source.tables)  # one pack per table
    assert len(exported) == HOURS + len(source.tables)  # against HOURS * (1 + tables) one by one
    assert len(p.state.manifests()) == HOURS
    assert assert_equal_to_exports_one_by_one(p) == sum(seeded.values())


def test_a_worker_killed_mid_split_is_finished_by_recovery(
    stack: Any, stack_env: dict[str, str], seeded: dict[str, int], tmp_path: Path
) -> None:
    """SIGKILL after the first window object of a pack is written (failpoint mid_split, always), until the worker is
    restarted without the failpoint: the redelivered work message's recovery finishes the pack, checking the window
    objects already there instead of writing them again."""
    doc = demo_config()
    doc["worker"]["pack"] = {"max_windows": 48}
    p = Pipeline(stack, doc, tmp_path / "config.json", {"CDC_FAILPOINTS": "mid_split:1"})
    worker_log = stack.logs_dir / "worker.log"
    offset = worker_log.stat().st_size if worker_log.exists() else 0
    p.driver.backfill(START, START.add(hours=HOURS), tables=["orders"])
    deadline = time.monotonic() + 120
    while b"failpoint fired" not in worker_log.read_bytes()[offset:]:
        assert time.monotonic() < deadline, "the worker never reached mid_split"
        time.sleep(0.5)
    stack.restart_functions(config_path=tmp_path / "config.json")
    p.driver.wait_idle(expect_tasks=HOURS * 2, timeout=240)
    log = worker_log.read_bytes()[offset:]
    assert b"window object already written by an earlier split; checked" in log
    tasks = p.state.all_tasks()
    assert {t.state for t in tasks} == {"done"} and all(t.finalized for t in tasks)
    assert all(t.pack_uri and t.generation == 1 for t in tasks if t.table)
    assert assert_equal_to_exports_one_by_one(p) == seeded["orders"]


def test_the_packing_benchmark_runs_small(stack: Any, stack_env: dict[str, str]) -> None:
    """bench/packing.py's scenario, small (its full size is `python -m bench.packing`): the per-window objects of the
    packed run are byte-identical to one export per window (it raises otherwise), with fewer operations."""
    found = packing.run(stack, tables=3, windows=4)
    assert found["pack_ops_single"] == 4 * (1 + 3) and found["pack_ops_packed"] == 4 + 3
