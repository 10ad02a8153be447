"""The breaker on the stack: the Admin API emulator answers as the real API does for a stopped instance and for
IAM refusals; the worker (real googleapiclient, Firestore) pauses the instance, fails nothing, and resumes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from local.demo_data import TABLES, seed
from tests.pipeline_support import START, Pipeline, demo_config

pytestmark = pytest.mark.stack

DATABASE = "breakershop"


@pytest.mark.parametrize(
    ("knob", "condition"),
    [
        ("stopped_instances", "not running"),
        ("maintenance_instances", "not ready"),
        ("forbidden_instances", "permission"),
    ],
)
def test_the_chain_pauses_the_instance_and_resumes_when_it_is_back(
    stack: Any, stack_env: dict[str, str], tmp_path: Path, knob: str, condition: str
) -> None:
    seed(stack.pg_dsn("postgres"), START, hours=2, rows_per_table=200, database=DATABASE)
    doc = demo_config()
    doc["sources"][0]["database"] = DATABASE
    p = Pipeline(stack, doc, tmp_path / "config.json", None)
    p.faults(**{knob: ["shop-pg"]})
    p.tick_for(0)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and p.state.breaker("cdc-local:shop-pg") is None:
        time.sleep(0.5)
    breaker = p.state.breaker("cdc-local:shop-pg")
    assert breaker is not None and breaker["condition"] == condition
    assert not [t for t in p.state.all_tasks() if t.state == "failed"]
    p.faults(**{knob: []})
    p.driver.wait_idle(expect_tasks=1 + len(TABLES), timeout=120)
    tasks = p.state.all_tasks()
    assert {t.state for t in tasks} == {"done"} and {t.attempts for t in tasks} == {1}
    assert p.state.breaker("cdc-local:shop-pg") is None
