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
