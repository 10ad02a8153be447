"""The chain's hard cases, in-process: in-memory state, fake Admin API and bucket, fake clock (shared/testing).

Each test runs in milliseconds of real time while hours pass on the fake clock. The emulator-stack tests
prove the real clients; these prove the logic: recovery after each crash point, a lease lost mid-poll, busy
backoff, a live task arriving while a backfill task is prefetched, tasks that cannot render, re-exports that
never overwrite, the planner's catch-up cap and watermarks that never move back.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pendulum
import pytest

from shared.app import hooks
from shared.app.lease import LeasePolicy, decide_acquire
from shared.app.planner import plan_backfill, plan_tick
from shared.app.worker import run_work
from shared.core.config import Config, parse_config
from shared.core.errors import LeaseLost, LeaseSuspect
from shared.core.messages import Backfill, Tick
from shared.core.tasks import BACKFILL_PRIORITY, LIVE_PRIORITY, window_tasks
from shared.core.templates import Templates
from shared.core.windows import Window
from shared.testing.memory_state import InMemoryState
from shared.testing.services import FakeServices

T0 = pendulum.datetime(2026, 1, 1, tz="UTC")
HOUR = pendulum.duration(hours=1)
INSTANCE = "cdc-local:shop-pg"
TABLES = ("orders", "payments")
# The window's schema snapshot as information_schema lists it (table order), for the templates under templates/.
SCHEMA_CSV = b"".join(
    f"{table},{column},{kind},{i},{'NO' if i < 3 else 'YES'}\n".encode()
    for table, columns in {
        "orders": "note:text id:bigint event_timestamp:timestamptz customer_id:bigint amount:numeric currency:text",
        "payments": "id:bigint event_timestamp:timestamptz order_id:bigint method:text amount:numeric status:text",
    }.items()
    for i, (column, kind) in enumerate((c.split(":") for c in columns.split()), start=1)
)
TEMPLATES = Templates()


def config_doc(**worker: Any) -> dict[str, Any]:
    return {
        "project": "cdc-local",
        "region": "europe-west1",
        "bucket": "cdc-exports",
        "worker": {"lease_seconds": 60, "budget_seconds": 300, **worker},
        "sources": [
            {
                "name": "shop",
                "instance": INSTANCE,
                "database": "shop",
                "interval": "1h",
                "settle": "5m",
                "start": T0.isoformat(),
                "tables": [{"name": t} for t in TABLES],
            }
        ],
    }


def content(body: dict[str, Any]) -> bytes:
    query = body["exportContext"]["csvExportOptions"]["selectQuery"]
    return SCHEMA_CSV if "information_schema" in query else b"1,a\n"


def services(config: Config | None = None, *, duration: float = 2.0) -> FakeServices:
    return FakeServices(
        config or parse_config(config_doc()), start=T0.add(hours=3, minutes=10), duration=duration, content=content
    )


def tick(svc: FakeServices) -> None:
    plan_tick(Tick("tick-1", svc.clock.now(), svc.clock.now()), svc)
    svc.bus.published.clear()


@pytest.fixture(autouse=True)
def no_hooks() -> Iterator[None]:
    yield
    hooks.install(None)


def assert_complete(svc: FakeServices, windows: int) -> None:
    """Every task done, one object per (table, window) and no second generation, watermarks at the end."""
    tasks = svc.state.all_tasks()
    assert len(tasks) == windows * (1 + len(TABLES))
    assert {t.state for t in tasks} == {"done"}
    assert all(t.finalized for t in tasks)
    exported = [k for k in svc.objects.data if "/raw/" in k or "/schemas/" in k]
    assert len(exported) == len(tasks) and not [k for k in exported if ".g2" in k]
    assert svc.sqladmin.overwrite_attempts == 0
    for table in TABLES:
        assert svc.state.get_watermark("shop", table) == T0 + HOUR * windows
    assert len(svc.state.manifests()) == windows


def test_happy_path_exports_every_window_once_and_writes_manifests() -> None:
    svc = services()
    tick(svc)
    assert len(svc.state.all_tasks()) == 3 * 3
    results = svc.drain(INSTANCE, TEMPLATES)
    assert_complete(svc, 3)
    assert sum(r.submitted for r in results if r) == 9
    assert sum(r.busy for r in results if r) == 0
    manifest = svc.state.manifests()[0]
    orders = manifest["objects"][0]
    assert [c["name"] for c in orders["columns"]][:2] == ["id", "event_timestamp"]  # the query's order
    assert orders["columns"][-1] == {"name": "note", "type": "text", "nullable": False}
    assert orders["rows"] == 1 and orders["bytes"] == len(b"1,a\n")
    assert svc.state.get_lease(INSTANCE) is None  # released


class Crash(BaseException):
    """Stands for SIGKILL: raised at a crash point; the test then restores the lease the dead holder held."""


@pytest.mark.parametrize("point", hooks.CRASH_POINTS)
def test_recovery_after_a_crash_at_each_point(point: str) -> None:
    svc = services()
    tick(svc)
    seen: dict[str, Any] = {}

    def crash_once(reached: str) -> None:
        if reached == point and "lease" not in seen:
            seen["lease"] = copy.deepcopy(svc.state.leases)
            raise Crash(reached)

    hooks.install(crash_once)
    work = svc.work(INSTANCE, "m-crashed")
    with pytest.raises(Crash):
        run_work(work, svc, TEMPLATES)
    hooks.install(None)
    svc.state.leases = seen["lease"]  # a killed process releases nothing
    assert svc.state.get_lease(INSTANCE) is not None
    # Pub/Sub redelivers the same message: it waits out the dead holder's lease, takes it over and hands the
    # chain to a fresh message.
    assert run_work(work, svc, TEMPLATES) is None
    assert svc.bus.published == [INSTANCE]
    svc.bus.published.clear()
    svc.drain(INSTANCE, TEMPLATES)
    assert_complete(svc, 3)
    assert svc.sqladmin.exported == sorted(set(svc.sqladmin.exported), key=svc.sqladmin.exported.index)


def test_a_message_other_than_the_dead_holders_is_retried_not_acknowledged() -> None:
    svc = services()
    tick(svc)
    svc.state.acquire_lease(INSTANCE, "m-dead/abc", 60, svc.clock.now().subtract(seconds=45))
    with pytest.raises(LeaseSuspect) as e:
        run_work(svc.work(INSTANCE), svc, TEMPLATES)
    assert e.value.instance == INSTANCE and e.value.holder == "m-dead/abc"


def test_a_live_lease_is_refused_to_a_second_holder_and_an_expired_one_is_taken() -> None:
    now = T0
    first = decide_acquire(None, "a/1", 60, now)
    assert first.acquired and first.expires == now.add(seconds=60)
    refused = decide_acquire(first, "b/2", 60, now.add(seconds=59))
    assert not refused.acquired and refused.holder == "a/1"
    taken = decide_acquire(first, "b/2", 60, now.add(seconds=60))
    assert taken.acquired and taken.previous_holder == "a/1" and taken.takeovers == 1
    state = InMemoryState()
    assert state.acquire_lease(INSTANCE, "a/1", 60, now).acquired
    assert not state.acquire_lease(INSTANCE, "b/2", 60, now.add(seconds=30)).acquired
    assert state.get_lease(INSTANCE).holder == "a/1"
    assert not state.renew_lease(INSTANCE, "b/2", 60, now.add(seconds=59))
    assert state.acquire_lease(INSTANCE, "b/2", 60, now.add(seconds=61)).acquired
    assert not state.renew_lease(INSTANCE, "a/1", 60, now.add(seconds=62))


def test_a_lease_lost_mid_poll_stops_the_chain_before_it_touches_anything() -> None:
    svc = services(duration=120)
    tick(svc)
    policy = LeasePolicy(60)

    def steal(point: str) -> None:
        if point == "mid_poll" and svc.state.get_lease(INSTANCE).holder != "thief/1":
            svc.clock.advance(policy.ttl + 1)  # our heartbeat was late (a hung call): the lease expired
            assert svc.state.acquire_lease(INSTANCE, "thief/1", policy.ttl, svc.clock.now()).acquired

    hooks.install(steal)
    assert run_work(svc.work(INSTANCE), svc, TEMPLATES) is None  # LeaseLost is logged, not raised
    tasks = svc.state.all_tasks()
    # The export in flight, and its successor claimed ahead (before the lease was lost), never sent: the new
    # holder's recovery puts it back in the queue.
    assert sorted(t.state for t in tasks if t.state != "pending") == ["running", "submitting"]
    assert len(svc.sqladmin.exported) == 1  # nothing more was submitted after the lease was gone
    assert svc.state.get_lease(INSTANCE).holder == "thief/1"  # and the thief's lease was not released
    assert svc.bus.published == []


def test_lease_keeper_raises_lease_lost_with_its_context() -> None:
    from shared.app.lease import LeaseKeeper

    svc = services()
    policy = LeasePolicy(60)
    lease = svc.state.acquire_lease(INSTANCE, "me/1", 60, svc.clock.now())
    keeper = LeaseKeeper(svc.state, svc.clock, INSTANCE, "me/1", policy, lease.epoch)
    svc.clock.advance(61)
    svc.state.acquire_lease(INSTANCE, "other/2", 60, svc.clock.now())
    with pytest.raises(LeaseLost) as e:
        keeper.pause(1)
    assert (e.value.instance, e.value.holder) == (INSTANCE, "me/1")


def test_busy_instance_backs_off_without_burning_attempts() -> None:
    svc = services()
    tick(svc)
    svc.sqladmin.busy_for(INSTANCE, 20)
    results = svc.drain(INSTANCE, TEMPLATES)
    assert sum(r.busy for r in results if r) >= 2
    assert_complete(svc, 3)
    assert {t.attempts for t in svc.state.all_tasks()} == {1}
    assert svc.clock.slept >= 20


def test_a_live_task_queued_mid_poll_goes_before_the_prefetched_backfill() -> None:
    config = parse_config(config_doc())
    svc = services(config)
    source = config.sources[0]
    old = [Window(T0.subtract(hours=h + 1), T0.subtract(hours=h)) for h in range(3)]
    svc.state.create_tasks(window_tasks(source, old, priority=BACKFILL_PRIORITY, offload=False))
    live = Window(T0, T0 + HOUR)
    queued: list[bool] = []

    def queue_live(point: str) -> None:
        # While the first backfill export runs, the chain prefetches the next backfill task; then a tick
        # queues a live window.
        if point == "mid_poll" and len(svc.sqladmin.calls) >= 3 and not queued:
            svc.state.create_tasks(window_tasks(source, [live], priority=LIVE_PRIORITY, offload=False))
            queued.append(True)

    hooks.install(queue_live)
    svc.drain(INSTANCE, TEMPLATES)
    exported = svc.sqladmin.exported
    live_at = [i for i, uri in enumerate(exported) if "20260101T000000" in uri]
    assert queued and live_at == [1, 2, 3]  # right after the export that was running, before other backfill
    assert {t.state for t in svc.state.all_tasks()} == {"done"}
    # The backfill task claimed ahead while the first export ran gave way, its attempt given back.
    assert {t.attempts for t in svc.state.all_tasks()} == {1}


def test_a_task_that_cannot_render_fails_alone_and_the_chain_goes_on() -> None:
    doc = config_doc()
    doc["sources"][0]["tables"][1]["template"] = "missing.sql"
    svc = services(parse_config(doc))
    tick(svc)
    svc.drain(INSTANCE, TEMPLATES)
    states = {(t.table, t.state) for t in svc.state.all_tasks()}
    assert states == {(None, "done"), ("orders", "done"), ("payments", "failed")}
    failed = svc.state.tasks_in_state("failed")[0]
    assert failed.error["code"] == "TemplateError" and failed.error["template"] == "missing.sql"
    assert svc.state.get_watermark("shop", "orders") == T0 + HOUR * 3
    assert svc.state.get_watermark("shop", "payments") == T0


def test_a_task_submitting_at_a_crash_that_can_no_longer_render_fails_instead_of_killing_recovery() -> None:
    """A deploy dropped a table's template while its task was being submitted: recovery fails that task and
    the chain exports the rest (before, every invocation raised and the chain was dead)."""
    svc = services()
    tick(svc)
    task = svc.state.next_pending(INSTANCE)[1]  # orders, first window
    assert task.table == "orders"
    svc.state.claim(task, uri="gs://cdc-exports/cdc/raw/orders/x.csv", generation=1, now=svc.clock.now())
    doc = config_doc()
    doc["sources"][0]["tables"][0]["template"] = "gone.sql"
    svc.config = parse_config(doc)
    svc.drain(INSTANCE, TEMPLATES)
    failed = svc.state.get_task(task.id)
    assert failed.state == "failed" and failed.error["template"] == "gone.sql"
    assert {t.state for t in svc.state.all_tasks() if t.table == "payments"} == {"done"}


def test_a_task_whose_table_left_the_config_fails_with_its_context() -> None:
    svc = services()
    tick(svc)
    doc = config_doc()
    doc["sources"][0]["tables"] = [{"name": "orders"}]
    svc.config = parse_config(doc)
    svc.drain(INSTANCE, TEMPLATES)
    failed = svc.state.tasks_in_state("failed")
    assert {t.table for t in failed} == {"payments"} and len(failed) == 3
    assert {t.error["code"] for t in failed} == {"TaskConfigMissing"}
    assert "payments" in failed[0].error["message"] and "restore it in the config" in failed[0].error["message"]


def test_a_failed_operation_that_left_its_object_is_retried_as_generation_two_without_overwriting() -> None:
    svc = services()
    tick(svc)
    svc.sqladmin.fail_next("INTERNAL_ERROR", "the export failed after writing", leave_object=True)
    svc.drain(INSTANCE, TEMPLATES)
    first = svc.sqladmin.exported[0]
    retried = [uri for uri in svc.sqladmin.exported if uri.replace(".g2", "") == first]
    assert retried == [first, first.replace(".csv", ".g2.csv")]
    assert svc.sqladmin.overwrite_attempts == 0
    task = next(t for t in svc.state.all_tasks() if t.uri and t.uri.endswith(".g2.csv"))
    assert task.state == "done" and task.generation == 2 and task.attempts == 2


def test_a_failed_operation_without_an_object_is_retried_under_the_same_name() -> None:
    svc = services()
    tick(svc)
    svc.sqladmin.fail_next("ERROR_RDBMS", "relation does not exist")
    svc.drain(INSTANCE, TEMPLATES)
    first = svc.sqladmin.exported[0]
    assert svc.sqladmin.exported.count(first) == 2 and not any(".g2" in u for u in svc.sqladmin.exported)
    assert_complete(svc, 3)


def test_an_operation_that_vanishes_after_writing_its_object_moves_to_a_new_generation() -> None:
    svc = services(duration=5)
    tick(svc)
    forgotten: list[str] = []

    def vanish(point: str) -> None:
        # The running export's name stops resolving; the export still finishes and writes its object.
        if point != "mid_poll" or forgotten:
            return
        newest = svc.sqladmin.list_operations("cdc-local", "shop-pg")[0]
        if not newest.done:
            svc.sqladmin.forget(newest.name)
            forgotten.append(newest.uri or "")
            svc.clock.advance(5)

    hooks.install(vanish)
    svc.drain(INSTANCE, TEMPLATES)
    assert forgotten and forgotten[0].replace(".csv", ".g2.csv") in svc.sqladmin.exported
    assert svc.sqladmin.overwrite_attempts == 0
    assert {t.state for t in svc.state.all_tasks()} == {"done"}


def test_catchup_cap_queues_cap_windows_per_tick_and_logs_the_gap(capsys: pytest.CaptureFixture[str]) -> None:
    doc = config_doc()
    doc["sources"][0]["catchup_cap"] = 2
    svc = FakeServices(parse_config(doc), start=T0.add(hours=5, minutes=10))
    tick(svc)
    lows = sorted({t.low for t in svc.state.all_tasks()})
    assert lows == [T0, T0 + HOUR]
    errors = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"ERROR"' in line]
    gap = next(e for e in errors if e["message"].startswith("catch-up beyond the cap"))
    assert (gap["gap_low"], gap["gap_high"]) == ((T0 + HOUR * 2).isoformat(), (T0 + HOUR * 5).isoformat())
    assert gap["queued"] == 2 and gap["cap"] == 2
    tick(svc)
    assert sorted({t.low for t in svc.state.all_tasks()}) == [T0 + HOUR * i for i in range(4)]
    tick(svc)
    assert sorted({t.low for t in svc.state.all_tasks()}) == [T0 + HOUR * i for i in range(5)]


def test_a_backfill_ahead_of_the_planner_never_moves_a_watermark_back() -> None:
    svc = services()
    tick(svc)
    svc.drain(INSTANCE, TEMPLATES)
    assert svc.state.get_watermark("shop", "orders") == T0 + HOUR * 3
    now = svc.clock.now()
    request = Backfill("bf-1", now, T0, T0 + HOUR * 3, "shop", TABLES, force=True, offload=False)
    plan_backfill(request, svc)
    svc.bus.published.clear()
    svc.drain(INSTANCE, TEMPLATES)
    svc.clock.advance(3600)
    tick(svc)
    svc.drain(INSTANCE, TEMPLATES)
    history = svc.state.watermark_history()
    assert all(entry["to"] > entry["from"] for entry in history)
    for table in TABLES:
        assert svc.state.get_watermark("shop", table) == T0 + HOUR * 4
    forced = [t for t in svc.state.all_tasks() if t.generation == 2]
    assert len(forced) == 3 * 3 and {t.state for t in forced} == {"done"}


def test_a_crash_after_the_successor_went_out_recovers_both_without_waiting_behind_it() -> None:
    """The chain submits the next export the moment the current one is DONE, and records the finished one after.
    Killed in between, the redelivery finds two exports: the finished one (its bookkeeping still owed) and the
    successor, still running. Recovery records the first and polls the second; it must not claim a third task
    and back off behind the successor's 409 (before: it did, leaving the successor unpolled for the backoff)."""
    svc = services()
    tick(svc)
    seen: dict[str, Any] = {}

    def crash_once(reached: str) -> None:
        if reached == "after_successor" and "lease" not in seen:
            seen["lease"] = copy.deepcopy(svc.state.leases)
            raise Crash(reached)

    hooks.install(crash_once)
    work = svc.work(INSTANCE, "m-crashed")
    with pytest.raises(Crash):
        run_work(work, svc, TEMPLATES)
    hooks.install(None)
    svc.state.leases = seen["lease"]
    states = sorted(t.state for t in svc.state.all_tasks() if t.state != "pending")
    assert states == ["running", "running"]  # the finished export (DONE, not recorded) and its successor
    assert run_work(work, svc, TEMPLATES) is None  # the redelivery hands the chain to a fresh message
    svc.bus.published.clear()
    results = svc.drain(INSTANCE, TEMPLATES)
    assert sum(r.busy for r in results if r) == 0  # nothing was submitted while the successor ran
    assert results[0] is not None and results[0].recovered >= 2
    assert_complete(svc, 3)
    assert len(svc.sqladmin.exported) == len(set(svc.sqladmin.exported)) == 9


