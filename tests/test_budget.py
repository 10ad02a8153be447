"""The project's Admin API call budget (shared/app/budget.py) and the chain polling under it, in-process."""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence

import pendulum
import pytest

from shared.app.budget import BURST_SECONDS, QUOTA_BACKOFF_SECONDS, REFRESH_SECONDS, CallBudget
from shared.app.planner import plan_backfill
from shared.core.config import parse_config
from shared.core.errors import StateUnavailable
from shared.core.messages import Backfill
from shared.testing.clock import FakeClock
from shared.testing.memory_state import InMemoryState
from shared.testing.services import FakeServices
from tests.test_chain import INSTANCE, T0, TEMPLATES, config_doc, content, services, tick

NOW = pendulum.datetime(2026, 1, 1, tz="UTC")


def live(state: InMemoryState, count: int, *, now: pendulum.DateTime = NOW, ttl: float = 86_400) -> None:
    for i in range(count):
        state.acquire_lease(f"cdc-local:other-{i}", f"holder-{i}", ttl, now)


def busiest_minute(times: Sequence[float]) -> int:
    """The most calls in any 60 s."""
    ordered, best, first = sorted(times), 0, 0
    for last, at in enumerate(ordered):
        while at - ordered[first] >= 60:
            first += 1
        best = max(best, last - first + 1)
    return best


def test_the_share_is_the_budget_over_the_live_chains() -> None:
    state, clock = InMemoryState(), FakeClock(NOW)
    live(state, 5)
    budget = CallBudget(state, clock, 150, instance="cdc-local:pg")
    budget.wait_seconds()  # reads the live chains
    assert budget.chains == 5
    assert budget.rate == pytest.approx(150 / (60 + BURST_SECONDS) / 5)
    # A full bucket plus a minute of refill is exactly the share.
    assert budget.capacity + 60 * budget.rate == pytest.approx(150 / 5)


def test_a_call_draws_a_token_and_the_next_waits_for_the_refill() -> None:
    state, clock = InMemoryState(), FakeClock(NOW)
    live(state, 1)
    budget = CallBudget(state, clock, 70, instance="cdc-local:pg")  # 1 call a second for one chain
    assert budget.wait_seconds() == 0.0
    for _ in range(10):
        budget.spend()  # the bucket's ten seconds of refill
    assert budget.wait_seconds() == pytest.approx(1.0)
    budget.spend()  # an export cannot wait: it overdraws
    assert budget.wait_seconds() == pytest.approx(2.0)
    clock.sleep(2.0)
    assert budget.wait_seconds() == 0.0


def test_a_poll_may_leave_tokens_in_the_bucket_for_later() -> None:
    """Polls without a forecast keep half the bucket for the dense polls of forecast windows."""
    state, clock = InMemoryState(), FakeClock(NOW)
    live(state, 1)
    budget = CallBudget(state, clock, 70, instance="cdc-local:pg")  # 1 call a second, 10 in the bucket
    for _ in range(5):
        budget.spend()
    assert budget.wait_seconds() == 0.0
    assert budget.wait_seconds(keep=5) == pytest.approx(1.0)
    assert budget.wait_seconds(keep=50) == pytest.approx(5.0)  # never more than the bucket holds


def test_affordable_counts_only_what_the_bucket_can_hold_before_the_window() -> None:
    state, clock = InMemoryState(), FakeClock(NOW)
    live(state, 1)
    budget = CallBudget(state, clock, 70, instance="cdc-local:pg")
    budget.wait_seconds()
    assert budget.affordable(before=1000, during=2) == pytest.approx(budget.capacity + 2)


def test_the_live_chains_are_reread_every_refresh_interval_and_a_failed_read_keeps_the_share() -> None:
    state, clock = InMemoryState(), FakeClock(NOW)
    live(state, 2, ttl=3600)
    reads: list[int] = []
    inner = state.live_chains

    def counting(now: pendulum.DateTime) -> int:
        reads.append(1)
        return inner(now)

    state.live_chains = counting  # type: ignore[method-assign]
    budget = CallBudget(state, clock, 150, instance="cdc-local:pg")
    budget.wait_seconds()
    budget.wait_seconds()
    assert (len(reads), budget.chains) == (1, 2)
    live(state, 4, now=clock.now(), ttl=3600)
    clock.sleep(REFRESH_SECONDS)
    budget.wait_seconds()
    assert (len(reads), budget.chains) == (2, 4)

    def unavailable(now: pendulum.DateTime) -> int:
        raise StateUnavailable("live_chains", RuntimeError("firestore down"))

    state.live_chains = unavailable  # type: ignore[method-assign]
    clock.sleep(REFRESH_SECONDS)
    assert budget.wait_seconds() >= 0 and budget.chains == 4


