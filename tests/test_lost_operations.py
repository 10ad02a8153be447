"""Operations that never finish or stop resolving: the chain decides from the operation list and the object, never
polls forever, never fails a task because the API forgot its operation, and never overwrites an object."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from typing import Any

import pytest

from shared.app import hooks
from shared.app.requests import prepare
from shared.app.worker import run_work
from shared.core.config import parse_config
from shared.core.errors import ExportRejected
from shared.core.operations import Operation
from tests.test_chain import INSTANCE, TABLES, TEMPLATES, Crash, config_doc, services, tick


def test_an_operation_that_never_finishes_is_cancelled_and_retried_on_a_new_generation(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Defect (before): an operation stuck RUNNING was polled until every invocation's budget ran out, forever."""
    svc = services(parse_config(config_doc(stuck_factor=5, stuck_min_seconds=60)))
    tick(svc)
    svc.sqladmin.hang_next()
    svc.drain(INSTANCE, TEMPLATES, max_invocations=20)
    tasks = svc.state.all_tasks()
    assert {t.state for t in tasks} == {"done"}
    assert len(svc.sqladmin.cancelled) == 1
    hung_uri = svc.sqladmin.exported[0]
    retried = next(t for t in tasks if t.generation == 2)
    assert retried.uri == hung_uri.replace(".csv", ".g2.csv")
    assert svc.sqladmin.overwrite_attempts == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    stuck = [line for line in lines if line["message"].startswith("export stuck")]
    assert len(stuck) == 1 and stuck[0]["severity"] == "ERROR" and stuck[0]["uri"] == hung_uri
    # No earlier export of the table to compare with: the limit is the floor times the factor.
    assert stuck[0]["limit_seconds"] == 300


def test_the_stuck_limit_is_a_multiple_of_how_long_the_tables_last_export_ran() -> None:
    """The yardstick is the previous window's export as the operation list times it (about 2 s here), not the task's
    claim-to-done time, which a wait behind a busy instance inflates (here to ten minutes)."""
    svc = services(parse_config(config_doc(stuck_factor=3, stuck_min_seconds=1)), duration=2.0)
    tick(svc)
    svc.drain(INSTANCE, TEMPLATES)
    for task in svc.state.all_tasks():  # as if every export had first waited ten minutes behind a backup
        assert task.done_at is not None
        svc.state.tasks[task.id] = replace(task, submitted_at=task.done_at.subtract(minutes=10))
    svc.clock.advance(3600)
    tick(svc)
    svc.sqladmin.hang_next()
    started = svc.clock.monotonic()
    svc.drain(INSTANCE, TEMPLATES, max_invocations=5)
    assert len(svc.sqladmin.cancelled) == 1
    assert {t.state for t in svc.state.all_tasks()} == {"done"}
    # Stuck after 3 x ~2 s, not after 3 x 10 minutes (nor the 10-minute default): all of it took under a minute.
    assert svc.clock.monotonic() - started < 60


def test_an_operation_that_keeps_vanishing_never_fails_its_task() -> None:
    """Defect (before): operations.get answering 404 counted as a failed attempt, so an operation that vanished
    three times failed a task whose object may exist (max_attempts 3): watermarks froze until `cdc retry`."""
    svc = services()
    tick(svc)
    vanished: list[str] = []

    def vanish(point: str) -> None:
        # The first three exports of the first schema task stop resolving while running; each still writes its
        # object.
        if point != "mid_poll" or len(vanished) >= 3:
            return
        listed = svc.sqladmin.list_operations("cdc-local", "shop-pg")
        newest = listed[0] if listed else None
        stem = vanished[0].removesuffix(".csv") if vanished else "/schemas/"
        if newest is not None and not newest.done and newest.uri and stem in newest.uri:
            svc.clock.advance(5)
            svc.sqladmin.list_operations("cdc-local", "shop-pg")  # the export finishes, writing its object
            svc.sqladmin.forget(newest.name)
            vanished.append(newest.uri)

    hooks.install(vanish)
    svc.drain(INSTANCE, TEMPLATES, max_invocations=20)
    tasks = svc.state.all_tasks()
    assert len(vanished) == 3
    assert {t.state for t in tasks} == {"done"}
    # The first schema task exported (the live window's, claimed first) is the one whose exports vanished.
    schema = next(t for t in tasks if t.table is None and vanished[0].removesuffix(".csv") in (t.uri or ""))
    assert schema.generation == 4 and schema.attempts == 1  # three vanished exports spent no attempt
    assert svc.sqladmin.overwrite_attempts == 0
    assert len(tasks) == 3 * (1 + len(TABLES))


def test_an_operation_that_vanishes_but_is_still_listed_is_polled_not_resubmitted() -> None:
    """A 404 from operations.get is checked against operations.list: if the export is listed, it is still the
    task's export, so nothing is resubmitted and no generation is spent."""
    svc = services(duration=5)
    tick(svc)
    real_get = svc.sqladmin.get_operation
    missed: list[str] = []

    def flaky_get(project: str, name: str) -> Operation:
        if not missed:
            missed.append(name)
            raise ExportRejected(404, "operationDoesNotExist", f"The Cloud SQL operation {name!r} does not exist.")
        return real_get(project, name)

    svc.sqladmin.get_operation = flaky_get  # type: ignore[method-assign]
    svc.drain(INSTANCE, TEMPLATES)
    tasks = svc.state.all_tasks()
    assert missed and {t.state for t in tasks} == {"done"}
    assert {t.generation for t in tasks} == {1} and {t.attempts for t in tasks} == {1}
    assert len(svc.sqladmin.exported) == len(tasks)


