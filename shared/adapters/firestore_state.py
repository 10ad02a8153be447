"""Pipeline state in Firestore: the only module tree that touches Firestore. Collections (names carry the
configured prefix):

- `tasks`: one document per (source, window, schema | table), id `<source>.<ts_nodash>.schema` or
  `<source>.<ts_nodash>.table.<name>`, so planning twice creates nothing new (firestore_tasks.py).
- `watermarks`: per (source, table): the end of the contiguous run of exported windows, and
  `watermark_log`: one document per advance (from, to, at), the audit trail of every move (firestore_progress.py).
- `cursors`: per source: `planned_through`, the end of the last live window the planner queued.
- `manifests`: per (source, window): what landed in the bucket for a complete window.
- `leases`: per instance: the worker chain holding it, its expiry and last heartbeat (firestore_leases.py).
- `breakers`: per instance paused by an instance-level condition (stopped, IAM, quota): since when, until when.

Every public call maps Firestore's errors through `ERRORS` (the one table for this service).
"""

from __future__ import annotations

from google.api_core import exceptions as gexc
from google.auth.exceptions import GoogleAuthError
from google.cloud import firestore

from shared.adapters.errormap import ErrorTable, maps_errors
from shared.adapters.firestore_leases import FirestoreLeases, is_contention
from shared.adapters.firestore_progress import FirestoreProgress
from shared.adapters.firestore_tasks import FirestoreTasks
from shared.core.errors import StateUnavailable

ERRORS: ErrorTable = (
    (is_contention, StateUnavailable),
    (
        (
            gexc.ServiceUnavailable,
            gexc.DeadlineExceeded,
            gexc.InternalServerError,
            gexc.TooManyRequests,
            gexc.PermissionDenied,
            gexc.Unauthenticated,
            gexc.RetryError,
            GoogleAuthError,
        ),
        StateUnavailable,
    ),
)


@maps_errors(ERRORS)
class StateStore(FirestoreTasks, FirestoreProgress, FirestoreLeases):
    """Typed access to the pipeline's Firestore collections (follows shared.app.ports.StateStore)."""

    def __init__(
        self, client: firestore.Client, prefix: str = "cdc_", *, writes_per_second: float | None = None
    ) -> None:
        self.client = client
        self.writes_per_second = writes_per_second
        self._tasks = client.collection(f"{prefix}tasks")
        self._watermarks = client.collection(f"{prefix}watermarks")
        self._watermark_log = client.collection(f"{prefix}watermark_log")
        self._cursors = client.collection(f"{prefix}cursors")
        self._leases = client.collection(f"{prefix}leases")
        self._manifests = client.collection(f"{prefix}manifests")
        self._breakers = client.collection(f"{prefix}breakers")
