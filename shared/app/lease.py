"""The instance lease, whole: who may run an instance's chain, for how long, and how it changes hands.

- Identity: a holder is `<message id>/<random>`, so a redelivery of the message that started a dead
  invocation recognises its own predecessor (`started_by`).
- Mechanism: `decide_acquire` is the one rule for taking a lease (free, expired, or already ours) and
  `decide_renew` the one for keeping it; each state store applies them atomically (a Firestore transaction, or a
  lock in memory).
- Epoch: every acquisition by a new holder gives the lease a greater epoch. The holder's `Fence` (instance, holder,
  epoch) is a precondition of every task transition it makes (the state store checks it in the same transaction),
  so a holder that lost the lease changes nothing, even if a call of its hung for minutes.
- Timing policy (`LeasePolicy`): every fraction of the lease's time-to-live in one place.
- Taking it for a `work` message (`take_lease`), keeping it alive while working (`LeaseKeeper`), and the errors
  (`LeaseLost`, `LeaseSuspect`, in shared/core/errors.py) raised when it cannot be kept or taken.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass

import pendulum

from shared.app.ports import Clock, StateStore
from shared.core import logs
from shared.core.errors import LeaseLost, LeaseSuspect

HANDOVER_HOLDER = "handover"
"""The holder of a lease given up for a fresh work message to take at once (see `hand_over`)."""


@dataclass(frozen=True)
class Lease:
    acquired: bool
    holder: str
    expires: pendulum.DateTime
    heartbeat: pendulum.DateTime
    # Consecutive takeovers of an expired lease with no renewal in between: how often in a row the
    # chain's invocation died before it got going.
    takeovers: int = 0
    # Whose expired lease this acquisition took over (None: the lease was free, handed over, or ours).
    previous_holder: str | None = None
    # Grows with every acquisition by a new holder (see `next_epoch`); kept by renewals.
    epoch: int = 0

    def live(self, now: pendulum.DateTime) -> bool:
        return self.expires > now


@dataclass(frozen=True)
class LeasePolicy:
    """Every timing rule of the lease, as fractions of its time-to-live."""

    ttl: float

    @property
    def renew_after(self) -> float:
        """A holder renews once this much time passed since its last renewal (three chances per ttl)."""
        return self.ttl / 3

    @property
    def sleep_slice(self) -> float:
        """The longest a holder sleeps between heartbeats."""
        return self.ttl / 4

    @property
    def stale_after(self) -> float:
        """A heartbeat older than this suggests a dead holder: the message is retried instead of acknowledged."""
        return self.ttl / 2

    @property
    def takeover_wait(self) -> float:
        """How long a redelivery waits for its own dead predecessor's lease to expire."""
        return self.ttl * 1.5

    @property
    def takeover_poll(self) -> float:
        """The mean interval between reads while waiting for that expiry."""
        return self.ttl / 12


@dataclass(frozen=True)
class Fence:
    """What a task transition is conditional on: the instance's lease is still `holder`'s, at `epoch`."""

    instance: str
    holder: str
    epoch: int

    def admits(self, current: Lease | None) -> bool:
        return current is not None and current.holder == self.holder and current.epoch == self.epoch


def next_epoch(current: Lease | None, now: pendulum.DateTime) -> int:
    """The epoch of a lease taken by a new holder: greater than the current one, and, since a released lease's
    document is deleted, at least the acquisition time in milliseconds (so epochs keep growing across releases)."""
    return max((current.epoch if current is not None else 0) + 1, int(now.timestamp() * 1000))


def new_holder(message_id: str) -> str:
    return f"{message_id}/{uuid.uuid4().hex[:12]}"


def started_by(holder: str | None) -> str:
    """The id of the message whose invocation took the lease as `holder`."""
    return (holder or "").split("/", 1)[0]


def decide_acquire(current: Lease | None, holder: str, ttl: float, now: pendulum.DateTime) -> Lease:
    """The one rule for taking a lease, applied atomically by the state store.

    Returns the current lease (not acquired) if another holder's is live; otherwise the new lease. Taking over
    an expired lease from another holder counts a takeover; a handed-over lease keeps the count.
    """
    takeovers, previous = 0, None
    if current is not None:
        if current.holder != holder and current.live(now):
            return Lease(
                False, current.holder, current.expires, current.heartbeat, current.takeovers, None, current.epoch
            )
        if current.holder == HANDOVER_HOLDER:
            takeovers = current.takeovers
        elif current.holder != holder:
            takeovers, previous = current.takeovers + 1, current.holder
    ours = current is not None and current.holder == holder
    epoch = current.epoch if ours and current is not None else next_epoch(current, now)
    return Lease(True, holder, now.add(seconds=ttl), now, takeovers, previous, epoch)


