"""Planning's create-only writes (shared/adapters/firestore_bulk.py), without the emulator: the raw encoding is the
library's own `create()` byte for byte, unsupported values are refused by name, and the pacer keeps the rate."""

from __future__ import annotations

import datetime
from types import SimpleNamespace

import pendulum
import pytest
from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1 import _helpers
from google.cloud.firestore_v1.types import BatchWriteResponse
from google.cloud.firestore_v1.types import write as write_types
from google.rpc import status_pb2

from shared.adapters.firestore_bulk import RETRY_ATTEMPTS, WritePacer, _Encoder, create_all, encode_create
from shared.adapters.firestore_tasks import task_from_snapshot, task_to_doc
from shared.core.tasks import Task

PATH = "projects/p/databases/(default)/documents/cdc_tasks/shop.20260101T000000.table.orders"
LOW = pendulum.datetime(2026, 1, 1, tz="UTC")


def _library_create(data: dict) -> bytes:
    (write,) = _helpers.pbs_for_create(PATH, data)
    return write_types.Write.pb(write).SerializeToString(deterministic=True)


@pytest.mark.parametrize(
    "task",
    [
        Task("shop", "p:i", "shop", "orders", LOW, LOW.add(hours=1)),
        Task("shop", "p:i", "shop", None, LOW, LOW.add(hours=1), priority=1, backfill=True, offload=True),
        Task(
            "shop", "p:i", "shop", "orders", LOW, LOW.add(hours=1), state="failed", attempts=3, generation=2,
            error={"code": "X", "message": "boom", "details": {"n": 1, "ok": False, "items": [1, "a", None]}},
            not_before=LOW.add(minutes=3), done_at=LOW.add(hours=2), created_at=LOW, operation="op-1",
        ),
    ],
)  # fmt: skip
def test_a_task_document_is_encoded_exactly_as_the_library_creates_it(task: Task) -> None:
    data = {**task_to_doc(task), "force_token": "bf-1", "ratio": 0.5}
    assert encode_create(PATH, data).SerializeToString(deterministic=True) == _library_create(data)


def test_server_timestamps_become_the_same_transforms_and_cached_stamps_change_nothing() -> None:
    data = {"created_at": firestore.SERVER_TIMESTAMP, "low": LOW, "high": LOW.add(hours=1)}
    stamps: dict[datetime.datetime, object] = {}
    first = encode_create(PATH, data, stamps)
    again = encode_create(PATH, data, stamps)  # the timestamps now come from the cache
    assert len(stamps) == 2
    assert first.SerializeToString(deterministic=True) == again.SerializeToString(deterministic=True)
    assert again.SerializeToString(deterministic=True) == _library_create(data)
    assert first.current_document.exists is False


def test_a_value_firestore_cannot_hold_is_refused_naming_its_type() -> None:
    with pytest.raises(TypeError, match=r"cannot encode a set .* use str, int"):
        encode_create(PATH, {"tables": {"a", "b"}})


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_the_pacer_lets_one_second_of_writes_through_then_keeps_the_rate() -> None:
    clock = _Clock()
    pacer = WritePacer(500, monotonic=clock.monotonic, sleep=clock.sleep)
    pacer.take(500)
    assert clock.slept == []  # a small plan never waits
    for _ in range(4):
        pacer.take(500)
    assert clock.now == pytest.approx(4.0)  # 2,500 writes at 500/s: 4 s after the first second's burst
    assert pacer.waited == pytest.approx(4.0)


def test_the_pacer_refuses_a_rate_that_is_not_positive() -> None:
    with pytest.raises(ValueError, match="must be positive, got 0"):
        WritePacer(0)


class _FakeApi:
    """Answers each BatchWrite request with the next scripted list of per-write status codes."""

    def __init__(self, *answers: list[int]) -> None:
        self.answers = list(answers)
        self.requests: list[list[str]] = []

    def batch_write(self, request: dict, metadata: object = None, **_: object) -> BatchWriteResponse:
        self.requests.append([w.update.name.rsplit("/", 1)[1] for w in request["writes"]])
        codes = self.answers.pop(0)
        assert len(codes) == len(request["writes"])
        return BatchWriteResponse(status=[status_pb2.Status(code=c, message=f"code {c}") for c in codes])


def _client(api: _FakeApi) -> SimpleNamespace:
    return SimpleNamespace(_firestore_api=api, _database_string="projects/p/databases/(default)", _rpc_metadata=())