def test_a_429_holds_the_chain_back_instead_of_retrying() -> None:
    state, clock = InMemoryState(), FakeClock(NOW)
    budget = CallBudget(state, clock, 150, instance="cdc-local:pg")
    budget.refused()
    assert budget.wait_seconds() >= QUOTA_BACKOFF_SECONDS


def _backfill(svc: FakeServices, hours: int) -> None:
    svc.clock.advance(hours * 3600)
    request = Backfill("bf-1", svc.clock.now(), T0, T0.add(hours=hours), "shop", ("orders", "payments"), False, False)
    plan_backfill(request, svc)


def test_a_chain_spends_no_more_than_its_share_when_other_chains_are_live() -> None:
    """Five live chains share 150 calls a minute: this one makes at most 30 in any minute, whatever its exports."""
    svc = services(parse_config(config_doc(api_calls_per_minute=150)), duration=2.0)
    live(svc.state, 4, now=svc.clock.now())
    _backfill(svc, 12)
    svc.drain(INSTANCE, TEMPLATES, max_invocations=200)
    assert {t.state for t in svc.state.all_tasks()} == {"done"}
    assert len(svc.sqladmin.exported) == 36
    assert svc.sqladmin.rate_limited == []
    assert busiest_minute(svc.sqladmin.call_times) <= 150 / 5 + 1  # one export may overdraw


def test_alone_a_chain_may_use_the_whole_budget() -> None:
    svc = services(parse_config(config_doc(api_calls_per_minute=150)), duration=2.0)
    _backfill(svc, 12)
    svc.drain(INSTANCE, TEMPLATES, max_invocations=200)
    assert 30 < busiest_minute(svc.sqladmin.call_times) <= 150 + 1


def test_a_poll_answered_429_is_not_retried_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    """Defect (before): a poll refused with 429 was retried at the next poll interval (50 ms), and so on, each retry
    refused again while the minute lasted."""
    # No forecast: the growing schedule would poll every 50 ms at first.
    svc = services(parse_config(config_doc(poll_window_calls=0, budget_seconds=540)), duration=30.0)
    tick(svc)
    svc.sqladmin.limit_calls(4)  # the export and three polls; then 429 until the minute has passed
    svc.drain(INSTANCE, TEMPLATES, max_invocations=5)
    times, calls, refused = svc.sqladmin.call_times, svc.sqladmin.calls, svc.sqladmin.rate_limited
    first_invocation = 540  # budget_seconds: the next invocation starts with a fresh bucket (and reads at once)
    polls_refused = [i for i in refused if calls[i] == "get" and i + 1 < len(calls) and times[i + 1] < first_invocation]
    assert polls_refused
    assert all(times[i + 1] - times[i] >= QUOTA_BACKOFF_SECONDS for i in polls_refused)
    assert {t.state for t in svc.state.all_tasks()} == {"done"}
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert any(line["message"].startswith("Admin API quota exceeded") for line in lines)


def test_a_table_with_history_is_polled_inside_its_forecast_window() -> None:
    """The second window's exports are forecast from the first's (the API's own times): a handful of calls each,
    the end seen within one step of the window, and one operations.list per invocation."""
    svc = FakeServices(parse_config(config_doc()), start=T0.add(hours=3, minutes=10), duration=20.0, content=content)
    svc.sqladmin.jitter(0.05, seed=5)
    tick(svc)
    svc.drain(INSTANCE, TEMPLATES)
    first = len(svc.sqladmin.calls)
    svc.clock.advance(3600)
    tick(svc)
    svc.drain(INSTANCE, TEMPLATES)
    second = svc.sqladmin.calls[first:]
    exports = second.count("export")
    assert exports == 3 and second.count("list") == 1
    assert len(second) / exports <= 10
    ops = sorted(svc.sqladmin._operations.values(), key=lambda op: op.inserted)[-3:]
    dead = [nxt.inserted - prev.ended for prev, nxt in itertools.pairwise(ops)]
    assert all(0 <= d <= 1.0 for d in dead), dead
