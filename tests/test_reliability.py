"""Reliability: the fault-injection suite (fast variant) on the local stack, plus the pieces it relies on.

The full suite (48 hourly windows) is `python -m local.faults --full`; this runs the same code over 12
windows: API 503s, failed operations, foreign operations, duplicate deliveries, SIGKILLed workers, and
production's instance-level conditions (403, a stopped instance, 429, hung and vanishing exports, a long backup).
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pendulum
import pytest

from local.faults import START, FaultPlan, check_run, fault_config, run_suite
from shared.core.config import Config, parse_config
from shared.core.errors import ConfigError
from shared.core.tasks import Task
from shared.testing.failpoints import load_failpoints

REPO = Path(__file__).resolve().parent.parent


def test_failpoints_are_parsed_and_validated():
    assert load_failpoints({}).rates == {}
    assert load_failpoints({"CDC_FAILPOINTS": "after_submit:0.1, mid_poll:1"}).rates == {
        "after_submit": 0.1,
        "mid_poll": 1.0,
    }
    with pytest.raises(ConfigError, match=r"CDC_FAILPOINTS\[0\].*outside \[0, 1\]"):
        load_failpoints({"CDC_FAILPOINTS": "after_submit:2"})
    with pytest.raises(ConfigError, match=r"CDC_FAILPOINTS\[1\].*'name:probability'"):
        load_failpoints({"CDC_FAILPOINTS": "after_submit:0.1,mid_poll"})


def _run_failpoint(env_value: str, name: str, kills: str = "") -> subprocess.CompletedProcess[str]:
    code = f"from shared.testing.failpoints import failpoint; failpoint({name!r}); print('survived')"
    env = {"CDC_FAILPOINTS": env_value, "CDC_FAILPOINTS_KILLS": kills, "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_a_failpoint_sigkills_the_process_only_when_configured():
    killed = _run_failpoint("after_submit:1", "after_submit")
    assert killed.returncode == -9
    assert '"failpoint": "after_submit"' in killed.stdout
    assert _run_failpoint("after_submit:1", "mid_poll").stdout.strip() == "survived"
    unknown = _run_failpoint("after_sbumit:1", "after_submit")
    assert unknown.returncode == 1 and "is not a failpoint" in unknown.stderr


def test_the_kills_of_a_run_stop_at_its_cap_across_processes(tmp_path):
    """Defect (before): the fast fault suite killed workers as often as its rates gave (2 to 7 times), each kill
    holding every instance for over a minute, and one CI run timed out. With a cap, the processes of a run share
    its tokens: the first two die, the third lives."""
    cap = f"2:{tmp_path / 'tokens'}"
    outcomes = [_run_failpoint("after_submit:1", "after_submit", kills=cap).returncode for _ in range(3)]
    assert outcomes == [-9, -9, 0]
    assert sorted(p.name for p in (tmp_path / "tokens").iterdir()) == ["kill-0", "kill-1"]
    with pytest.raises(ConfigError, match=r"CDC_FAILPOINTS_KILLS.*'N:DIR'"):
        load_failpoints({"CDC_FAILPOINTS_KILLS": "two"})
    assert load_failpoints({"CDC_FAILPOINTS_KILLS": ""}).max_kills is None


def _task(table: str | None, hour: int, uri: str) -> Task:
    low = START.add(hours=hour)
    return Task("shop", "cdc-local:shop-pg", "faults", table, low, low.add(hours=1), state="done", uri=uri,
                finalized=True)  # fmt: skip


def _one_hour() -> tuple[Config, list[Task]]:
    """One source's first hour as the suite plans it: the schema task, then one task per table, all done."""
    config = parse_config(fault_config(1))
    root = "gs://cdc-exports/cdc/raw"
    tasks = [_task(None, 0, "gs://cdc-exports/cdc/schemas/shop/2026/10/01/schema_20261001T000000.csv")] + [
        _task(t, 0, f"{root}/{t}/2026/10/01/{t}_20261001T000000.csv") for t in config.sources[0].table_names
    ]
    return config, tasks


def _finished(
    config: Config, tasks: list[Task], manifest: str = "cdc/manifests/x/_manifest.json"
) -> tuple[set[str], list[dict], dict]:
    """What that hour leaves when it went well: the tasks' objects and a manifest, each table's watermark moved once
    over the hour, and the watermarks at its end."""
    objects = {t.uri.removeprefix("gs://cdc-exports/") for t in tasks} | {manifest}
    end = START.add(hours=1)
    history = [{"table": t, "from": START, "to": end, "at": end} for t in config.sources[0].table_names]
    marks = {("shop", t): end for t in config.sources[0].table_names}
    return objects, history, marks


def _op(name: str, uri: str | None, start: int, end: int, error: str | None = None) -> dict:
    t0 = pendulum.datetime(2026, 1, 1, tz="UTC")
    return {
        "name": name,
        "operationType": "EXPORT" if uri else "BACKUP_VOLUME",
        "uri": uri,
        "status": "DONE",
        "insertTime": t0.add(seconds=start).isoformat(),
        "endTime": t0.add(seconds=end).isoformat(),
        "error": {"code": error, "message": "x"} if error else None,
    }


