"""`cdc status`, `cdc backfill` and `cdc retry` as subprocesses against the test stack, exit codes included."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pendulum
import pytest

from local.demo_data import seed
from shared.ops.cli import EXIT_BAD_INPUT, EXIT_UNHEALTHY
from tests.cli_stack_support import (
    FAILED_TASK,
    HOUR,
    OPERATION,
    RETRYING_TASK,
    RUNNING_TASK,
    T0,
    cdc,
    craft_queue,
    use_config,
)
from tests.pipeline_support import HOURS, ROWS_PER_TABLE, START, Pipeline, demo_config
from tests.test_cli import DEMO
from tests.test_cli import cdc as cdc_offline

TABLES = ["orders", "payments", "shipments", "page_views"]


def _tables(report: dict) -> dict[str, dict]:
    return {t["table"]: t for t in report["sources"][0]["tables"]}


# ---- offline: argument and request checks (no stack, nothing published) ----------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--start", "2026-01-01T00:30:00Z", "--end", "2026-01-01T02:00:00Z"), "is not on the '1h' grid"),
        (("--start", "2026-01-01T02:00:00Z", "--end", "2026-01-01T01:00:00Z"), "is not after start"),
        (("--start", "2026-01-01T00:00:00Z", "--end", "2026-01-01T01:00:00Z", "--tables", "nope"), "'nope'"),
        (("--start", "2026-01-01T00:00:00Z", "--end", "2026-01-01T01:00:00Z", "--source", "x"), "source 'x'"),
        (("--start", "2020-01-01T00:00:00Z", "--end", "2021-01-01T00:00:00Z"), "more than the limit of 2000"),
        (("--start", "2099-01-01T00:00:00Z", "--end", "2099-01-01T01:00:00Z"), "after the latest settled window"),
        (("--start", "2026-01-01T00:00:00", "--end", "2026-01-01T01:00:00Z"), "has no UTC offset"),
        (("--start", "2026-01-01T00:00:00Z",), "the following arguments are required: --end"),
    ],
)  # fmt: skip
def test_backfill_rejects_what_the_planner_would(args: tuple[str, ...], message: str) -> None:
    result = cdc_offline("backfill", *args, "--config", str(DEMO))
    assert result.returncode == EXIT_BAD_INPUT
    assert message in result.stderr
    assert "published" not in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--start", "2026-01-01T00:00:00Z", "--end", "2026-01-01T02:00:00Z", "--tables", "orders", "orders"), "twice"),
        (("--start", "2026-01-01T02:00:00Z", "--end", "2026-01-01T01:00:00Z"), "is not after start"),
        (("--start", "2026-01-01T00:00:00Z", "--end", "2026-01-01T01:00:00Z", "--tables", "nope"), "'nope'"),
        (("--start", "2026-01-01T00:00:00Z", "--end", "2026-01-01T01:00:00Z", "--source", "x"), "'x' is not a conf"),
        (("--start", "2099-01-01T00:00:00Z", "--end", "2099-01-01T01:00:00Z"), "is not after start"),  # end: settled
        (("--start", "yesterdy",), "'yesterdy'"),
    ],
)  # fmt: skip
def test_verify_rejects_what_the_planner_would_in_one_line(args: tuple[str, ...], message: str) -> None:
    result = cdc_offline("verify", *args, "--config", str(DEMO))
    assert result.returncode == EXIT_BAD_INPUT
    assert message in result.stderr.strip().splitlines()[-1]  # one line (argparse prints its usage above it)
    assert "published" not in result.stdout


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (("retry",), "one of the arguments --task --failed is required"),
        (("retry", "--failed", "--task", "x"), "not allowed with argument"),
        (("status", "--at", "the day before"), "'the day before' is not an RFC 3339"),
        (("report",), "give --html PATH (the page), --json (its data), or both"),
        (("report", "--html", "x.html", "--windows", "3", "--since", "2026-01-01T00:00:00Z"), "not allowed with"),
    ],
)
def test_bad_arguments_exit_2(command: tuple[str, ...], message: str) -> None:
    result = cdc_offline(*command, "--config", str(DEMO))
    assert result.returncode == EXIT_BAD_INPUT
    assert message in result.stderr


def test_help_lists_the_operator_commands() -> None:
    top = cdc_offline("--help").stdout
    for command in ("status", "backfill", "retry", "report"):
        assert command in top
    backfill = cdc_offline("backfill", "--help").stdout
    for flag in ("--start", "--end", "--source", "--tables", "--force", "--offload", "--wait", "--timeout"):
        assert flag in backfill


# ---- status on a crafted queue ----------------------------------------------------------------------------


@pytest.mark.stack
def test_status_of_an_empty_pipeline_is_healthy(clean_stack, stack_env, tmp_path: Path, monkeypatch) -> None:
    use_config(tmp_path, stack_env, monkeypatch)
    result = cdc("status", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["healthy"] is True and report["failed"] == 0 and report["lagging"] == []
    assert list(_tables(report)) == ["(schema)", *TABLES]
    assert all(t["watermark"] is None and t["pending"] == 0 for t in _tables(report).values())
    text = cdc("status")
    assert text.returncode == 0 and text.stdout.rstrip().endswith("status: OK")


@pytest.mark.stack
def test_status_shows_watermarks_lag_queue_operation_and_errors(
    clean_stack, stack_env, tmp_path: Path, monkeypatch
) -> None:
    craft_queue(use_config(tmp_path, stack_env, monkeypatch))
    clock = T0 + HOUR * 3 + pendulum.duration(minutes=5)

    result = cdc("status", "--json", "--at", clock.isoformat())
    assert result.returncode == EXIT_UNHEALTHY, result.stderr
    report = json.loads(result.stdout)
    tables = _tables(report)
    assert report["failed"] == 1
    assert report["lagging"] == ["shop.orders"]  # 2h05m > 2h; the others are 1h05m behind
    assert tables["orders"]["watermark"] == (T0 + HOUR).isoformat()
    assert tables["orders"]["lag_seconds"] == 7500 and tables["orders"]["lagging"] is True
    assert tables["payments"]["watermark"] == (T0 + HOUR * 2).isoformat()
    assert tables["payments"]["lag_seconds"] == 3900 and tables["payments"]["lagging"] is False
    assert (tables["orders"]["pending"], tables["orders"]["running"], tables["orders"]["failed"]) == (1, 1, 1)
    assert (tables["payments"]["pending"], tables["payments"]["failed"]) == (2, 0)
    assert (tables["(schema)"]["pending"], tables["(schema)"]["running"]) == (1, 0)
    assert tables["orders"]["last_error"]["task"] == FAILED_TASK
    assert tables["orders"]["last_error"]["code"] == "INTERNAL_ERROR"
    assert tables["payments"]["last_error"]["task"] == RETRYING_TASK
    assert tables["payments"]["last_error"]["state"] == "pending"
    flight = report["sources"][0]["in_flight"]
    assert flight["task"] == RUNNING_TASK and flight["operation"] == OPERATION
    assert 0 <= flight["age_seconds"] < 120

    text = cdc("status", "--at", clock.isoformat())
    assert text.returncode == EXIT_UNHEALTHY
    assert f"in flight: {RUNNING_TASK} (running) operation {OPERATION}" in text.stdout
    assert "2h05m" in text.stdout and "LAGGING" in text.stdout
    assert f"    {FAILED_TASK}  attempt 1: INTERNAL_ERROR crafted <failure> & co" in text.stdout
    assert f"  to retry them: cdc retry --task {FAILED_TASK}" in text.stdout
    assert f"  retrying {RETRYING_TASK} after attempt 1: TransientApiError crafted 503" in text.stdout
    assert text.stdout.rstrip().endswith("status: UNHEALTHY (1 failed task(s); lagging: shop.orders)")
    assert [e["task"] for e in report["sources"][0]["failed_tasks"]] == [FAILED_TASK]


@pytest.mark.stack
def test_status_exit_code_follows_lag_alone(clean_stack, stack_env, tmp_path: Path, monkeypatch) -> None:
    crafted = craft_queue(use_config(tmp_path, stack_env, monkeypatch))
    assert crafted.state.requeue_failed([FAILED_TASK]) == [FAILED_TASK]
    early = cdc("status", "--json", "--at", (T0 + HOUR * 2).isoformat())
    assert early.returncode == 0, early.stdout
    late = cdc("status", "--json", "--at", (T0 + HOUR * 3 + pendulum.duration(minutes=1)).isoformat())
    assert late.returncode == EXIT_UNHEALTHY
    assert json.loads(late.stdout)["lagging"] == ["shop.orders"] and json.loads(late.stdout)["failed"] == 0


# ---- retry: refusals on a crafted queue -------------------------------------------------------------------


@pytest.mark.stack
def test_retry_refuses_unknown_and_unfailed_tasks(clean_stack, stack_env, tmp_path: Path, monkeypatch) -> None:
    crafted = craft_queue(use_config(tmp_path, stack_env, monkeypatch))
    unknown = cdc("retry", "--task", "shop.nope")
    assert unknown.returncode == EXIT_BAD_INPUT and "no task shop.nope" in unknown.stderr
    mixed = cdc("retry", "--task", FAILED_TASK, "--task", RUNNING_TASK)
    assert mixed.returncode == EXIT_BAD_INPUT
    assert f"{RUNNING_TASK} is running" in mixed.stderr
    assert crafted.state.get_task(FAILED_TASK).state == "failed"  # nothing re-queued
    retried = cdc("retry", "--task", FAILED_TASK, "--json")
    assert retried.returncode == 0, retried.stderr
    assert json.loads(retried.stdout) == {"requeued": [FAILED_TASK], "woken": [crafted.config.sources[0].instance]}


# ---- backfill --wait and retry through the running pipeline ----------------------------------------------


@pytest.fixture(scope="module")
def seeded(stack):
    return seed(stack.pg_dsn("postgres"), START, hours=HOURS, rows_per_table=ROWS_PER_TABLE)


@pytest.mark.stack
def test_backfill_wait_retry_and_forced_rerun(stack, clean_stack, seeded, tmp_path: Path) -> None:
    doc = demo_config()
    doc["worker"]["max_attempts"] = 2
    p = Pipeline(stack, doc, tmp_path / "config.json", None)
    p.faults(fail_uri_regex=r"orders_20261120T010000")
    start, end = START.isoformat(), START.add(hours=3).isoformat()

    result = cdc("backfill", "--start", start, "--end", end, "--wait", "--timeout", "120")
    assert result.returncode == EXIT_UNHEALTHY, result.stderr
    assert result.stdout.startswith("published backfill ")
    assert "3 window(s) x 4 table(s) + schema = 15 task(s)" in result.stdout
    failed = [t.id for t in p.state.tasks_in_state("failed")]
    assert failed == ["shop.20261120T010000.table.orders"]
    summary = result.stdout.rstrip().splitlines()[-3:]
    assert summary[0] == "done 14, failed 1, of 15"
    assert summary[1].startswith(f"failed {failed[0]} (attempt 2): INTERNAL_ERROR ")
    assert summary[2] == f"to retry: cdc retry --task {failed[0]}"
    progress = result.stderr.splitlines()
    assert re.fullmatch(r"\[#{30}\] 15/15  14 done, 1 failed  \d+s elapsed", progress[-1]), progress[-1]
    assert any(re.search(r", eta \d+", line) for line in progress[1:-1])
    assert cdc("status").returncode == EXIT_UNHEALTHY

    p.faults(fail_uri_regex=None)
    retried = cdc("retry", "--failed")
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout.splitlines() == [f"re-queued {failed[0]}", "woke cdc-local:shop-pg"]
    p.driver.wait_idle(expect_tasks=15)
    task = p.state.get_task(failed[0])
    assert task.state == "done" and task.generation == 2
    assert cdc("status").returncode == 0
    nothing = cdc("retry", "--failed")
    assert nothing.returncode == 0 and nothing.stdout.strip() == "no failed tasks: nothing to retry"

    # Everything is done already: nothing is published. --force re-exports, and --wait waits for that.
    again = cdc("backfill", "--start", start, "--end", end, "--wait")
    assert again.returncode == 0, again.stderr
    assert again.stdout == "nothing to do: 3 window(s) already exported (--force exports them again)\n"
    as_json = json.loads(cdc("backfill", "--start", start, "--end", end, "--json").stdout)
    assert as_json["published"] is None and as_json["skipped_windows"] == 3
    forced = cdc("backfill", "--start", start, "--end", START.add(hours=1).isoformat(), "--tables", "orders",
                 "--force", "--wait", "--timeout", "120", "--json")  # fmt: skip
    assert forced.returncode == 0, forced.stderr
    out = json.loads(forced.stdout)
    assert (out["windows"], out["tasks"], out["force"], out["complete"], out["failed"]) == (1, 2, True, True, [])
    assert out["progress"]["states"] == {"done": 2}
    rerun = p.state.get_tasks(["shop.20261120T000000.table.orders", "shop.20261120T000000.schema"])
    assert {t.generation for t in rerun.values()} == {2}
    assert all(t.state == "done" for t in rerun.values())

    # A forced re-export of a done window that fails: a warning (the data is there), not an unhealthy pipeline.
    p.faults(fail_uri_regex=r"orders_20261120T000000\.g3")
    broken = cdc("backfill", "--start", start, "--end", START.add(hours=1).isoformat(), "--tables", "orders",
                 "--force", "--wait", "--timeout", "120")  # fmt: skip
    assert broken.returncode == EXIT_UNHEALTHY
    assert "to retry: cdc retry --task shop.20261120T000000.table.orders" in broken.stdout
    after = cdc("status")
    assert after.returncode == 0, after.stdout
    assert "warning: re-export shop.20261120T000000.table.orders (generation 3) failed" in after.stdout
    assert after.stdout.rstrip().endswith("status: OK, 1 warning(s)")
    p.faults(fail_uri_regex=None)


@pytest.mark.stack
def test_backfill_wait_times_out_with_exit_3(stack, clean_stack, seeded, tmp_path: Path) -> None:
    p = Pipeline(stack, demo_config(), tmp_path / "config.json", None)
    p.foreign_operation("cdc-local:shop-pg", 30)  # the instance is busy: nothing can finish in time
    result = cdc("backfill", "--start", START.isoformat(), "--end", START.add(hours=1).isoformat(), "--wait",
                 "--timeout", "2")  # fmt: skip
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert "cdc: timed out after 2s" in result.stderr and "(the backfill goes on)" in result.stderr
