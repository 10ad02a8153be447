"""An export that fails after it already wrote its object (the emulator's `fail_after_write_regex`): the worker
retries to a new generation (`.g2`) and never asks the API to overwrite the object the failed attempt left.

Issue 17's survivor: with the worker's generation bump removed, this test fails (the retry is refused as
ALREADY_EXISTS); the emulator's other failure modes never leave an object behind, so nothing else noticed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from local.demo_data import TABLES, seed
from tests.pipeline_support import START, Pipeline, demo_config

pytestmark = pytest.mark.stack


def test_a_failed_export_that_left_its_object_is_retried_as_generation_two(
    stack: Any, stack_env: dict[str, str], tmp_path: Path
) -> None:
    seed(stack.pg_dsn("postgres"), START, hours=1, rows_per_table=100, database="reexportshop")
    doc = demo_config()
    doc["sources"][0]["database"] = "reexportshop"
    p = Pipeline(stack, doc, tmp_path / "config.json", None)
    p.faults(fail_after_write_regex=r"/orders_20261120T000000\.csv$")
    p.tick_for(0)
    p.driver.wait_idle(expect_tasks=1 + len(TABLES), timeout=120)
    orders = p.state.get_task("shop.20261120T000000.table.orders")
    assert (orders.state, orders.generation, orders.attempts) == ("done", 2, 2)
    assert orders.uri.endswith("/orders_20261120T000000.g2.csv")
    exports = [op for op in p.operations() if "orders_20261120T000000" in (op.get("uri") or "")]
    assert [(op["uri"].rsplit("/", 1)[1], (op["error"] or {}).get("code")) for op in exports] == [
        ("orders_20261120T000000.csv", "INTERNAL_ERROR"),
        ("orders_20261120T000000.g2.csv", None),
    ]  # and no ALREADY_EXISTS: the left object was never overwritten
    objects = p.objects()
    assert "cdc/raw/orders/2026/11/20/orders_20261120T000000.csv" in objects  # what the failed attempt left
    [manifest] = p.state.manifests()
    entry = next(o for o in manifest["objects"] if o["table"] == "orders")
    assert entry["uri"] == orders.uri and entry["generation"] == 2
