"""Create many Firestore documents fast, each only if it does not exist yet (planning a long backfill).

Why not the library's own paths:
- `WriteBatch.commit` is atomic: one document that exists already fails the whole batch, and a redelivered plan is
  nothing but documents that exist.
- `BulkWriter` sends `BatchWrite` (each write succeeds or fails on its own), but encodes every document through
  proto-plus (about 1 ms of CPU per task document: 41 s for the 36,720 tasks of the load run, measured), retries
  every error, ALREADY_EXISTS included, 15 times with a growing delay unless told otherwise, and throttles to
  500 writes per second.

So documents are encoded straight into the raw `Write` protobuf, exactly as `DocumentReference.create` builds it
(`exists: false` precondition, server timestamps as field transforms; tests/test_firestore_bulk.py compares the two
byte for byte), and sent in `BatchWrite` requests (documented: "does not apply the write operations atomically ...
Each write succeeds or fails independently", at most one write per document) from a few threads while the next
batch is encoded. A write answered ALREADY_EXISTS is a document that was there: counted, not retried (the code
Firestore answers a create of an existing document: "6 ALREADY_EXISTS: Document already exists", as reported from
production in firebase/firebase-js-sdk#5549; the emulator answers the same per write). ABORTED,
RESOURCE_EXHAUSTED and UNAVAILABLE are retried with backoff (the codes the library retries a whole `batch_write`
on); anything else is raised.

Writes are paced to `writes_per_second`: Firestore limits a collection whose documents carry sequential indexed
values (task windows, order keys) to 500 writes per second (documented, "Sharded timestamps"), so that is the
production default. It is also the starting rate of the "500-50-5 rule" for traffic to a new collection (start at
500 operations per second, then at most 50 % more every 5 minutes; documented in Firestore's best practices, and its
error-codes page names traffic beyond it as a cause of ABORTED): a fixed 500 per second is within the rule from the
first request, the first backfill into an empty `tasks` collection included, and never needs the ramp. Raising
`writes_per_second` is only safe with the sequential fields exempted from indexing, which the queries need. The
emulator has no such limit (the load run turns pacing off). Fewer fields per document is cheaper as well: "index
fan-out" is named the main cause of write latency (best practices), hence the task documents' left-out defaults.
"""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud._helpers import _datetime_to_pb_timestamp
from google.cloud.firestore_v1.bulk_batch import BulkWriteBatch
from google.cloud.firestore_v1.types import write as write_types
from google.protobuf import struct_pb2

BATCH_WRITES = 500
"""Writes per BatchWrite request (the API's maximum)."""
SENDERS = 4
"""Requests in flight at once: enough to keep the server busy while the next batch is encoded."""
RETRY_ATTEMPTS = 6
ALREADY_EXISTS = 6
RETRYABLE = frozenset({8, 10, 14})
"""RESOURCE_EXHAUSTED, ABORTED, UNAVAILABLE: what the library's default retry for `batch_write` retries."""

_WRITE = write_types.Write.pb()
_REQUEST_TIME = write_types.DocumentTransform.FieldTransform.ServerValue.REQUEST_TIME


def _fill(value_pb: Any, value: Any, stamps: dict[datetime.datetime, Any]) -> None:
    """Set a raw `Value` from a Python value, as the library's `_helpers.encode_value` does for these types."""
    if value is None:
        value_pb.null_value = struct_pb2.NULL_VALUE
    elif isinstance(value, bool):
        value_pb.boolean_value = value
    elif isinstance(value, int):
        value_pb.integer_value = value
    elif isinstance(value, float):
        value_pb.double_value = value
    elif isinstance(value, str):
        value_pb.string_value = value
    elif isinstance(value, datetime.datetime):
        stamp = stamps.get(value)
        if stamp is None:
            stamp = stamps[value] = _datetime_to_pb_timestamp(value)
        value_pb.timestamp_value.CopyFrom(stamp)
    elif isinstance(value, Mapping):
        fields = value_pb.map_value.fields
        for key, item in value.items():
            _fill(fields[key], item, stamps)
    elif isinstance(value, list | tuple):
        values = value_pb.array_value.values
        for item in value:
            _fill(values.add(), item, stamps)
    else:
        raise TypeError(f"cannot encode a {type(value).__name__} into a Firestore document; use str, int, float, "
                        "bool, None, datetime, list or dict")  # fmt: skip


def encode_create(path: str, data: Mapping[str, Any], stamps: dict[datetime.datetime, Any] | None = None) -> Any:
    """The raw `Write` that `DocumentReference(path).create(data)` sends: the document, `exists: false`, and a
    REQUEST_TIME transform per SERVER_TIMESTAMP field (top-level fields only: the task documents have no other).
    `stamps` caches timestamp conversions across documents (a backfill's tasks share their windows' bounds)."""
    stamps = {} if stamps is None else stamps
    write = _WRITE()
    write.update.name = path
    write.current_document.exists = False
    fields = write.update.fields
    for key, value in data.items():
        if value is firestore.SERVER_TIMESTAMP:
            write.update_transforms.add(field_path=key, set_to_server_value=_REQUEST_TIME)
        else:
            _fill(fields[key], value, stamps)
    return write


