"""The planner's decisions, in-process (in-memory state, recording bus): what a tick, a backfill and a verification
queue, what they log (the log lines are what the alerts and operators read), and whom they wake."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pendulum
import pytest

from shared.app.planner import plan_backfill, plan_tick, plan_verify, verification_range
from shared.core.config import parse_config
from shared.core.messages import Backfill, Tick, Verify
from shared.core.tasks import BACKFILL_PRIORITY, LIVE_PRIORITY, task_id
from shared.testing.services import FakeServices

T0 = pendulum.datetime(2026, 1, 1, tz="UTC")
INSTANCE = "cdc-local:shop-pg"
OTHER = "cdc-local:other-pg"
ENVELOPE = ("severity", "message", "time")  # every log line's own fields


def doc(**source: Any) -> dict[str, Any]:
    base = {
        "name": "shop",
        "instance": INSTANCE,
        "database": "shop",
        "interval": "1h",
        "settle": "5m",
        "start": T0.isoformat(),
        "tables": [{"name": "orders"}, {"name": "payments"}],
    }
    return {
        "project": "cdc-local",
        "region": "europe-west1",
        "bucket": "cdc-exports",
        "lag_alert_seconds": 3600,
        "sources": [{**base, **source}],
    }


def services(at: pendulum.DateTime, config: dict[str, Any] | None = None) -> FakeServices:
    return FakeServices(parse_config(config or doc()), start=at)


def _untimed(entry: dict[str, Any]) -> dict[str, Any]:
    """A log entry without its `time` (the wall clock at logging, which no test can predict)."""
    return {k: v for k, v in entry.items() if k != "time"}


def logged(capsys: pytest.CaptureFixture[str], message: str | None = None) -> list[dict[str, Any]]:
    lines = [_untimed(json.loads(line)) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    return [entry for entry in lines if message is None or entry["message"] == message]


def tick(svc: FakeServices, at: pendulum.DateTime) -> None:
    plan_tick(Tick("tick", at, at), svc)


# --- ticks -------------------------------------------------------------------------------------------------------


def test_a_tick_queues_live_tasks_moves_the_cursor_and_logs_what_it_planned(
    capsys: pytest.CaptureFixture[str],
) -> None:
    at = T0.add(hours=2, minutes=5)
    svc = services(at, doc(offload=True))
    tick(svc, at)
    tasks = {t.id: t for t in svc.state.all_tasks()}
    assert set(tasks) == {
        task_id("shop", T0.add(hours=h), table) for h in range(2) for table in (None, "orders", "payments")
    }
    assert {(t.priority, t.backfill, t.offload) for t in tasks.values()} == {(LIVE_PRIORITY, False, True)}
    assert svc.state.get_cursor("shop") == T0.add(hours=2)
    assert svc.state.get_watermark("shop", "orders") == T0
    assert svc.bus.published == [INSTANCE]
    [planned] = logged(capsys, "live windows planned")
    assert planned["severity"] == "INFO"
    assert {k: planned[k] for k in ("source", "instance", "windows", "tasks_created")} == {
        "source": "shop",
        "instance": INSTANCE,
        "windows": 2,
        "tasks_created": 6,
    }
    assert (planned["clock"], planned["first_low"], planned["last_high"]) == (
        at.isoformat(),
        T0.isoformat(),
        T0.add(hours=2).isoformat(),
    )


def test_the_catchup_gap_is_logged_at_error_with_its_bounds_and_the_backfill_that_closes_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    at = T0.add(hours=5, minutes=5)
    svc = services(at, doc(catchup_cap=2))
    tick(svc, at)
    [gap] = logged(capsys, "catch-up beyond the cap: windows wait for later ticks")
    assert gap["severity"] == "ERROR"
    assert {k: gap[k] for k in ("source", "instance", "queued", "cap")} == {
        "source": "shop",
        "instance": INSTANCE,
        "queued": 2,
        "cap": 2,
    }
    assert (gap["gap_low"], gap["gap_high"]) == (T0.add(hours=2).isoformat(), T0.add(hours=5).isoformat())
    assert gap["hint"] == (
        f"they are queued 2 per tick; to go faster, backfill start={T0.add(hours=2).isoformat()} "
        f"end={T0.add(hours=5).isoformat()}"
    )
    tick(svc, at)
    assert svc.state.get_cursor("shop") == T0.add(hours=4)
    [gap] = logged(capsys, "catch-up beyond the cap: windows wait for later ticks")
    assert (gap["gap_low"], gap["gap_high"], gap["queued"]) == (
        T0.add(hours=4).isoformat(),
        T0.add(hours=5).isoformat(),
        2,
    )
    tick(svc, at)
    assert svc.state.get_cursor("shop") == T0.add(hours=5)
    assert logged(capsys, "catch-up beyond the cap: windows wait for later ticks") == []


def test_a_caught_up_tick_plans_nothing_and_wakes_only_instances_with_open_tasks(
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = doc()
    other = {"name": "other", "instance": OTHER, "database": "other", "tables": [{"name": "events"}]}
    config["sources"].append({**config["sources"][0], **other})
    at = T0.add(hours=1, minutes=5)
    svc = services(at, config)
    tick(svc, at)
    assert svc.bus.published == [INSTANCE, OTHER]
    for task in svc.state.all_tasks():
        if task.instance == OTHER:
            svc.state.tasks[task.id] = replace(task, state="done")
    svc.bus.published.clear()
    capsys.readouterr()
    tick(svc, at.add(minutes=30))  # nothing new is due
    assert logged(capsys, "live windows planned") == []
    assert svc.bus.published == [INSTANCE]


def test_table_lag_is_info_within_the_threshold_and_error_beyond(capsys: pytest.CaptureFixture[str]) -> None:
    at = T0.add(hours=1, minutes=5)
    svc = services(at)
    tick(svc, at)  # watermarks start at T0, 3900 s behind
    lags = [e for e in logged(capsys) if e["message"].startswith("table lag")]
    assert [(e["table"], e["severity"], e["message"], e["lag_seconds"]) for e in lags] == [
        ("orders", "ERROR", "table lag over threshold", 3900.0),
        ("payments", "ERROR", "table lag over threshold", 3900.0),
    ]
    # exactly at the threshold is still fine; one second over is an ERROR
    svc.state.watermark_values[("shop", "orders")] = at.subtract(seconds=3600)
    svc.state.watermark_values[("shop", "payments")] = at.subtract(seconds=3601)
    capsys.readouterr()
    plan_tick(Tick("t2", at, at), svc)
    entries = [e for e in logged(capsys) if e["message"].startswith("table lag")]
    assert [(e["table"], e["severity"], e["message"], e["lag_seconds"]) for e in entries] == [
        ("orders", "INFO", "table lag", 3600.0),
        ("payments", "ERROR", "table lag over threshold", 3601.0),
    ]
    for entry in entries:
        assert (entry["source"], entry["instance"], entry["threshold_seconds"]) == ("shop", INSTANCE, 3600)
    assert entries[1]["watermark"] == at.subtract(seconds=3601).isoformat()


def test_a_table_without_a_watermark_logs_no_lag_and_the_others_still_do(capsys: pytest.CaptureFixture[str]) -> None:
    at = T0.add(hours=1, minutes=5)
    svc = services(at)
    svc.state.watermark_values[("shop", "payments")] = T0
    svc.state.cursors["shop"] = T0.add(hours=1)  # nothing due: init_watermark is not called
    plan_tick(Tick("t", at, at), svc)
    assert [e["table"] for e in logged(capsys) if e["message"].startswith("table lag")] == ["payments"]


# --- backfills ---------------------------------------------------------------------------------------------------


def backfill(svc: FakeServices, *, force: bool, tables: tuple[str, ...], offload: bool, mid: str = "bf-1") -> None:
    at = svc.clock.now()
    plan_backfill(Backfill(mid, at, T0, T0.add(hours=2), "shop", tables, force, offload), svc)


def test_a_backfill_queues_only_its_tables_behind_live_work_and_logs_its_counts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    svc = services(T0.add(hours=6))
    backfill(svc, force=False, tables=("orders",), offload=True)
    tasks = svc.state.all_tasks()
    assert sorted(t.id for t in tasks) == sorted(
        task_id("shop", T0.add(hours=h), table) for h in range(2) for table in (None, "orders")
    )
    assert {(t.priority, t.backfill, t.offload, t.force_token) for t in tasks} == {
        (BACKFILL_PRIORITY, True, True, None)
    }
    assert svc.state.get_cursor("shop") is None and svc.state.get_watermark("shop", "orders") is None
    assert svc.bus.published == [INSTANCE]
    [planned] = logged(capsys, "backfill planned")
    assert {k: planned[k] for k in planned if k not in ENVELOPE} == {
        "source": "shop",
        "instance": INSTANCE,
        "start": T0.isoformat(),
        "end": T0.add(hours=2).isoformat(),
        "windows": 2,
        "tasks_created": 4,
        "tasks_forced": 0,
        "tasks_existing": 0,
        "document_reads": 0,  # create-only writes: a backfill reads no task
        "document_writes": 4,
        "seconds": 0.0,  # the fake clock does not move
        "message_id": "bf-1",
    }


def test_only_a_forced_backfill_requeues_finished_windows(capsys: pytest.CaptureFixture[str]) -> None:
    svc = services(T0.add(hours=6))
    backfill(svc, force=False, tables=("orders",), offload=False)
    for task in svc.state.all_tasks():
        svc.state.tasks[task.id] = replace(task, state="done")
    backfill(svc, force=False, tables=("orders",), offload=False, mid="bf-2")
    assert {t.state for t in svc.state.all_tasks()} == {"done"}
    backfill(svc, force=True, tables=("orders",), offload=False, mid="bf-3")
    assert {(t.state, t.generation, t.force_token) for t in svc.state.all_tasks()} == {("pending", 2, "bf-3")}
    counts = [(e["tasks_created"], e["tasks_forced"], e["tasks_existing"]) for e in logged(capsys, "backfill planned")]
    assert counts == [(4, 0, 0), (0, 0, 4), (0, 4, 4)]


def test_a_backfill_longer_than_the_configured_limit_is_refused() -> None:
    config = doc()
    config["backfill"] = {"max_windows": 1}
    svc = services(T0.add(hours=6), config)
    with pytest.raises(Exception) as e:
        backfill(svc, force=False, tables=("orders",), offload=False)
    assert "more than 1 windows" in e.value.problem
    assert svc.state.all_tasks() == []


# --- verification ------------------------------------------------------------------------------------------------


def test_verification_range_is_the_lookback_before_the_latest_settled_multiple_of_every() -> None:
    config = parse_config(doc(verify=[{"every": "2h", "lookback": "3h"}], start=T0.subtract(days=1).isoformat()))
    source = config.sources[0]
    rule = source.verify[0]
    # settled through T0+5h at T0+5h05m; the latest multiple of 2h is T0+4h; the lookback is 3h
    assert verification_range(source, rule, T0.add(hours=5, minutes=5)) == (T0.add(hours=1), T0.add(hours=4))
    # one second earlier nothing later settled: the same range (idempotent between multiples)
    assert verification_range(source, rule, T0.add(hours=5, minutes=4)) == (T0.add(hours=1), T0.add(hours=4))
    # never before the source's start; nothing at all when the range would be empty
    late = parse_config(doc(verify=[{"every": "2h", "lookback": "3h"}], start=T0.add(hours=2).isoformat())).sources[0]
    assert verification_range(late, rule, T0.add(hours=5, minutes=5)) == (T0.add(hours=2), T0.add(hours=4))
    assert verification_range(late, rule, T0.add(hours=3, minutes=5)) is None  # [2h, 2h) is empty
    assert verification_range(late, rule, T0.add(hours=2, minutes=5)) is None


def test_a_verification_range_starts_at_the_source_start_only_when_one_is_set() -> None:
    config = doc(verify=[{"every": "1h", "lookback": "2h"}])
    del config["sources"][0]["start"]
    source = parse_config(config).sources[0]
    assert source.start is None
    assert verification_range(source, source.verify[0], T0.add(hours=5, minutes=5)) == (
        T0.add(hours=3),
        T0.add(hours=5),
    )


def test_a_tick_plans_scheduled_verification_once_per_period(capsys: pytest.CaptureFixture[str]) -> None:
    at = T0.add(hours=4, minutes=5)
    svc = services(at, doc(verify=[{"every": "2h", "lookback": "2h"}]))
    tick(svc, at)
    verify = sorted((t.table, t.low, t.high, t.priority) for t in svc.state.all_tasks() if t.purpose == "verify")
    assert verify == [
        ("orders", T0.add(hours=2), T0.add(hours=4), BACKFILL_PRIORITY),
        ("payments", T0.add(hours=2), T0.add(hours=4), BACKFILL_PRIORITY),
    ]
    [planned] = logged(capsys, "verification planned")
    assert {k: planned[k] for k in planned if k not in ENVELOPE} == {
        "source": "shop",
        "instance": INSTANCE,
        "window_low": T0.add(hours=2).isoformat(),
        "window_high": T0.add(hours=4).isoformat(),
        "tables": 2,
        "every_seconds": 7200.0,
    }
    tick(svc, at.add(minutes=30))  # same period: nothing new, nothing logged
    assert logged(capsys, "verification planned") == []
    assert len([t for t in svc.state.all_tasks() if t.purpose == "verify"]) == 2


def test_scheduled_verification_goes_on_to_the_next_rule_when_one_has_nothing_to_do() -> None:
    at = T0.add(hours=2, minutes=5)
    rules = [{"every": "1d", "lookback": "1d"}, {"every": "1h", "lookback": "1h"}]
    svc = services(at, doc(verify=rules))
    tick(svc, at)
    verify = {(t.low, t.high) for t in svc.state.all_tasks() if t.purpose == "verify"}
    assert verify == {(T0.add(hours=1), T0.add(hours=2))}


def test_an_on_demand_verification_queues_its_tables_and_wakes_the_instance(
    capsys: pytest.CaptureFixture[str],
) -> None:
    at = T0.add(hours=6)
    svc = services(at)
    plan_verify(Verify("v-1", at, T0, T0.add(hours=3), "shop", ("payments",)), svc)
    [task] = svc.state.all_tasks()
    assert (task.purpose, task.table, task.low, task.high, task.priority) == (
        "verify",
        "payments",
        T0,
        T0.add(hours=3),
        BACKFILL_PRIORITY,
    )
    assert svc.bus.published == [INSTANCE]
    [planned] = logged(capsys, "verification planned")
    assert {k: planned[k] for k in planned if k not in ENVELOPE} == {
        "source": "shop",
        "instance": INSTANCE,
        "window_low": T0.isoformat(),
        "window_high": T0.add(hours=3).isoformat(),
        "tables": 1,
        "tasks_created": 1,
        "message_id": "v-1",
    }


def test_each_on_demand_verification_request_runs_and_a_redelivery_adds_nothing() -> None:
    at = T0.add(hours=6)
    svc = services(at)
    request = Verify("v-1", at, T0, T0.add(hours=3), "shop", ("payments",))
    plan_verify(request, svc)
    plan_verify(request, svc)  # the same message redelivered
    plan_verify(Verify("v-2", at, T0, T0.add(hours=3), "shop", ("payments",)), svc)
    assert sorted(t.id for t in svc.state.all_tasks()) == [
        "shop.20260101T000000.verify.payments.20260101T030000.v-1",
        "shop.20260101T000000.verify.payments.20260101T030000.v-2",
    ]
