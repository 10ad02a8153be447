"""The instance lease, rule by rule, in-process: `decide_acquire`, holder identity, `take_lease` for a fresh
message, for a redelivery of a dead invocation's message and for a stale holder, and `LeaseKeeper`'s timing."""

from __future__ import annotations

import json
from typing import Any

import pendulum
import pytest

from shared.app.lease import (
    HANDOVER_HOLDER,
    Fence,
    Lease,
    LeaseKeeper,
    LeasePolicy,
    decide_acquire,
    decide_renew,
    new_holder,
    started_by,
    take_lease,
)
from shared.core.errors import LeaseLost, LeaseSuspect
from shared.testing.clock import FakeClock
from shared.testing.memory_state import InMemoryState

T0 = pendulum.datetime(2026, 1, 1, tz="UTC")
INSTANCE = "cdc-local:shop-pg"
POLICY = LeasePolicy(60)


def _untimed(entry: dict[str, Any]) -> dict[str, Any]:
    """A log entry without its `time` (the wall clock at logging, which no test can predict)."""
    return {k: v for k, v in entry.items() if k != "time"}


def logged(capsys: pytest.CaptureFixture[str], message: str) -> list[dict[str, Any]]:
    lines = [_untimed(json.loads(line)) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    return [entry for entry in lines if entry["message"] == message]


# --- decide_acquire -------------------------------------------------------------------------------------------


MS0 = int(T0.timestamp() * 1000)


def test_a_free_lease_is_taken_with_its_expiry_heartbeat_and_an_epoch_from_the_clock() -> None:
    assert decide_acquire(None, "m1/a", 60, T0) == Lease(True, "m1/a", T0.add(seconds=60), T0, 0, None, MS0)


def test_a_live_lease_is_refused_and_reported_as_it_is() -> None:
    current = Lease(True, "m1/a", T0.add(seconds=30), T0.subtract(seconds=30), 2, "m0/z")
    current = Lease(True, "m1/a", T0.add(seconds=30), T0.subtract(seconds=30), 2, "m0/z", 7)
    refused = decide_acquire(current, "m2/b", 60, T0)
    assert refused == Lease(False, "m1/a", T0.add(seconds=30), T0.subtract(seconds=30), 2, None, 7)
    assert refused.acquired is False and refused.takeovers == 2


def test_an_expired_lease_of_another_holder_is_taken_over_and_counted() -> None:
    current = Lease(True, "m1/a", T0, T0.subtract(seconds=60), 2, None, MS0 + 5)
    taken = Lease(True, "m2/b", T0.add(seconds=60), T0, 3, "m1/a", MS0 + 6)  # the epoch grows past the old one
    assert decide_acquire(current, "m2/b", 60, T0) == taken


def test_our_own_lease_is_renewed_without_a_takeover() -> None:
    current = Lease(True, "m1/a", T0.add(seconds=10), T0.subtract(seconds=50), 2, None, 41)
    assert decide_acquire(current, "m1/a", 60, T0) == Lease(True, "m1/a", T0.add(seconds=60), T0, 0, None, 41)


def test_a_handed_over_lease_is_taken_at_once_keeping_the_count() -> None:
    current = Lease(True, HANDOVER_HOLDER, T0, T0.subtract(seconds=5), 2, None, 41)  # hand_over expires it at once
    assert decide_acquire(current, "m2/b", 60, T0) == Lease(True, "m2/b", T0.add(seconds=60), T0, 2, None, MS0)


def test_a_renewal_keeps_the_epoch_and_never_takes_a_lease_that_is_not_ours() -> None:
    ours = Lease(False, "m1/a", T0.subtract(seconds=1), T0.subtract(seconds=61), 2, None, 41)  # expired, not taken
    assert decide_renew(ours, "m1/a", 60, T0) == Lease(True, "m1/a", T0.add(seconds=60), T0, 0, None, 41)
    assert decide_renew(ours, "m2/b", 60, T0) is None
    assert decide_renew(None, "m1/a", 60, T0) is None  # released or never taken: not re-created by a renewal


def test_a_fence_admits_only_its_holder_at_its_epoch() -> None:
    fence = Fence(INSTANCE, "m1/a", 41)
    assert fence.admits(Lease(False, "m1/a", T0, T0, 0, None, 41))
    assert not fence.admits(Lease(False, "m1/a", T0, T0, 0, None, 42))
    assert not fence.admits(Lease(False, "m2/b", T0, T0, 0, None, 41))
    assert not fence.admits(None)


def test_lease_liveness_is_strictly_before_its_expiry() -> None:
    lease = Lease(True, "m1/a", T0, T0)
    assert lease.live(T0.subtract(microseconds=1)) and not lease.live(T0)


# --- identity and policy ----------------------------------------------------------------------------------------


def test_a_holder_names_its_message_and_a_random_part() -> None:
    holder = new_holder("1234")
    message, _, random_part = holder.partition("/")
    assert message == "1234" and len(random_part) == 12 and int(random_part, 16) >= 0
    assert new_holder("1234") != holder
    assert started_by(holder) == "1234"
    assert started_by("m/a/b") == "m"  # only the first part is the message id
    assert started_by(None) == "" and started_by("") == ""


def test_policy_fractions() -> None:
    policy = LeasePolicy(120)
    assert (policy.renew_after, policy.sleep_slice, policy.stale_after) == (40, 30, 60)
    assert (policy.takeover_wait, policy.takeover_poll) == (180, 10)


# --- take_lease ---------------------------------------------------------------------------------------------------


def setup(holder: str = "m1/a", *, heartbeat_age: float = 0.0) -> tuple[InMemoryState, FakeClock]:
    state, clock = InMemoryState(), FakeClock(T0)
    state.acquire_lease(INSTANCE, holder, POLICY.ttl, clock.now())
    clock.advance(heartbeat_age)
    return state, clock


def test_another_message_is_acknowledged_while_the_holders_heartbeat_is_fresh(
    capsys: pytest.CaptureFixture[str],
) -> None:
    state, clock = setup(heartbeat_age=POLICY.stale_after)  # exactly at the limit: still fresh
    assert take_lease(state, clock, INSTANCE, "m2", "m2/b", POLICY) is None
    [entry] = logged(capsys, "chain already running; acknowledging")
    assert (entry["severity"], entry["instance"], entry["holder"]) == ("INFO", INSTANCE, "m1/a")
    assert state.get_lease(INSTANCE).holder == "m1/a"


def test_another_message_is_retried_once_the_holders_heartbeat_is_stale() -> None:
    state, clock = setup(heartbeat_age=POLICY.stale_after + 1)
    with pytest.raises(LeaseSuspect) as e:
        take_lease(state, clock, INSTANCE, "m2", "m2/b", POLICY)
    assert (e.value.instance, e.value.holder) == (INSTANCE, "m1/a")
    assert str(e.value).startswith(f"lease on {INSTANCE} held by m1/a with a stale heartbeat")


def test_a_redelivery_waits_for_its_dead_predecessors_lease_and_takes_it_over(
    capsys: pytest.CaptureFixture[str],
) -> None:
    state, clock = setup("m1/a")
    taken = take_lease(state, clock, INSTANCE, "m1", "m1/b", POLICY)
    assert taken is not None and taken.acquired and taken.holder == "m1/b"
    assert (taken.takeovers, taken.previous_holder) == (1, "m1/a")
    # it waited for the expiry (60 s), by polls of about ttl/12, never past the takeover wait
    assert POLICY.ttl <= clock.monotonic() < POLICY.ttl + 1.5 * POLICY.takeover_poll
    [entry] = logged(capsys, "lease of a dead invocation taken over")
    assert (entry["severity"], entry["instance"], entry["previous_holder"]) == ("WARNING", INSTANCE, "m1/a")


class Renewing(InMemoryState):
    """The predecessor is alive after all: its heartbeat moves during the wait (same holder)."""

    def __init__(self, clock: FakeClock, *, new_holder: str | None = None) -> None:
        super().__init__()
        self.clock = clock
        self.new_holder = new_holder

    def get_lease(self, instance: str) -> Lease | None:
        current = super().get_lease(instance)
        if current is not None and self.clock.monotonic() > 20:
            if self.new_holder:
                self.leases[instance] = Lease(True, self.new_holder, current.expires, current.heartbeat)
            else:
                self.renew_lease(instance, current.holder, POLICY.ttl, self.clock.now())
        return super().get_lease(instance)


@pytest.mark.parametrize("successor", [None, "m9/z"])
def test_a_redelivery_acknowledges_when_the_holder_turns_out_alive_or_changed(
    capsys: pytest.CaptureFixture[str], successor: str | None
) -> None:
    clock = FakeClock(T0)
    state = Renewing(clock, new_holder=successor)
    state.acquire_lease(INSTANCE, "m1/a", POLICY.ttl, clock.now())
    assert take_lease(state, clock, INSTANCE, "m1", "m1/b", POLICY) is None
    assert clock.monotonic() < POLICY.ttl  # it did not wait for the expiry
    [entry] = logged(capsys, "chain already running; acknowledging")
    assert (entry["instance"], entry["holder"]) == (INSTANCE, successor or "m1/a")


class NeverExpiring(InMemoryState):
    """A lease that reads as live with an unchanged heartbeat however long one waits (a clock skew)."""

    def get_lease(self, instance: str) -> Lease | None:
        current = super().get_lease(instance)
        return None if current is None else Lease(True, current.holder, T0.add(days=1), current.heartbeat)

    def acquire_lease(self, instance: str, holder: str, ttl: float, now: pendulum.DateTime) -> Lease:
        current = super().get_lease(instance)
        if current is not None:
            return Lease(False, current.holder, T0.add(days=1), current.heartbeat)
        return super().acquire_lease(instance, holder, ttl, now)


def test_a_redelivery_gives_up_after_the_takeover_wait_naming_the_holder() -> None:
    clock = FakeClock(T0)
    state = NeverExpiring()
    state.acquire_lease(INSTANCE, "m1/a", POLICY.ttl, clock.now())
    with pytest.raises(LeaseSuspect) as e:
        take_lease(state, clock, INSTANCE, "m1", "m1/b", POLICY)
    assert (e.value.instance, e.value.holder) == (INSTANCE, "m1/a")
    assert "neither renewed nor expired after 90.0 s" in str(e.value)
    assert POLICY.takeover_wait <= clock.monotonic() < POLICY.takeover_wait + 1.5 * POLICY.takeover_poll


class Vanishing(InMemoryState):
    """The predecessor released its lease during the wait: the document is gone."""

    def get_lease(self, instance: str) -> Lease | None:
        self.leases.pop(instance, None)
        return None


def test_a_redelivery_takes_a_lease_that_vanished_during_the_wait() -> None:
    clock = FakeClock(T0)
    state = Vanishing()
    state.acquire_lease(INSTANCE, "m1/a", POLICY.ttl, clock.now())
    taken = take_lease(state, clock, INSTANCE, "m1", "m1/b", POLICY)
    assert taken is not None and taken.holder == "m1/b"
    assert clock.monotonic() < POLICY.takeover_poll * 1.5 + 1e-9


def test_takeover_polls_are_jittered_around_the_policys_interval() -> None:
    sleeps: list[float] = []

    class Recording(FakeClock):
        def sleep(self, seconds: float) -> None:
            sleeps.append(seconds)
            super().sleep(seconds)

    clock = Recording(T0)
    state = InMemoryState()
    state.acquire_lease(INSTANCE, "m1/a", POLICY.ttl, clock.now())
    take_lease(state, clock, INSTANCE, "m1", "m1/b", POLICY)
    assert len(sleeps) >= 6
    assert all(0.5 * POLICY.takeover_poll <= s <= 1.5 * POLICY.takeover_poll for s in sleeps)


# --- LeaseKeeper ----------------------------------------------------------------------------------------------


class CountingState(InMemoryState):
    def __init__(self) -> None:
        super().__init__()
        self.renewals: list[float] = []
        self.clock: FakeClock | None = None

    def renew_lease(self, instance: str, holder: str, ttl: float, now: pendulum.DateTime) -> bool:
        assert self.clock is not None
        self.renewals.append(self.clock.monotonic())
        return super().renew_lease(instance, holder, ttl, now)


def keeper(start: float = 1000.0) -> tuple[LeaseKeeper, CountingState, FakeClock]:
    state, clock = CountingState(), FakeClock(T0)
    clock.advance(start)  # a monotonic clock far from zero
    state.clock = clock
    lease = state.acquire_lease(INSTANCE, "m1/a", POLICY.ttl, clock.now())
    return LeaseKeeper(state, clock, INSTANCE, "m1/a", POLICY, lease.epoch), state, clock


def test_heartbeat_renews_only_once_renew_after_has_passed() -> None:
    k, state, clock = keeper()
    clock.advance(POLICY.renew_after - 1)
    k.heartbeat()
    assert state.renewals == []
    clock.advance(1)
    k.heartbeat()
    assert state.renewals == [1000 + POLICY.renew_after]
    k.heartbeat()
    assert len(state.renewals) == 1


def test_heartbeat_raises_lease_lost_when_the_lease_is_no_longer_ours() -> None:
    k, state, clock = keeper()
    state.leases[INSTANCE] = Lease(True, "m2/b", clock.now().add(seconds=60), clock.now())
    clock.advance(POLICY.renew_after)
    with pytest.raises(LeaseLost) as e:
        k.heartbeat()
    assert (e.value.instance, e.value.holder) == (INSTANCE, "m1/a")


def test_pause_sleeps_exactly_the_time_asked_in_slices_and_keeps_the_lease() -> None:
    k, state, clock = keeper()
    k.pause(100)
    assert clock.monotonic() == 1100
    assert len(state.renewals) >= 2
    assert state.get_lease(INSTANCE).expires >= clock.now()
    k.pause(0)
    k.pause(-5)
    assert clock.monotonic() == 1100
    k.pause(0.25)
    assert clock.monotonic() == pytest.approx(1100.25)


def test_takeover_polls_spread_below_and_above_the_policys_interval() -> None:
    import random

    sleeps: list[float] = []

    class Recording(FakeClock):
        def sleep(self, seconds: float) -> None:
            sleeps.append(seconds)
            super().sleep(seconds)

    random.seed(17)
    clock = Recording(T0)
    state = InMemoryState()
    state.acquire_lease(INSTANCE, "m1/a", POLICY.ttl, clock.now())
    take_lease(state, clock, INSTANCE, "m1", "m1/b", POLICY)
    assert min(sleeps) < POLICY.takeover_poll < max(sleeps)
