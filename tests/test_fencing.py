"""Fencing: a call that hangs longer than the lease (the Admin client can retry for minutes) acts on nothing once
it returns; the new holder carries the chain and adopts what the old one started."""

from __future__ import annotations

from typing import Any

from shared.app.planner import plan_tick
from shared.app.worker import run_work
from shared.core.config import parse_config
from shared.core.messages import Tick
from shared.core.templates import Templates
from shared.testing.services import FakeServices
from tests.test_chain import INSTANCE, T0, config_doc, content


def test_an_export_call_that_hung_past_the_lease_changes_nothing_and_the_new_holder_adopts_it() -> None:
    """Defect (before): the old holder recorded the operation and went on while the new holder also worked the
    same task (a second export, an orphan `.g2` object, or a task wrongly failed)."""
    svc = FakeServices(parse_config(config_doc()), start=T0.add(hours=1, minutes=10), content=content)
    plan_tick(Tick("t", svc.clock.now(), svc.clock.now()), svc)
    svc.bus.published.clear()
    real_export = svc.sqladmin.export
    hung: list[bool] = []

    def hanging_export(project: str, instance: str, body: dict[str, Any]) -> Any:
        operation = real_export(project, instance, body)
        if not hung:  # the first call hangs for two minutes; meanwhile another worker takes the expired lease
            hung.append(True)
            svc.clock.advance(120)
            assert svc.state.acquire_lease(INSTANCE, "other/1", 60, svc.clock.now()).acquired
        return operation

    svc.sqladmin.export = hanging_export  # type: ignore[method-assign]
    assert run_work(svc.work(INSTANCE), svc, Templates()) is None  # stopped by LeaseLost, acknowledged
    stuck = [t for t in svc.state.all_tasks() if t.state != "pending"]
    assert [(t.state, t.operation) for t in stuck] == [("submitting", None)]  # the old holder recorded nothing
    assert len(svc.sqladmin.exported) == 1
    # The new holder's invocation (its lease has expired by now) recovers: it adopts the running export by its
    # uri instead of submitting a second one, and the chain finishes.
    svc.clock.advance(61)
    svc.drain(INSTANCE, Templates())
    assert {t.state for t in svc.state.all_tasks()} == {"done"}
    assert len(svc.sqladmin.exported) == len(set(svc.sqladmin.exported)) == 3
    assert svc.sqladmin.overwrite_attempts == 0


def test_an_export_a_stale_holder_ran_during_the_breaker_pause_is_adopted_not_overwritten() -> None:
    """Found by the fault suite: while the new holder waited out a refusal (its breaker pause), the holder it had
    taken the lease from woke up and exported the same task. After the pause the new holder exported again to the
    same uri: refused by the API as an overwrite. It now looks for an export of the uri before every retry."""
    svc = FakeServices(parse_config(config_doc()), start=T0.add(hours=1, minutes=10), content=content)
    plan_tick(Tick("t", svc.clock.now(), svc.clock.now()), svc)
    svc.bus.published.clear()
    svc.sqladmin.refuse(INSTANCE, "not running", seconds=3)
    real_sleep = svc.clock.sleep
    stale: list[str] = []

    def sleep(seconds: float) -> None:
        if not stale and svc.state.breaker(INSTANCE) is not None:
            # The stale holder's export of the claimed task, accepted once the instance is back, finishes.
            claimed = next(t for t in svc.state.all_tasks() if t.state == "submitting")
            svc.clock.advance(3)
            body = {"exportContext": {"uri": claimed.uri, "csvExportOptions": {"selectQuery": "SELECT 1"}}}
            stale.append(svc.sqladmin.export("cdc-local", "shop-pg", body).name)
            svc.clock.advance(5)
        real_sleep(seconds)

    svc.clock.sleep = sleep  # type: ignore[method-assign]
    svc.drain(INSTANCE, Templates())
    assert stale and svc.sqladmin.overwrite_attempts == 0
    tasks = svc.state.all_tasks()
    assert {t.state for t in tasks} == {"done"} and {t.generation for t in tasks} == {1}
    assert len(svc.sqladmin.exported) == len(tasks)  # the stale holder's export counts for its task


def test_a_renewal_that_returns_late_counts_from_when_it_was_asked() -> None:
    """Found by the fault suite: a holder stalled inside a renewal (the process descheduled between reading the
    clock and the commit). Its lease was written already expired, another worker took it over, and the stalled
    holder, counting its renewal from when the call returned, went on without checking: it submitted an export
    and recorded it while the new holder worked the same task."""
    svc = FakeServices(parse_config(config_doc()), start=T0.add(hours=1, minutes=10), content=content, duration=30)
    plan_tick(Tick("t", svc.clock.now(), svc.clock.now()), svc)
    svc.bus.published.clear()
    real_renew = svc.state.renew_lease
    taken: list[dict[str, Any]] = []

    def stalling_renew(instance: str, holder: str, ttl: float, now: Any) -> bool:
        renewed = real_renew(instance, holder, ttl, now)
        if not taken:
            svc.clock.advance(ttl + 10)  # stalled: the lease it wrote has expired by the time the call returns
            assert svc.state.acquire_lease(INSTANCE, "other/1", ttl, svc.clock.now()).acquired
            taken.append({t.id: (t.state, t.operation, t.attempts) for t in svc.state.all_tasks()})
        return renewed

    svc.state.renew_lease = stalling_renew  # type: ignore[method-assign]
    assert run_work(svc.work(INSTANCE), svc, Templates()) is None  # stopped by LeaseLost
    assert taken and {t.id: (t.state, t.operation, t.attempts) for t in svc.state.all_tasks()} == taken[0]


def test_a_holder_whose_claim_stalled_past_its_lease_claims_nothing() -> None:
    """Lease epoch (before: fencing only after Admin API calls). A holder whose Firestore write stalled (the client
    retries for up to minutes) past its lease claimed the next task once it got through, although another worker
    held the lease by then: an attempt spent and an export submitted under the new holder's feet. Every transition
    is now conditional on the holder's lease epoch, in the same atomic step."""
    svc = FakeServices(parse_config(config_doc()), start=T0.add(hours=1, minutes=10), content=content)
    plan_tick(Tick("t", svc.clock.now(), svc.clock.now()), svc)
    svc.bus.published.clear()
    real_claim = svc.state.claim
    taken: list[dict[str, Any]] = []

    def stalling_claim(task: Any, **kwargs: Any) -> Any:
        if not taken and svc.sqladmin.exported:  # the second claim stalls past the lease, and the lease is taken
            svc.clock.advance(120)
            assert svc.state.acquire_lease(INSTANCE, "other/1", 60, svc.clock.now()).acquired
            taken.append({t.id: (t.state, t.attempts, t.operation) for t in svc.state.all_tasks()})
        return real_claim(task, **kwargs)

    svc.state.claim = stalling_claim  # type: ignore[method-assign]
    assert run_work(svc.work(INSTANCE), svc, Templates()) is None  # stopped by LeaseLost
    assert taken and {t.id: (t.state, t.attempts, t.operation) for t in svc.state.all_tasks()} == taken[0]
    assert len(svc.sqladmin.exported) == 1  # only the export made while the lease was its own
