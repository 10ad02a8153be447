"""The project's Admin API call budget, shared by every chain, without a Firestore write per call.

The Admin API allows about 180 requests per minute per user by default, and every chain of a deployment calls it as
the same service account. Each chain spends at most its share: `api_calls_per_minute` divided by the number of live
chains, which is the number of live instance leases (one count query, re-read every `REFRESH_SECONDS`). Within its
share a chain runs a token bucket in memory: every call it makes draws one token (a call that cannot wait, such as
the export that keeps the instance busy, may overdraw it), and polls wait until a token is there. The bucket holds
`BURST_SECONDS` of refill, so that the dense polls around an export's end can be paid for, and refills at
share / (60 + BURST_SECONDS) per second: a full bucket plus a minute of refill is the share, so all chains together
stay within the budget in any 60 s (sustained, 60 / (60 + BURST_SECONDS) of it).

Why not one token bucket per project in Firestore: every call (or every batch of calls) would be a transaction on
one hot document; the emulator already aborts transactions on one document at 4 writers, and production adds a
write, and its latency, to the poll path. The cost of the share instead: a paused chain keeps its share unused, and
a chain that just started is counted by the others only at their next re-read (up to `REFRESH_SECONDS` at the old,
larger share: at most a fourteenth of the budget more in that minute). The default budget, 150, leaves that
headroom under the default quota of 180.

A 429 (quota) drains the bucket and holds the chain back `QUOTA_BACKOFF_SECONDS`: polls are never retried at once.
"""

from __future__ import annotations

import math
from typing import Any

from shared.app.ports import AdminApi, Clock, ObjectStore, Services, StateStore, WorkBus
from shared.core import logs
from shared.core.config import Config
from shared.core.errors import StateUnavailable
from shared.core.operations import Operation

REFRESH_SECONDS = 10.0
"""How often a chain re-reads how many chains share the budget."""
BURST_SECONDS = 10.0
"""A chain may save up this many seconds of refill for a burst (the dense polls around an export's end)."""
QUOTA_BACKOFF_SECONDS = 10.0
"""After a 429, the chain's bucket is this many seconds of its share in debt."""


class CallBudget:
    """One chain's share of the project's Admin API calls per minute: a token bucket, in memory."""

    def __init__(self, state: StateStore, clock: Clock, per_minute: float, *, instance: str) -> None:
        self._state = state
        self._clock = clock
        self._per_minute = per_minute
        self._instance = instance
        self._chains = 1
        self._read_at = -math.inf
        self._balance = self.capacity
        self._at = clock.monotonic()

    @property
    def chains(self) -> int:
        """Chains sharing the budget, as last read."""
        return self._chains

    @property
    def rate(self) -> float:
        """This chain's refill, in calls per second (its share of a minute, bucket included)."""
        return self._per_minute / (60.0 + BURST_SECONDS) / self._chains

    @property
    def capacity(self) -> float:
        return max(1.0, self.rate * BURST_SECONDS)

    def spend(self) -> None:
        """A call is being made now (it may overdraw the bucket). The chain's first call reads its share first."""
        if self._read_at == -math.inf:
            self.refresh()
        self._refill()
        self._balance -= 1

    def wait_seconds(self, *, keep: float = 0.0) -> float:
        """How long until this chain may make its next call, leaving `keep` tokens in the bucket."""
        self.refresh()
        self._refill()
        needed = 1 + min(keep, self.capacity - 1)
        return 0.0 if self._balance >= needed else (needed - self._balance) / self.rate

    def affordable(self, before: float, during: float) -> float:
        """How many calls this chain may make during `during` seconds that start `before` seconds from now (what
        the bucket saves up until then, at most its capacity, and its refill meanwhile)."""
        self._refill()
        saved = min(self.capacity, max(0.0, self._balance) + self.rate * max(0.0, before))
        return saved + self.rate * max(0.0, during)

    def refused(self) -> None:
        """The API answered 429: drain the bucket and hold back; the number of chains is re-read."""
        self._refill()
        self._balance = min(self._balance, 0.0) - self.rate * QUOTA_BACKOFF_SECONDS
        self._read_at = -math.inf
        logs.warning(
            "Admin API quota exceeded: this chain holds its calls back",
            instance=self._instance,
            seconds=round(self.wait_seconds(), 1),
            chains=self._chains,
            per_minute=self._per_minute,
        )

    def refresh(self) -> None:
        """Re-read the number of live chains when it is due (a failed read keeps the last one)."""
        now = self._clock.monotonic()
        if now - self._read_at < REFRESH_SECONDS:
            return
        self._read_at = now
        try:
            chains = max(1, self._state.live_chains(self._clock.now()))
        except StateUnavailable as exc:
            logs.warning("live chains not counted; the budget share stays", instance=self._instance, error=str(exc))
            return
        if chains != self._chains:
            self._refill()
            self._chains = chains
            self._balance = min(self._balance, self.capacity)

    def _refill(self) -> None:
        now = self._clock.monotonic()
        self._balance = min(self.capacity, self._balance + (now - self._at) * self.rate)
        self._at = now


class BudgetedAdminApi:
    """The Admin API, every call drawn from a chain's budget (follows shared.app.ports.AdminApi)."""

    def __init__(self, inner: AdminApi, budget: CallBudget) -> None:
        self._inner = inner
        self._budget = budget

    def export(self, project: str, instance: str, body: dict[str, Any]) -> Operation:
        self._budget.spend()
        return self._inner.export(project, instance, body)

    def get_operation(self, project: str, name: str) -> Operation:
        self._budget.spend()
        return self._inner.get_operation(project, name)

    def list_operations(self, project: str, instance: str, max_results: int = 100) -> list[Operation]:
        self._budget.spend()
        return self._inner.list_operations(project, instance, max_results)

    def cancel_operation(self, project: str, name: str) -> None:
        self._budget.spend()
        self._inner.cancel_operation(project, name)


class BudgetedServices:
    """A chain's view of the services: the same ones, with the Admin API drawn from its budget (follows
    shared.app.ports.Services)."""

    def __init__(self, inner: Services, budget: CallBudget) -> None:
        self._inner = inner
        self.sqladmin = BudgetedAdminApi(inner.sqladmin, budget)

    @property
    def config(self) -> Config:
        return self._inner.config

    @property
    def state(self) -> StateStore:
        return self._inner.state

    @property
    def objects(self) -> ObjectStore:
        return self._inner.objects

    @property
    def bus(self) -> WorkBus:
        return self._inner.bus

    @property
    def clock(self) -> Clock:
        return self._inner.clock