def decide_renew(current: Lease | None, holder: str, ttl: float, now: pendulum.DateTime) -> Lease | None:
    """The one rule for keeping a lease: extend it if it is still `holder`'s (even if it expired meanwhile and
    nobody took it); None if it is not. A renewal never re-creates a lease that was taken and released since: the
    holder would come back at a new epoch and its fence would no longer match anyway."""
    if current is None or current.holder != holder:
        return None
    return Lease(True, holder, now.add(seconds=ttl), now, 0, None, current.epoch)


def take_lease(
    state: StateStore, clock: Clock, instance: str, message_id: str, holder: str, policy: LeasePolicy
) -> Lease | None:
    """Take the instance's lease for the invocation of `message_id`; None when a live worker holds it.

    If the holder was started by this very message, this is a redelivery after that invocation died (killed,
    out of memory): nothing else would wake the chain before the next tick, so wait, with plain reads, until
    the lease expires and take it over (or until its heartbeat moves: the holder is alive after all). Any
    other message is acknowledged while the holder's heartbeat is fresh, and retried (LeaseSuspect) once it
    is stale.
    """
    lease = state.acquire_lease(instance, holder, policy.ttl, clock.now())
    if lease.acquired:
        return lease
    seen = lease
    if started_by(seen.holder) != message_id:
        if (clock.now() - seen.heartbeat).total_seconds() > policy.stale_after:
            raise LeaseSuspect(instance, seen.holder, "with a stale heartbeat")
        logs.info("chain already running; acknowledging", instance=instance, holder=seen.holder)
        return None
    deadline = clock.monotonic() + policy.takeover_wait
    while clock.monotonic() < deadline:
        clock.sleep(policy.takeover_poll * random.uniform(0.5, 1.5))
        current = state.get_lease(instance)
        if current is not None and (current.holder != seen.holder or current.heartbeat > seen.heartbeat):
            logs.info("chain already running; acknowledging", instance=instance, holder=current.holder)
            return None
        expired = current is None or not current.live(clock.now())
        if expired and (taken := state.acquire_lease(instance, holder, policy.ttl, clock.now())).acquired:
            logs.warning("lease of a dead invocation taken over", instance=instance, previous_holder=seen.holder)
            return taken
    raise LeaseSuspect(instance, seen.holder, f"neither renewed nor expired after {policy.takeover_wait} s")


class LeaseKeeper:
    """Keeps one holder's lease alive while it works: heartbeats, and sleeps short enough not to lose it."""

    def __init__(
        self, state: StateStore, clock: Clock, instance: str, holder: str, policy: LeasePolicy, epoch: int
    ) -> None:
        self.state = state
        self.clock = clock
        self.instance = instance
        self.holder = holder
        self.policy = policy
        self.fence = Fence(instance, holder, epoch)
        self._renewed_at = clock.monotonic()

    def heartbeat(self) -> None:
        """Renew the lease if it is due; raises LeaseLost if it is no longer ours.

        A renewal counts from when it was asked (the expiry it writes is computed then), not from when it
        returned: a holder stalled inside the call may come back to a lease that already expired and was taken.
        So a renewal that itself took `renew_after` or longer is confirmed by another before the holder acts.
        """
        while self.clock.monotonic() - self._renewed_at >= self.policy.renew_after:
            asked = self.clock.monotonic()
            if not self.state.renew_lease(self.instance, self.holder, self.policy.ttl, self.clock.now()):
                raise LeaseLost(self.instance, self.holder)
            self._renewed_at = asked

    def pause(self, seconds: float) -> None:
        """Sleep `seconds` in slices short enough to keep the lease alive."""
        end = self.clock.monotonic() + max(0.0, seconds)
        while (left := end - self.clock.monotonic()) > 0:
            self.heartbeat()
            self.clock.sleep(min(left, self.policy.sleep_slice))

    def release(self) -> None:
        self.state.release_lease(self.instance, self.holder)

    def hand_over(self) -> None:
        """Give up the lease for a fresh work message to take at once, keeping the takeover count."""
        self.state.hand_over_lease(self.instance, self.holder, self.clock.now())