def _refs(*ids: str) -> list[tuple[SimpleNamespace, dict]]:
    return [(SimpleNamespace(id=i, _document_path=f"{PATH.rsplit('/', 1)[0]}/{i}"), {"state": "pending"}) for i in ids]


def test_each_write_stands_alone_an_existing_document_is_counted_and_a_busy_one_retried() -> None:
    api = _FakeApi([0, 6, 10], [0])  # created, ALREADY_EXISTS, ABORTED; then the retry is created
    outcome = create_all(_client(api), _refs("a", "b", "c"), sleep=lambda _: None)
    assert (sorted(outcome.created), outcome.existed) == (["a", "c"], ["b"])
    assert api.requests == [["a", "b", "c"], ["c"]]  # only the refused write is sent again
    assert (outcome.requests, outcome.writes) == (2, 4)


def test_a_document_given_twice_is_written_once_and_counted_as_existing() -> None:
    api = _FakeApi([0])
    outcome = create_all(_client(api), _refs("a", "a"), sleep=lambda _: None)
    assert (outcome.created, outcome.existed, api.requests) == (["a"], ["a"], [["a"]])


def test_a_write_that_cannot_succeed_is_raised_naming_the_document() -> None:
    with pytest.raises(gexc.InvalidArgument, match="creating b: code 3"):
        create_all(_client(_FakeApi([0, 3])), _refs("a", "b"), sleep=lambda _: None)


def test_a_write_still_refused_after_every_attempt_is_raised() -> None:
    api = _FakeApi(*[[8]] * RETRY_ATTEMPTS)
    with pytest.raises(gexc.ResourceExhausted, match=f"1 documents still refused after {RETRY_ATTEMPTS} attempts"):
        create_all(_client(api), _refs("a"), sleep=lambda _: None)


def test_batches_are_cut_at_the_batch_size() -> None:
    api = _FakeApi([0, 0], [0])
    outcome = create_all(_client(api), _refs("a", "b", "c"), batch_writes=2, senders=1, sleep=lambda _: None)
    assert (api.requests, len(outcome.created)) == ([["a", "b"], ["c"]], 3)


def test_a_stream_of_documents_encodes_each_exactly_as_alone() -> None:
    """The encoder re-encodes only what differs from the previous document: every write must still be the one
    `encode_create` (and so the library) makes for that document alone."""
    base = task_to_doc(Task("shop", "p:i", "shop", "orders", LOW, LOW.add(hours=1), attempts=2, error={"code": "A"}))
    assert {"attempts", "error", "created_at"} <= base.keys()  # so that the changes below keep the same keys
    documents = [
        base,
        {**base, "table": "payments"},  # one value differs
        {**base, "table": None, "low": LOW.add(hours=1), "error": {"code": "X", "nested": {"n": [1, None]}}},
        {**base, "error": {"code": "Y"}, "attempts": True},  # a dict that changed, an int that became a bool
        {**base, "created_at": LOW},  # a server timestamp that became a value: encoded afresh
        {**base, "extra": 1},  # other keys: encoded afresh
        base,
        base,  # the same document again
    ]
    encoder = _Encoder()
    for number, data in enumerate(documents):
        path = f"{PATH}{number}"
        expected = encode_create(path, data).SerializeToString(deterministic=True)
        assert encoder.encode(path, data).SerializeToString(deterministic=True) == expected, number


@pytest.mark.parametrize(
    "task",
    [
        Task("shop", "p:i", "shop", "orders", LOW, LOW.add(hours=1)),
        Task("shop", "p:i", "shop", None, LOW, LOW.add(hours=1), priority=1, backfill=True, offload=True),
        Task("shop", "p:i", "shop", "orders", LOW, LOW.add(hours=2), purpose="verify", run="m-1", attempts=0),
    ],
)  # fmt: skip
def test_a_task_document_without_its_defaults_reads_back_as_the_same_task(task: Task) -> None:
    """New documents leave out the fields at their default; the reader must fill exactly those back in."""
    doc = task_to_doc(task)
    assert doc.pop("created_at") is firestore.SERVER_TIMESTAMP
    snapshot = SimpleNamespace(to_dict=lambda: doc, update_time=None)
    assert task_from_snapshot(snapshot) == task
    assert {"state", "finalized", "order_key"} <= doc.keys()  # compared with == or ordered on by the queries
    assert {"attempts", "generation", "error", "not_before", "uri"}.isdisjoint(doc)