def test_a_refused_successor_does_not_hold_back_the_finished_exports_bookkeeping() -> None:
    """The finished export is recorded after its successor went out; if that submit has to wait (here the
    instance stops right as the export ends: 400 not running, the breaker pauses the chain), the finished export
    is recorded before the wait, not after it."""
    svc = services()
    tick(svc)
    first: dict[str, Any] = {}

    def at(point: str) -> None:
        done = [op for op in svc.sqladmin._operations.values() if op.ended is not None]
        if point == "mid_poll" and done and "refused" not in first:
            first["refused"] = True
            svc.sqladmin.refuse(INSTANCE, "not running", 90)
        if point == "after_successor" and "state" not in first:
            task = next(t for t in svc.state.all_tasks() if t.operation == done[0].name)
            first["state"], first["finalized"] = task.state, task.finalized

    hooks.install(at)
    svc.drain(INSTANCE, TEMPLATES)
    assert first == {"refused": True, "state": "done", "finalized": True}
    assert_complete(svc, 3)


def test_a_successor_claimed_ahead_goes_back_to_the_queue_when_the_budget_ends_first() -> None:
    """Claimed while the export before it runs, never sent: pending again, its attempt given back."""
    svc = services(parse_config(config_doc(budget_seconds=60)), duration=100)
    tick(svc)
    assert run_work(svc.work(INSTANCE), svc, TEMPLATES) is not None
    tasks = svc.state.all_tasks()
    assert sorted(t.state for t in tasks if t.state != "pending") == ["running"]
    assert [t.attempts for t in tasks if t.state == "pending"] == [0] * (len(tasks) - 1)
    assert len(svc.sqladmin.exported) == 1
    svc.drain(INSTANCE, TEMPLATES, max_invocations=200)
    assert_complete(svc, 3)
    assert {t.attempts for t in svc.state.all_tasks()} == {1}
