"""Instance leases in Firestore: the rule of shared/app/lease.py applied in a transaction."""

from __future__ import annotations

from typing import Any

import pendulum
from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from shared.adapters.firestore_tasks import utc
from shared.app.lease import HANDOVER_HOLDER, Fence, Lease, decide_acquire, decide_renew
from shared.core.errors import LeaseLost


def is_contention(exc: BaseException) -> bool:
    """Firestore gave up on a transaction because others changed its documents at the same moment: the client
    raises ValueError("Failed to commit transaction in N attempts") from the last Aborted (by type, not text)."""
    return isinstance(exc, gexc.Aborted) or (isinstance(exc, ValueError) and isinstance(exc.__cause__, gexc.Aborted))


def _lease_of(snap: Any) -> Lease:
    doc = snap.to_dict()
    takeovers, epoch = int(doc.get("takeovers") or 0), int(doc.get("epoch") or 0)
    return Lease(False, doc["holder"], utc(doc["expires"]), utc(doc["heartbeat"]), takeovers, None, epoch)


def _lease_doc(lease: Lease) -> dict[str, Any]:
    return {
        "holder": lease.holder,
        "expires": lease.expires,
        "heartbeat": lease.heartbeat,
        "takeovers": lease.takeovers,
        "epoch": lease.epoch,
    }


class FirestoreLeases:
    """The `leases` collection: one document per instance; and `breakers`: an instance paused by an
    instance-level condition (shared/app/breaker.py), written only by its lease holder."""

    client: firestore.Client
    _leases: Any
    _breakers: Any

    def breaker(self, instance: str) -> dict[str, Any] | None:
        snap = self._breakers.document(instance).get()
        return snap.to_dict() if snap.exists else None

    def save_breaker(self, instance: str, record: dict[str, Any]) -> None:
        self._breakers.document(instance).set(record)

    def clear_breaker(self, instance: str) -> None:
        self._breakers.document(instance).delete()

    def acquire_lease(self, instance: str, holder: str, ttl: float, now: pendulum.DateTime) -> Lease:
        """Take the instance's lease if it is free, expired, or already ours."""
        ref = self._leases.document(instance)

        @firestore.transactional
        def acquire(transaction: Any) -> Lease:
            snap = ref.get(transaction=transaction)
            lease = decide_acquire(_lease_of(snap) if snap.exists else None, holder, ttl, now)
            if lease.acquired:
                transaction.set(ref, _lease_doc(lease))
            return lease

        try:
            return acquire(self.client.transaction())
        except Exception as exc:
            # Firestore gave up on the transaction: other workers changed the lease at the same moment
            # (duplicates racing for an expired lease). It is not ours: answer with whoever holds it now.
            if not is_contention(exc):
                raise
            return self.get_lease(instance) or Lease(False, "", now, now)

    def renew_lease(self, instance: str, holder: str, ttl: float, now: pendulum.DateTime) -> bool:
        """Extend our lease; False if it is no longer ours (we must stop)."""
        ref = self._leases.document(instance)

        @firestore.transactional
        def renew(transaction: Any) -> bool:
            snap = ref.get(transaction=transaction)
            lease = decide_renew(_lease_of(snap) if snap.exists else None, holder, ttl, now)
            if lease is not None:
                transaction.update(ref, {"expires": lease.expires, "heartbeat": lease.heartbeat, "takeovers": 0})
            return lease is not None

        try:
            return renew(self.client.transaction())
        except Exception as exc:
            if not is_contention(exc):
                raise
            current = self.get_lease(instance)
            return current is not None and current.holder == holder and current.live(now)

    def check_fence(self, transaction: Any, fence: Fence) -> None:
        """Inside a transaction: raise LeaseLost unless the instance's lease is still the fence's (holder, epoch).
        The read makes the transaction fail if the lease changes before it commits."""
        snap = self._leases.document(fence.instance).get(transaction=transaction)
        if not fence.admits(_lease_of(snap) if snap.exists else None):
            raise LeaseLost(fence.instance, fence.holder)

    def release_lease(self, instance: str, holder: str) -> None:
        ref = self._leases.document(instance)

        @firestore.transactional
        def release(transaction: Any) -> None:
            snap = ref.get(transaction=transaction)
            if snap.exists and snap.get("holder") == holder:
                transaction.delete(ref)

        release(self.client.transaction())

    def hand_over_lease(self, instance: str, holder: str, now: pendulum.DateTime) -> None:
        """Give up our lease for a fresh work message to take at once, keeping the takeover count."""
        ref = self._leases.document(instance)

        @firestore.transactional
        def hand_over(transaction: Any) -> None:
            snap = ref.get(transaction=transaction)
            if snap.exists and snap.get("holder") == holder:
                transaction.update(ref, {"holder": HANDOVER_HOLDER, "expires": now})

        hand_over(self.client.transaction())

    def get_lease(self, instance: str) -> Lease | None:
        snap = self._leases.document(instance).get()
        return _lease_of(snap) if snap.exists else None

    def live_chains(self, now: pendulum.DateTime) -> int:
        """Leases whose expiry is after `now`: one count aggregation (billed as one read per 1,000 index entries,
        confirmed from Firestore's pricing documentation), over the automatic single-field index on `expires`."""
        query = self._leases.where(filter=FieldFilter("expires", ">", now)).count(alias="live")
        return int(query.get()[0][0].value)