def test_an_export_that_waited_behind_a_busy_instance_is_not_taken_for_stuck() -> None:
    """The stuck limit counts from the operation's insertTime (when the API accepted the export), not from the
    claim: a task that backed off behind a minute-long backup is not cancelled the moment it finally starts."""
    svc = services(parse_config(config_doc(stuck_factor=1, stuck_min_seconds=5)))
    tick(svc)
    svc.sqladmin.busy_for(INSTANCE, 60)
    svc.drain(INSTANCE, TEMPLATES)
    assert svc.sqladmin.cancelled == []
    assert {(t.state, t.generation) for t in svc.state.all_tasks()} == {("done", 1)}


def test_a_vanished_retry_is_not_mistaken_for_the_failed_attempt_before_it() -> None:
    """Found by the fault suite: the list was searched by uri, and the first attempt (failed, same uri, still
    listed) was taken for the vanished retry; its error was recorded and the next retry, under the same name,
    was refused as an overwrite of the object the vanished export had written."""
    svc = services(duration=5)
    tick(svc)
    svc.sqladmin.fail_next("INTERNAL_ERROR", "first attempt fails, writing nothing")
    vanished: list[str] = []

    def vanish(point: str) -> None:
        if point != "mid_poll" or vanished:
            return
        listed = svc.sqladmin.list_operations("cdc-local", "shop-pg")
        first = listed[-1] if listed else None
        if first is None or not first.done or len(listed) < 2 or listed[0].uri != first.uri or listed[0].done:
            return
        svc.clock.advance(5)
        svc.sqladmin.list_operations("cdc-local", "shop-pg")  # the retry finishes, writing its object
        svc.sqladmin.forget(listed[0].name)
        vanished.append(listed[0].name)

    hooks.install(vanish)
    svc.drain(INSTANCE, TEMPLATES)
    assert vanished and {t.state for t in svc.state.all_tasks()} == {"done"}
    assert svc.sqladmin.overwrite_attempts == 0
    first = next(t for t in svc.state.all_tasks() if t.uri and t.uri.replace(".g2", "") == svc.sqladmin.exported[0])
    assert (first.generation, first.attempts) == (2, 2)  # one failed attempt spent; the vanished one refunded


def test_a_crash_after_submit_then_a_vanished_operation_is_retried_on_a_new_generation() -> None:
    """Found by the fault suite: the worker was killed between the export's acceptance and saving its name, and the
    operation then vanished (having written its object). Recovery, not finding it listed, took the export for never
    sent and submitted it again under the same name: an overwrite attempt."""
    svc = services()
    tick(svc)
    seen: dict[str, Any] = {}

    def crash_after_submit(reached: str) -> None:
        if reached == "after_submit" and "lease" not in seen:
            seen["lease"] = copy.deepcopy(svc.state.leases)
            raise Crash(reached)

    hooks.install(crash_after_submit)
    work = svc.work(INSTANCE, "m-crashed")
    with pytest.raises(Crash):
        run_work(work, svc, TEMPLATES)
    hooks.install(None)
    svc.state.leases = seen["lease"]
    [accepted] = svc.sqladmin.list_operations("cdc-local", "shop-pg")
    svc.clock.advance(5)
    svc.sqladmin.list_operations("cdc-local", "shop-pg")  # it finishes, writing its object, then vanishes
    svc.sqladmin.forget(accepted.name)
    assert run_work(work, svc, TEMPLATES) is None  # the redelivery takes the dead lease over and hands on
    svc.bus.published.clear()
    svc.drain(INSTANCE, TEMPLATES)
    assert svc.sqladmin.overwrite_attempts == 0
    tasks = svc.state.all_tasks()
    assert {t.state for t in tasks} == {"done"}
    first = next(t for t in tasks if t.uri == accepted.uri.replace(".csv", ".g2.csv"))
    assert first.attempts == 1  # the vanished export's attempt was given back


def test_recovery_polls_the_running_export_before_submitting_a_task_left_unsent() -> None:
    """Found by the fault suite: a crash left one task running (its export hung) and another claimed but never
    sent. Recovery submitted the unsent one first; the hung export held the instance, so it backed off for the
    whole budget, invocation after invocation, and the hung export was never polled, so never cancelled."""
    svc = services(parse_config(config_doc(stuck_factor=2, stuck_min_seconds=30)))
    tick(svc)
    first, second = svc.state.next_pending(INSTANCE)[:2]
    ready = prepare(svc.config, TEMPLATES, first)
    running = svc.state.claim(first, uri=ready.uri, generation=1, now=svc.clock.now())
    assert running is not None
    svc.sqladmin.hang_next()
    operation = svc.sqladmin.export("cdc-local", "shop-pg", ready.body)
    svc.state.mark_running(running, operation.name)
    unsent = prepare(svc.config, TEMPLATES, second)
    assert svc.state.claim(second, uri=unsent.uri, generation=1, now=svc.clock.now()) is not None
    run_work(svc.work(INSTANCE), svc, TEMPLATES)  # one invocation (300 s budget)
    assert svc.sqladmin.cancelled == [operation.name]
    svc.bus.published.clear()
    svc.drain(INSTANCE, TEMPLATES)
    assert {t.state for t in svc.state.all_tasks()} == {"done"} and svc.sqladmin.overwrite_attempts == 0