def test_the_checks_catch_overlaps_overwrites_duplicates_stalls_and_backward_watermarks():
    """check_run on a hand-made history: each planted fault is reported."""
    config, tasks = _one_hour()
    ops = [_op(f"op{i}", t.uri, 2 * i, 2 * i + 1) for i, t in enumerate(tasks)]
    objects, history, marks = _finished(config, tasks)
    assert check_run(tasks, ops, objects, history, marks, config, 1, idle_limit=5)[0] == []

    planted = [
        _op("overlapping", tasks[1].uri.replace(".csv", ".g2.csv"), 2, 30),  # overlaps, 2nd success, stall
        _op("overwrite", tasks[2].uri, 31, 32, error="ALREADY_EXISTS"),
        _op("after a stall", tasks[3].uri.replace(".csv", ".g2.csv"), 60, 61, error="INTERNAL_ERROR"),
    ]
    end = START.add(hours=1)
    backwards = [*history, {"table": "orders", "from": end, "to": START, "at": end.add(seconds=1)}]
    violations, idle = check_run(
        tasks, ops + planted, objects | {"cdc/raw/stray.csv"}, backwards, marks, config, 1, idle_limit=5
    )
    text = "\n".join(violations)
    assert "operations overlap" in text
    assert "exported successfully 2 times" in text
    assert "submitted again while its previous export still ran" in text
    assert "overwrite attempt" in text
    assert "objects differ" in text
    assert "watermark of shop.orders moved" in text
    assert "idled" in text and idle > 5


@pytest.mark.stack
@pytest.mark.timeout(450)  # about 90 s on an idle 2-core machine; the run itself gives up after 360 s and reports
def test_fault_suite_loses_nothing_and_duplicates_nothing(clean_stack, tmp_path):
    plan = FaultPlan()
    report = run_suite(clean_stack, plan, tmp_path)
    print(report.summary())
    assert report.violations == []
    assert plan.instances >= 5, "more Cloud SQL instances than the emulator's 2 pushes in flight per subscription"
    assert report.tasks == plan.hours * 5 * plan.instances
    assert report.windows_compared == plan.hours * 4 * plan.instances
    assert report.injected["HTTP 503 answers"] > 0
    assert report.injected["export operations failed"] > 0
    assert report.injected["foreign operation"] > 0
    assert report.injected["work message pushed again (same id)"] > 0
    kills = sum(n for kind, n in report.injected.items() if kind.startswith("worker killed"))
    assert kills >= 1, report.summary()
    for kind in ("HTTP 403 answers (permission)", "HTTP 400 answers (not running)", "HTTP 429 answers (quota)",
                 "exports hung", "exports vanished", "backup longer than the lease",
                 "exports failed on the broken template", "template broken (SQL error)"):  # fmt: skip
        assert report.injected[kind] >= 1, report.summary()
        assert report.survived[kind] == report.injected[kind], report.summary()
    assert report.recoveries["instance paused by its breaker (refusals)"] >= 1, report.summary()


def test_the_injector_stops_within_its_bound_even_with_deliveries_backing_off():
    """Defect (before): the fault suite's teardown waited for every duplicate delivery's back-offs and 180 s
    timeouts, so a failing run hung in its teardown instead of failing an assertion."""
    import random
    import threading
    import time
    from collections import Counter
    from concurrent.futures import ThreadPoolExecutor

    from local.faults import Injector

    class NoPubSub:
        def delete_subscription(self, name: str) -> None:
            pass

    injector = Injector.__new__(Injector)
    injector.counts, injector._lock, injector._stop = Counter(), threading.Lock(), threading.Event()
    injector._pool, injector._threads, injector._futures = ThreadPoolExecutor(max_workers=2), [], []
    injector._pubsub, injector._work_topics = NoPubSub(), ["cdc-work", "cdc-work-s0"]
    injector.rng = random.Random(1)
    closed = "http://127.0.0.1:9/"  # the discard port, closed here: every attempt is refused and backs off
    for _ in range(2):
        injector.push_again(closed, {}, "work")
    time.sleep(0.5)
    started = time.monotonic()
    injector.stop()
    assert time.monotonic() - started < 3


