"""`python -m bench.packing`: a backfill exported one window at a time, then packed, on the Admin API emulator with a
fixed overhead per operation; checks that every per-window object is byte-identical between the two runs and
reports how many operations each run took and how long (the makespan: backfill planned -> last window done).

The chain runs in-process against the stack's real services where packing acts (googleapiclient -> the Admin API
emulator running PostgreSQL's COPY, google-cloud-storage -> fake-gcs-server); the queue is the in-memory state store
(Firestore's per-task costs are the same in both runs: one task per window either way). `bench/__main__.py` calls
`run(stack)` on its own stack; alone, this module starts one (`--port-base`, `--state-dir`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pendulum
import psycopg
from google.cloud import storage
from psycopg import sql
from psycopg.conninfo import make_conninfo

from bench.pipeline import Emulator
from local.stack import REPO, Stack
from shared.adapters.clients import SystemClock
from shared.adapters.sqladmin import SqlAdmin
from shared.adapters.storage import ObjectStore
from shared.app.planner import plan_backfill
from shared.app.worker import run_work
from shared.core.config import Config, parse_config
from shared.core.csvformat import decompressed
from shared.core.messages import Backfill, Work
from shared.core.templates import Templates
from shared.testing.memory_state import InMemoryState
from shared.testing.services import RecordingBus

DATABASE = "packbench"
PROJECT = "cdc-local"
INSTANCE = "pack-pg"
BUCKET = "cdc-bench"
START = pendulum.datetime(2026, 2, 1, tz="UTC")
TABLES = 20
WINDOWS = 24
ROWS_PER_WINDOW = 12
OVERHEAD_SECONDS = 0.2
"""The emulator's fixed time per operation (op_overhead_seconds), on top of its own (~0.05 s PENDING, the COPY, the
upload); a real Cloud SQL export takes tens of seconds even when empty, so the real ratios are larger."""
CALLS_PER_MINUTE = 100_000
"""The chain's Admin API call budget in this bench (`worker.api_calls_per_minute`). The emulator's operations last
about 0.3 s where a real export lasts tens of seconds, a hundred times less, so the production budget (150 a minute,
2.5 calls a second) would bound the run that submits one export per window at about 0.9 s an operation: the bench
would measure the quota, not the operations. The budget is scaled out of the way, as bench.polling_curve does."""
TARGET_OPS_RATIO = 10.0
TARGET_MAKESPAN_RATIO = 5.0
RUN_TIMEOUT_SECONDS = 600.0


def table_names(tables: int) -> list[str]:
    return [f"events_{i:02d}" for i in range(tables)]


def seed(dsn: str, tables: int, windows: int) -> int:
    """(Re)create the database: `tables` event tables, ROWS_PER_WINDOW rows per hour with awkward values (quotes,
    the delimiter, newlines, backslashes, NULL, the empty string, a lone backslash-dot); rows per table."""
    with psycopg.connect(make_conninfo(dsn, dbname="postgres"), autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    rows = windows * ROWS_PER_WINDOW
    step = 3600 // ROWS_PER_WINDOW
    with psycopg.connect(make_conninfo(dsn, dbname=DATABASE), autocommit=True) as conn:
        for table in table_names(tables):
            name = sql.Identifier(table)
            conn.execute(
                sql.SQL(
                    "CREATE TABLE {} (id bigint PRIMARY KEY, event_timestamp timestamptz NOT NULL, kind text, "
                    "payload text)"
                ).format(name)
            )
            conn.execute(sql.SQL("CREATE INDEX ON {} (event_timestamp)").format(name))
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} SELECT g, %s::timestamptz + (g - 1) * %s * interval '1 second', "
                    "CASE g %% 4 WHEN 0 THEN NULL WHEN 1 THEN '' ELSE %s END, "
                    "CASE g %% 5 WHEN 0 THEN E'\\\\.' WHEN 1 THEN E'a \"q\", b\\nc \\\\ d' ELSE 'row ' || g END "
                    "FROM generate_series(1, %s) g"
                ).format(name),
                (START, step, table, rows),
            )
    return rows


def config_doc(root: str, tables: int, pack_windows: int) -> dict[str, Any]:
    return {
        "project": PROJECT,
        "region": "europe-west1",
        "bucket": BUCKET,
        "root": root,
        "backfill": {"max_windows": 2000},
        "worker": {
            "budget_seconds": 300,
            "lease_seconds": 60,
            "poll_initial_seconds": 0.05,
            "poll_max_seconds": 1,
            "api_calls_per_minute": CALLS_PER_MINUTE,
            "pack": {"max_windows": pack_windows, "op_overhead_seconds": OVERHEAD_SECONDS},
        },
        "sources": [
            {
                "name": "pack",
                "instance": f"{PROJECT}:{INSTANCE}",
                "database": DATABASE,
                "interval": "1h",
                "settle": "1m",
                "csv": {"escape": "5C", "quote": "22", "fields_terminated_by": "2C", "gzip": False},
                "tables": [{"name": t, "template": "bench/event.sql"} for t in table_names(tables)],
            }
        ],
    }


@dataclass
class InProcess:
    """The worker's services: the stack's Admin API emulator and bucket, an in-memory queue (follows
    shared.app.ports.Services)."""

    config: Config
    sqladmin: SqlAdmin
    objects: ObjectStore
    state: InMemoryState = field(default_factory=InMemoryState)
    bus: RecordingBus = field(default_factory=RecordingBus)
    clock: SystemClock = field(default_factory=SystemClock)


@dataclass(frozen=True)
class RunFigures:
    operations: int
    makespan_seconds: float
    objects: dict[str, bytes]


def _run(endpoint: str, root: str, tables: int, windows: int, pack_windows: int) -> RunFigures:
    config = parse_config(config_doc(root, tables, pack_windows), sqladmin_endpoint=endpoint)
    client = storage.Client(project=PROJECT)
    if client.lookup_bucket(BUCKET) is None:
        client.create_bucket(BUCKET)
    services = InProcess(config, SqlAdmin(endpoint), ObjectStore(client, BUCKET))
    templates = Templates()
    instance = config.sources[0].instance
    began = time.monotonic()
    message = Backfill(f"bf-{root}", pendulum.now("UTC"), START, START.add(hours=windows), "pack",
                       tuple(table_names(tables)), False, False)  # fmt: skip
    plan_backfill(message, services)
    messages = 0
    while services.state.has_open_tasks(instance):
        if time.monotonic() - began > RUN_TIMEOUT_SECONDS:
            raise TimeoutError(f"run {root}: tasks still open after {RUN_TIMEOUT_SECONDS:.0f} s")
        messages += 1
        run_work(Work(f"w-{root}-{messages}", pendulum.now("UTC"), instance), services, templates)
    makespan = time.monotonic() - began
    tasks = services.state.all_tasks()
    failed = [t.id for t in tasks if t.state != "done"]
    if failed:
        raise RuntimeError(f"run {root}: tasks not done: {failed[:5]}")
    operations = sum(1 for op in Emulator(endpoint).operations(INSTANCE) if f"/{root}/" in (op["uri"] or ""))
    stored = services.objects
    objects = {
        (t.uri or "").split(f"/{root}/", 1)[1]: b"".join(decompressed(stored.stream(stored.key_of(t.uri or ""))))
        for t in tasks
        if t.table
    }
    return RunFigures(operations, makespan, objects)


def run(stack: Stack, *, tables: int = TABLES, windows: int = WINDOWS) -> dict[str, float]:
    """Both runs on `stack` (already up); prints a table and returns the BENCH figures."""
    endpoint = stack.env()["CDC_SQLADMIN_ENDPOINT"]
    emulator = Emulator(endpoint)
    rows = seed(stack.pg_dsn("postgres"), tables, windows)
    print(f"\n== packing: backfill of {tables} tables x {windows} hourly windows ({rows} rows per table), "
          f"{OVERHEAD_SECONDS} s fixed overhead per operation in the emulator")  # fmt: skip
    emulator.faults(op_overhead_seconds=OVERHEAD_SECONDS, min_duration=0)
    try:
        stamp = time.strftime("%H%M%S")
        single = _run(endpoint, f"packbench-{stamp}-single", tables, windows, pack_windows=1)
        packed = _run(endpoint, f"packbench-{stamp}-packed", tables, windows, pack_windows=windows)
    finally:
        emulator.faults(op_overhead_seconds=0)
    if single.objects != packed.objects or len(single.objects) != tables * windows:
        differ = sorted(k for k in single.objects if single.objects[k] != packed.objects.get(k))
        raise AssertionError(f"per-window objects differ between the runs: {differ[:5]}")
    ops_ratio = single.operations / packed.operations
    makespan_ratio = single.makespan_seconds / packed.makespan_seconds
    print(f"  {'run':<10} {'ops':>5} {'makespan s':>11}")
    print(f"  {'one each':<10} {single.operations:>5} {single.makespan_seconds:>11.1f}")
    print(f"  {'packed':<10} {packed.operations:>5} {packed.makespan_seconds:>11.1f}")
    print(f"  ratio      {ops_ratio:>5.1f} {makespan_ratio:>11.1f}   (targets >= {TARGET_OPS_RATIO:.0f} and "
          f">= {TARGET_MAKESPAN_RATIO:.0f}); {len(single.objects)} per-window objects byte-identical")  # fmt: skip
    if ops_ratio < TARGET_OPS_RATIO or makespan_ratio < TARGET_MAKESPAN_RATIO:
        print("!!! packing TARGET MISSED")
    return {
        "pack_ops_ratio": round(ops_ratio, 2),
        "pack_makespan_ratio": round(makespan_ratio, 2),
        "pack_ops_single": single.operations,
        "pack_ops_packed": packed.operations,
        "pack_makespan_single_s": round(single.makespan_seconds, 2),
        "pack_makespan_packed_s": round(packed.makespan_seconds, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.packing", description=__doc__.splitlines()[0])
    parser.add_argument("--port-base", type=int, default=18300)
    parser.add_argument("--state-dir", type=Path, default=REPO / ".stack-bench-packing")
    parser.add_argument("--tables", type=int, default=TABLES)
    parser.add_argument("--windows", type=int, default=WINDOWS)
    args = parser.parse_args(argv)
    args.state_dir.mkdir(parents=True, exist_ok=True)
    config_path = args.state_dir / "config.json"
    config_path.write_text(json.dumps(config_doc("packbench", args.tables, 1)))
    stack = Stack(state_dir=args.state_dir, port_base=args.port_base, config_path=config_path)
    stack.up()
    try:
        os.environ.update(stack.env())
        found = run(stack, tables=args.tables, windows=args.windows)
    finally:
        stack.down()
    print("BENCH " + json.dumps(found, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
