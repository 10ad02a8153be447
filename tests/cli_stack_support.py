"""Helpers for the `cdc` operator command tests: run it as a subprocess against the test stack, and put the
queue into a known mix of states through the real StateStore (no messages are sent, so no function runs).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pendulum
import pytest

from shared.adapters.clients import Clients
from shared.adapters.firestore_state import StateStore
from shared.core.config import Config, parse_config
from shared.core.tasks import BACKFILL_PRIORITY, LIVE_PRIORITY, window_tasks
from shared.core.windows import Window
from tests.pipeline_support import REPO, demo_config

# The crafted queue: four live windows from T0, plus one backfill window two hours before.
T0 = pendulum.datetime(2026, 11, 20, 0, tz="UTC")
HOUR = pendulum.duration(hours=1)
FAILED_TASK = "shop.20261120T010000.table.orders"
RUNNING_TASK = "shop.20261120T020000.table.orders"
RETRYING_TASK = "shop.20261120T020000.table.payments"
OPERATION = "op-crafted-1"
CRAFTED_INSTANCE = "cdc-local:crafted-pg"


def cdc(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`cdc ARGS` with the current environment (the stack's client env and CDC_CONFIG_FILE)."""
    return subprocess.run(
        [sys.executable, "-m", "shared.ops.cli", *args],
        cwd=REPO,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def use_config(tmp_path: Path, stack_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Config:
    """Write the test config, point CDC_CONFIG_FILE at it for this test, return it parsed.

    Its source lives on an instance of its own: a worker chain of an earlier test that is still winding
    down on the stack (same source name, instance cdc-local:shop-pg) never picks up the crafted tasks."""
    doc = demo_config()
    doc["sources"][0]["instance"] = CRAFTED_INSTANCE
    path = tmp_path / "config.json"
    path.write_text(json.dumps(doc))
    monkeypatch.setenv("CDC_CONFIG_FILE", str(path))
    return parse_config(doc, sqladmin_endpoint=stack_env["CDC_SQLADMIN_ENDPOINT"])


@dataclass(frozen=True)
class Crafted:
    state: StateStore
    config: Config


def craft_queue(config: Config) -> Crafted:
    """Window 0: all done. Window 1: orders failed, the rest done. Window 2: schema done, orders running
    (operation in flight), payments pending after an error, the rest pending. Window 3: all pending.
    Backfill window T0-2h: all done. Watermarks: orders T0+1h, the others T0+2h."""
    state = Clients(config).state
    source = config.sources[0]
    live = [Window(T0 + HOUR * i, T0 + HOUR * (i + 1)) for i in range(4)]
    state.create_tasks(window_tasks(source, live, priority=LIVE_PRIORITY, offload=source.offload))
    backfill = Window(T0 - HOUR * 2, T0 - HOUR)
    state.create_tasks(window_tasks(source, [backfill], priority=BACKFILL_PRIORITY, offload=source.offload))
    for table in source.table_names:
        state.init_watermark(source.name, table, T0)
    now = pendulum.now("UTC")
    for task in state.all_tasks():
        claimed = state.claim(task, uri=f"gs://b/{task.id}.csv", generation=1, now=now)
        assert claimed is not None
        if task.id == FAILED_TASK:
            state.mark_failed(claimed, {"code": "INTERNAL_ERROR", "message": "crafted <failure> & co"})
        elif task.id == RUNNING_TASK:
            state.mark_running(claimed, OPERATION)
        elif task.id == RETRYING_TASK:
            error = {"code": "TransientApiError", "message": "crafted 503"}
            state.mark_retry(claimed, error=error, not_before=now.add(hours=1), generation=2)
        elif task.low >= T0 + HOUR * 3 or (task.low == T0 + HOUR * 2 and task.table is not None):
            state.mark_retry(claimed, error=None, not_before=now, generation=1)
        else:
            done = state.mark_running(claimed, "op-done")
            assert done is not None
            state.mark_done(done, now)
    for table in source.table_names:
        state.advance_watermark(source.name, table, now)
    return Crafted(state=state, config=config)