class _Encoder:
    """`encode_create` for a stream of documents of one shape: a document with the same keys as the previous one
    starts from a copy of its write and re-encodes only the values that differ (a backfill's tasks share most of
    theirs), which is a third of the cost. Byte-identical to `encode_create` (tests/test_firestore_bulk.py)."""

    def __init__(self) -> None:
        self.stamps: dict[datetime.datetime, Any] = {}
        self.previous: tuple[Mapping[str, Any], Any] | None = None

    def encode(self, path: str, data: Mapping[str, Any]) -> Any:
        previous = self.previous
        write = None if previous is None or previous[0].keys() != data.keys() else self._from(previous, path, data)
        if write is None:
            write = encode_create(path, data, self.stamps)
        self.previous = (data, write)
        return write

    def _from(self, previous: tuple[Mapping[str, Any], Any], path: str, data: Mapping[str, Any]) -> Any:
        """The write of `data` from a copy of the previous one, or None when a field is a server timestamp in one
        document and a value in the other (their transforms differ: encode it whole)."""
        before, template = previous
        write = _WRITE()
        write.CopyFrom(template)
        write.update.name = path
        fields = write.update.fields
        stamp = firestore.SERVER_TIMESTAMP
        for key, value in data.items():
            old = before[key]
            if value is old:
                continue
            if value is stamp or old is stamp:
                return None
            if type(value) is not type(old) or value != old:
                fields[key].Clear()
                _fill(fields[key], value, self.stamps)
        return write


class WritePacer:
    """A token bucket: at most `per_second` writes in any second (a burst of one second's worth at the start)."""

    def __init__(
        self,
        per_second: float,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if per_second <= 0:
            raise ValueError(f"writes per second must be positive, got {per_second!r}")
        self.per_second = per_second
        self._monotonic = monotonic
        self._sleep = sleep
        self._tokens = per_second
        self._at = monotonic()
        self.waited = 0.0

    def take(self, writes: int) -> None:
        """Wait until `writes` more writes fit the rate."""
        now = self._monotonic()
        self._tokens = min(self.per_second, self._tokens + (now - self._at) * self.per_second)
        self._at = now
        self._tokens -= writes
        if self._tokens < 0:
            delay = -self._tokens / self.per_second
            self.waited += delay
            self._sleep(delay)


@dataclass
class CreateOutcome:
    """Which documents were created and which existed already; how many requests and writes it took."""

    created: list[str] = field(default_factory=list)
    existed: list[str] = field(default_factory=list)
    requests: int = 0
    writes: int = 0
    paced_seconds: float = 0.0


class _Sender:
    """Sends batches of raw writes, collects their per-document outcomes, retries what may succeed later."""

    def __init__(self, client: Any, outcome: CreateOutcome, sleep: Callable[[float], None]) -> None:
        self.client = client
        self.outcome = outcome
        self.sleep = sleep
        self.lock = threading.Lock()

    def send(self, batch: Sequence[tuple[Any, Any]]) -> None:
        pending = list(batch)
        refused = 0
        for attempt in range(RETRY_ATTEMPTS):
            if attempt:
                self.sleep(min(0.1 * 2**attempt, 5.0))
            request = BulkWriteBatch(self.client)
            for reference, write in pending:
                # What BaseBatch.create does, with the write already encoded.
                request._document_references[reference._document_path] = reference
                request._add_write_pbs([write_types.Write.wrap(write)])
            response = request.commit()
            retry = []
            with self.lock:
                self.outcome.requests += 1
                self.outcome.writes += len(pending)
                for (reference, write), status in zip(pending, response.status, strict=True):
                    if status.code == 0:
                        self.outcome.created.append(reference.id)
                    elif status.code == ALREADY_EXISTS:
                        self.outcome.existed.append(reference.id)
                    elif status.code in RETRYABLE:
                        retry.append((reference, write))
                        refused = status.code
                    else:
                        raise gexc.from_grpc_status(status.code, f"creating {reference.id}: {status.message}")
            if not retry:
                return
            pending = retry
        raise gexc.from_grpc_status(
            refused, f"{len(pending)} documents still refused after {RETRY_ATTEMPTS} attempts, e.g. {pending[0][0].id}"
        )


def create_all(
    client: Any,
    documents: Iterable[tuple[Any, Mapping[str, Any]]],
    *,
    pacer: WritePacer | None = None,
    batch_writes: int = BATCH_WRITES,
    senders: int = SENDERS,
    sleep: Callable[[float], None] = time.sleep,
) -> CreateOutcome:
    """Create every (reference, data) that does not exist yet. A reference given twice is written once (one
    BatchWrite may not write a document twice); the second counts as existing."""
    outcome = CreateOutcome()
    sender = _Sender(client, outcome, sleep)
    encoder = _Encoder()
    seen: set[str] = set()
    futures: list[Future[None]] = []
    with ThreadPoolExecutor(senders, thread_name_prefix="create") as pool:
        batch: list[tuple[Any, Any]] = []
        for reference, data in documents:
            path = reference._document_path
            if path in seen:
                with sender.lock:
                    outcome.existed.append(reference.id)
                continue
            seen.add(path)
            batch.append((reference, encoder.encode(path, data)))
            if len(batch) == batch_writes:
                futures.append(_submit(pool, sender, batch, pacer))
                batch = []
        if batch:
            futures.append(_submit(pool, sender, batch, pacer))
        for future in futures:
            future.result()
    outcome.paced_seconds = pacer.waited if pacer else 0.0
    return outcome


def _submit(pool: ThreadPoolExecutor, sender: _Sender, batch: list[tuple[Any, Any]], pacer: WritePacer | None) -> Any:
    if pacer is not None:
        pacer.take(len(batch))
    return pool.submit(sender.send, batch)
