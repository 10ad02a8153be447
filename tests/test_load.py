"""Load: one backfill message plans a long range of many tables in one planner invocation, each task once.

The full figure (30 days x 50 tables = 36,000 table tasks + 720 schema tasks) is `python -m local.load`;
this runs the same code on 3 days x 50 tables so that `make test` stays short.
"""

from __future__ import annotations

import pytest

from local.load import FUNCTION_TIMEOUT_SECONDS, run_load

pytestmark = pytest.mark.stack

DAYS, TABLES = 3, 50


def test_a_long_backfill_is_planned_once_within_one_invocation(stack, clean_stack, tmp_path):
    report = run_load(stack, tmp_path, days=DAYS, tables=TABLES)
    print(report.summary())
    expected = DAYS * 24 * (TABLES + 1)
    assert report.tasks_expected == expected
    assert report.tasks_created == report.tasks_in_queue == expected
    assert report.redelivery_created == 0
    # Create-only writes: neither the plan nor its redelivery reads a task (a backfill promotes nothing).
    assert (report.document_reads, report.redelivery_reads) == (0, 0)
    assert report.document_writes == report.redelivery_writes == expected
    # Planning scales linearly with the task count: 10x this must still fit one invocation.
    assert report.planning_seconds * 36_720 / expected < FUNCTION_TIMEOUT_SECONDS
    assert report.status_pending == expected
    bench = report.bench()
    assert {"plan_seconds", "status_seconds", "tasks_created", "redelivery_created"} <= set(bench)
    assert (bench["tasks_created"], bench["redelivery_created"]) == (expected, 0)
