"""The polling schedule (shared/app/polling.py): pure rules, no clock."""

from __future__ import annotations

import itertools
import random
from dataclasses import replace

import pytest

from shared.app import polling
from shared.app.polling import MIN_INTERVAL_SECONDS, TAPER, Forecast, PollPlan, forecast, predict, window_calls
from shared.core.config import WorkerSettings

SETTINGS = WorkerSettings()


def polls(plan: PollPlan, end: float, *, start: float = 0.0, limit: int = 1000) -> list[float]:
    """The ages at which `plan` polls an export accepted `start` seconds ago that ends at age `end`, up to the poll
    that sees it DONE."""
    ages: list[float] = []
    age = start
    while len(ages) < limit:
        age += plan.delay(age, first=not ages)
        ages.append(age)
        if age >= end:
            return ages
    raise AssertionError(f"no poll saw the end at {end} within {limit} polls: {ages[-5:]}")


def test_no_durations_no_forecast() -> None:
    assert forecast([], 0.05, "table") is None
    assert forecast([0.0, -1.0, float("nan")], 0.05, "table") is None


def test_few_durations_get_the_configured_spread_around_them() -> None:
    assert forecast([20.0], 0.05, "table") == Forecast(19.0, 21.0, "table", 1)
    assert forecast([19.0, 21.0], 0.1, "instance") == Forecast(17.0, 23.0, "instance", 2)


def test_three_or_more_durations_set_their_own_margin() -> None:
    """k draws of a spread-out duration fall short of its range by about range / (k - 1) at each end."""
    f = forecast([19.0, 20.0, 21.0], 0.5, "table")
    assert f is not None and (f.low, f.high) == (18.0, 22.0)
    steady = forecast([2.0, 2.0, 2.0, 2.0], 0.5, "table")
    assert steady is not None and (steady.low, steady.high) == pytest.approx((1.98, 2.02))  # the 1 % floor


def test_an_outlier_does_not_widen_the_window() -> None:
    """A duration far from the median (an export that ran long once) is left out."""
    f = forecast([20.0, 20.5, 19.5, 95.0], 0.05, "table")
    assert f is not None and f.samples == 3 and f.high < 22


def test_a_table_with_few_durations_borrows_the_instances_of_a_similar_length() -> None:
    """One duration of its own says nothing of the spread: the instance's similar exports measure it."""
    f = predict([20.0], [19.0, 21.0, 20.5, 55.0], 0.05)
    assert f is not None and f.basis == "table" and f.samples == 4  # 55 s is another kind of table
    assert (f.low, f.high) == pytest.approx((19.0 - 2 / 3, 21.0 + 2 / 3))
    assert predict([20.0, 20.2, 19.8], [5.0, 40.0], 0.05) == forecast([20.0, 20.2, 19.8], 0.05, "table")
    assert predict([], [19.0, 21.0], 0.05) == forecast([19.0, 21.0], 0.05, "instance")
    assert predict([], [], 0.05) is None


def test_window_calls_are_as_configured_unless_the_budget_cannot_pay() -> None:
    assert window_calls(8, 50.0) == 8
    assert window_calls(8, 3.7) == 3
    assert window_calls(8, 0.2) == 1  # at least one poll


def test_the_first_poll_waits_for_the_window_then_polls_come_closer_together_towards_its_end() -> None:
    plan = PollPlan(Forecast(19.0, 21.0, "table", 3), 8, SETTINGS)
    seen = polls(plan, end=21.0)
    expected = [19.0 + 2.0 * (1 - (1 - k / 8) ** TAPER) for k in range(1, 9)]
    assert seen == pytest.approx(expected)  # nothing before the window: its first poll is one interval into it
    assert seen[-1] == pytest.approx(21.0)  # the last at its end
    intervals = [b - a for a, b in itertools.pairwise(seen)]
    assert all(later < earlier for earlier, later in itertools.pairwise(intervals))
    assert len(seen) == 8


def test_a_taper_of_one_spaces_the_polls_evenly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(polling, "TAPER", 1.0)
    plan = PollPlan(Forecast(19.0, 21.0, "table", 3), 8, SETTINGS)
    seen = polls(plan, end=21.0)
    assert seen[0] == pytest.approx(19.25)
    assert [round(b - a, 6) for a, b in itertools.pairwise(seen)] == [0.25] * 7


def test_every_end_inside_the_window_is_seen_within_its_interval_and_the_planned_calls() -> None:
    plan = PollPlan(Forecast(19.0, 21.0, "table", 3), 8, SETTINGS)
    first_interval = plan.dense_at(1) - 19.0
    rng = random.Random(3)
    for _ in range(200):
        end = rng.uniform(19.0, 21.0)
        seen = polls(plan, end)
        assert len(seen) <= 8
        assert 0 <= seen[-1] - end <= first_interval + 1e-9
        k = len(seen)  # the poll that saw it is the first planned at or after the end
        assert seen[-1] == pytest.approx(plan.dense_at(k)) and (k == 1 or plan.dense_at(k - 1) < end)


def test_a_long_wait_before_the_window_is_cut_into_sparse_polls() -> None:
    plan = PollPlan(Forecast(600.0, 620.0, "table", 3), 4, replace(SETTINGS, poll_sparse_seconds=60))
    seen = polls(plan, end=605.0)
    assert seen[:10] == pytest.approx([60.0 * k for k in range(1, 11)])
    assert len(seen) == 11  # ten sparse polls, then the first of the window


def test_an_export_that_may_already_be_over_is_read_at_once() -> None:
    """A resumed export (another invocation submitted it) is read first, then follows the plan."""
    plan = PollPlan(Forecast(19.0, 21.0, "table", 3), 8, SETTINGS)
    assert plan.delay(19.5, first=True) == 0.0
    assert plan.delay(3.0, first=True) == pytest.approx(plan.dense_at(1) - 3.0)
    assert PollPlan(None, 0, SETTINGS).delay(40.0, first=True) == 0.0


def test_an_overrun_backs_off_doubling_from_the_windows_end_up_to_poll_max() -> None:
    plan = PollPlan(Forecast(19.0, 21.0, "table", 3), 8, replace(SETTINGS, poll_max_seconds=5))
    seen = polls(plan, end=60.0)
    after = [round(b - a, 6) for a, b in itertools.pairwise(seen) if a >= 21.0]
    assert after[:4] == [0.25, 0.25, 0.5, 1.0]
    assert max(after) == 5.0 and after[-1] == 5.0
    assert len(seen) < 25  # the growing schedule from 0 would take ~80


def test_without_a_forecast_the_interval_grows_with_the_age() -> None:
    plan = PollPlan(None, 0, SETTINGS)
    assert plan.delay(0.0) == SETTINGS.poll_initial_seconds
    assert plan.delay(20.0) == pytest.approx(20.0 * SETTINGS.poll_fraction)
    assert plan.delay(1000.0) == SETTINGS.poll_max_seconds


def test_polls_never_come_closer_than_the_floor_even_off_the_grid() -> None:
    """A poll that lands a hair before its planned time (float, a clock's resolution) does not make the next one
    immediate (before: the chain spun, polling at 0 s intervals)."""
    plan = PollPlan(Forecast(18.27, 21.694, "instance", 2), 4, SETTINGS)
    first_dense = 18.27 + plan.step
    for age in (first_dense - 1e-12, first_dense, first_dense + 1e-12, 21.694 - 1e-12):
        assert plan.delay(age) >= MIN_INTERVAL_SECONDS
