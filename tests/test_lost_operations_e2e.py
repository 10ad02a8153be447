"""Lost operations on the stack: the emulator hangs one export (RUNNING until cancelled) and makes the next one
vanish after it wrote its object (operations.get 404, absent from operations.list). The worker, through the real
googleapiclient and Firestore, cancels the hung one past its stuck limit, retries both on `.g2`, spends no attempt
on the vanished one, and never asks the API to overwrite an object."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from local.demo_data import TABLES, seed
from tests.pipeline_support import START, Pipeline, demo_config

pytestmark = pytest.mark.stack


def test_a_hung_and_a_vanished_export_are_retried_on_generation_two_without_overwriting(
    stack: Any, stack_env: dict[str, str], tmp_path: Path
) -> None:
    seed(stack.pg_dsn("postgres"), START, hours=1, rows_per_table=100, database="lostshop")
    doc = demo_config()
    doc["sources"][0]["database"] = "lostshop"
    doc["worker"].update(stuck_min_seconds=2, stuck_factor=2)
    p = Pipeline(stack, doc, tmp_path / "config.json", None)
    p.faults(hang_exports=1, vanish_exports=1)
    p.tick_for(0)
    p.driver.wait_idle(expect_tasks=1 + len(TABLES), timeout=120)
    tasks = p.state.all_tasks()
    assert {t.state for t in tasks} == {"done"}
    retried = sorted((t for t in tasks if t.generation == 2), key=lambda t: t.attempts)
    assert [t.attempts for t in retried] == [1, 2]  # the vanished export spent no attempt; the hung one did
    vanished, hung = retried
    assert vanished.uri and vanished.uri.endswith(".g2.csv") and hung.uri and hung.uri.endswith(".g2.csv")
    objects = p.objects()
    key = p.driver.clients.objects.key_of
    assert key(vanished.uri.replace(".g2.csv", ".csv")) in objects  # what the vanished export wrote stays
    assert key(hung.uri.replace(".g2.csv", ".csv")) not in objects  # the cancelled one wrote nothing
    codes = [(op.get("error") or {}).get("code") for op in p.operations()]
    assert codes.count("OPERATION_CANCELLED") == 1 and "ALREADY_EXISTS" not in codes