def test_idle_is_measured_from_the_moment_a_condition_cleared():
    """Defect 9 (before): a gap was measured from the instance's last operation, so time spent waiting out a
    refusal, or a killed worker's lease, counted as a stall and the bound failed under CPU load. Now the gap starts
    when the condition cleared; after a refusal, the breaker's pause in force then is designed idle time too."""
    from local.fault_scenarios import (
        ABANDONED_TRANSACTION_SECONDS,
        Condition,
        Held,
        breaker_wait_after,
        idle_allowance,
        killed,
    )

    t0 = pendulum.datetime(2026, 1, 1, tz="UTC")
    stopped = Held(
        Condition("instance stopped", 0, {"stopped_instances": ["i"]}, 8, breaker=True), t0, t0.add(seconds=8)
    )
    start, allowed = idle_allowance(t0.subtract(seconds=1), t0.add(seconds=20), [stopped], 5)
    assert start == t0.add(seconds=8) and allowed == 5 + breaker_wait_after(8)
    # A killed process: its chains' leases, and the lease documents its open Firestore transactions locked.
    kill = killed(t0.add(seconds=30), 6)
    assert kill.end == t0.add(seconds=30 + ABANDONED_TRANSACTION_SECONDS)
    after = t0.add(seconds=30 + ABANDONED_TRANSACTION_SECONDS + 5)
    assert idle_allowance(t0.add(seconds=29), after, [stopped, kill], 5) == (kill.end, 5)
    assert idle_allowance(after, after.add(seconds=4), [stopped, kill], 5) == (after, 5)
    # The breaker's pauses are 5, 10, 20... s, jittered 0.8-1.2: the pause in force when a condition clears.
    assert [breaker_wait_after(s) for s in (0, 3.9, 4.0, 11.9, 12.0)] == [6.0, 6.0, 12.0, 12.0, 24.0]

    config, tasks = _one_hour()
    # A 19 s gap while the instance was stopped for 8 s: 11 s after it was started, within 5 + 12 s.
    ops = [_op(f"op{i}", t.uri, 2 * i + (20 if i > 1 else 0), 2 * i + 1 + (20 if i > 1 else 0))
           for i, t in enumerate(tasks)]  # fmt: skip
    stopped = Held(
        stopped.condition, pendulum.parse(ops[1]["endTime"]), pendulum.parse(ops[1]["endTime"]).add(seconds=8)
    )
    objects, history, marks = _finished(config, tasks)
    assert check_run(tasks, ops, objects, history, marks, config, 1, idle_limit=5)[0]  # measured the old way
    assert check_run(tasks, ops, objects, history, marks, config, 1, idle_limit=5, held=[stopped])[0] == []


def test_an_object_left_by_a_vanished_export_is_accepted_only_as_an_earlier_generation():
    config, tasks = _one_hour()
    tasks[1] = dataclasses.replace(tasks[1], uri=tasks[1].uri.replace(".csv", ".g2.csv"), generation=2)
    ops = [_op(f"op{i}", t.uri, 2 * i, 2 * i + 1) for i, t in enumerate(tasks)]
    objects, history, marks = _finished(config, tasks, manifest="cdc/manifests/x/_manifest.v2.json")
    left = tasks[1].uri.replace(".g2.csv", ".csv").removeprefix("gs://cdc-exports/")
    assert check_run(tasks, ops, objects | {left}, history, marks, config, 1, idle_limit=5, vanished=1)[0] == []
    violations = check_run(tasks, ops, objects | {left}, history, marks, config, 1, idle_limit=5)[0]
    assert "1 objects of earlier generations for 0 vanished exports" in violations


def test_the_scenario_stops_within_its_bound_even_when_the_emulator_is_gone():
    import time

    from local.fault_scenarios import Scenario, timeline

    scenario = Scenario("http://127.0.0.1:9/_emulator", "p", timeline(["i", "j"], 6)[1:], lambda kind: None)
    scenario.start()
    started = time.monotonic()
    scenario.stop(timeout=2)
    assert time.monotonic() - started < 3 and scenario.held == []


def test_the_time_held_by_killed_processes_is_the_union_of_their_holds():
    from local.fault_scenarios import ABANDONED_TRANSACTION_SECONDS, killed
    from local.faults import covered_seconds

    t0 = pendulum.datetime(2026, 1, 1, tz="UTC")
    kills = [killed(t0, 6), killed(t0.add(seconds=30), 6), killed(t0.add(seconds=200), 6)]
    assert covered_seconds(kills) == 30 + ABANDONED_TRANSACTION_SECONDS + ABANDONED_TRANSACTION_SECONDS
    assert covered_seconds([]) == 0


def test_an_instance_is_not_idle_before_its_next_task_exists():
    """Defect (before): with six sources the planner writes the windows of 48 ticks over tens of seconds; a chain
    that had exported every planned task and stopped was counted idle until the next window was planned."""
    config, tasks = _one_hour()
    ops = [_op(f"op{i}", t.uri, 2 * i + (30 if i > 2 else 0), 2 * i + 1 + (30 if i > 2 else 0))
           for i, t in enumerate(tasks)]  # fmt: skip
    objects, history, marks = _finished(config, tasks)
    assert check_run(tasks, ops, objects, history, marks, config, 1, idle_limit=5)[0]  # a 31 s gap
    planned_late = pendulum.parse(ops[3]["insertTime"]).subtract(seconds=2)
    tasks = [dataclasses.replace(t, created_at=planned_late if i > 2 else None) for i, t in enumerate(tasks)]
    assert check_run(tasks, ops, objects, history, marks, config, 1, idle_limit=5)[0] == []
