"""Packing in the chain, in-process (shared/app/packs.py): which windows are packed, that the per-window objects,
manifests and watermarks are exactly those of one export per window, and crashes at every point of a pack.

The fake Admin API answers each query as PostgreSQL would: a window's query gives that window's rows, a pack query
(shared/core/packing.pack_query) each window's rows behind its index, written by COPY's CSV rules (copy_csv).
"""

from __future__ import annotations

import copy
import gzip
import re
from collections.abc import Iterator
from typing import Any

import pendulum
import pytest

from shared.app import hooks
from shared.app.lease import Fence
from shared.app.planner import plan_backfill, plan_tick
from shared.app.worker import run_work
from shared.core.config import parse_config
from shared.core.csvformat import Dialect, decompressed
from shared.core.errors import ConfigError, LeaseLost
from shared.core.messages import Backfill, Tick
from shared.core.packing import INDEX_COLUMN
from shared.core.tasks import Task
from shared.core.templates import Templates
from shared.testing.services import FakeServices
from tests.test_chain import INSTANCE, SCHEMA_CSV, TABLES, config_doc
from tests.test_packing_split import copy_csv

T0 = pendulum.datetime(2026, 1, 1, tz="UTC")
HOUR = pendulum.duration(hours=1)
TEMPLATES = Templates()
_PART = re.compile(rf"\(SELECT (\d+) AS {INDEX_COLUMN}, w\.\* FROM \((.*?)\) AS w\)(?: UNION ALL |$)")
_WINDOW = re.compile(r"FROM public\.(\w+) WHERE event_timestamp >= TIMESTAMPTZ '([^']+)'")


def window_rows(query: str) -> list[list[str | None]]:
    """What PostgreSQL returns for one window's query: rows that differ per table and window, awkward values too."""
    table, low = _WINDOW.search(query).groups()  # type: ignore[union-attr]
    hour = pendulum.parse(low).hour  # type: ignore[union-attr]
    return [
        [f"{hour}{i}", low, None if i % 3 == 0 else f'{table} "{i}", x\ny', "" if i % 2 else "\\."]
        for i in range(hour % 4)
    ]


def content(body: dict[str, Any]) -> bytes:
    context = body["exportContext"]
    options = context["csvExportOptions"]
    query = options["selectQuery"]
    dialect = Dialect.from_hex(
        delimiter=options["fieldsTerminatedBy"], quote=options["quoteCharacter"], escape=options["escapeCharacter"],
        gzip=False,
    )  # fmt: skip
    if "information_schema" in query:
        data = SCHEMA_CSV
    elif query.startswith("(SELECT "):
        rows = [[index, *row] for index, part in _PART.findall(query) for row in window_rows(part)]
        data = copy_csv(rows, dialect)
    else:
        data = copy_csv(window_rows(query), dialect)
    return gzip.compress(data, mtime=1234) if context["uri"].endswith(".gz") else data


def make(*, pack: int, csv: dict[str, Any] | None = None, start: pendulum.DateTime | None = None) -> FakeServices:
    doc = config_doc(pack={"max_windows": pack})
    if csv:
        doc["sources"][0]["csv"] = csv
    return FakeServices(parse_config(doc), start=start or T0.add(hours=30), duration=2.0, content=content)


def backfill(svc: FakeServices, windows: int) -> None:
    message = Backfill("bf-1", svc.clock.now(), T0, T0 + HOUR * windows, "shop", TABLES, False, False)
    plan_backfill(message, svc)
    svc.bus.published.clear()


def window_objects(svc: FakeServices) -> dict[str, bytes]:
    """Every per-window object (table and schema), decompressed."""
    return {k: b"".join(decompressed([v])) for k, v in svc.objects.data.items() if "/raw/" in k or "/schemas/" in k}


def manifest_facts(svc: FakeServices) -> list[Any]:
    return sorted(
        (m["window"]["low"], o.get("table"), o["uri"], o["rows"], o["bytes"] if not o["uri"].endswith(".gz") else 0)
        for m in svc.state.manifests()
        for o in m.get("objects", [])
    )


def make_backfilled(windows: int, *, pack: int = 1) -> FakeServices:
    svc = make(pack=pack)
    backfill(svc, windows)
    return svc


def drained(svc: FakeServices) -> FakeServices:
    svc.drain(INSTANCE, TEMPLATES)
    return svc


@pytest.fixture(autouse=True)
def no_hooks() -> Iterator[None]:
    yield
    hooks.install(None)


@pytest.mark.parametrize(
    "csv",
    [
        None,
        {"gzip": True},
        {"escape": "5C"},
        {"fields_terminated_by": "09", "quote": "27", "escape": "5C", "gzip": True},
    ],
)
def test_a_packed_backfill_writes_exactly_what_one_export_per_window_writes(csv: dict[str, Any] | None) -> None:
    single = make(pack=1, csv=csv)
    backfill(single, 8)
    drained(single)
    packed = make(pack=48, csv=csv)
    backfill(packed, 8)
    drained(packed)
    assert window_objects(packed) == window_objects(single)
    assert any(window_objects(single).values())
    assert manifest_facts(packed) == manifest_facts(single) and len(packed.state.manifests()) == 8
    assert packed.state.watermarks() == single.state.watermarks()
    assert {t.state for t in packed.state.all_tasks()} == {"done"}
    # 8 schema exports each way; the tables: 16 exports one by one, 2 packs.
    assert len(single.sqladmin.exported) == 24 and len(packed.sqladmin.exported) == 10
    packs = [u for u in packed.sqladmin.exported if "/packs/" in u]
    assert len(packs) == 2 and all(u.endswith(".csv.gz" if csv and csv.get("gzip") else ".csv") for u in packs)
    for key in (packed.objects.key_of(u) for u in packs):
        if csv and csv.get("gzip"):
            assert packed.objects.data[key][:2] == b"\x1f\x8b"
    for key, data in packed.objects.data.items():
        if "/raw/" in key and key.endswith(".gz"):
            assert data[:2] == b"\x1f\x8b"  # still gzip


def test_the_pack_size_follows_the_settings() -> None:
    svc = make(pack=3)
    backfill(svc, 8)
    drained(svc)
    packs = [u for u in svc.sqladmin.exported if "/packs/" in u]
    assert len(packs) == 2 * 3  # windows 0-2, 3-5, 6-7 of each table


def test_live_windows_are_never_packed_and_catch_up_windows_are() -> None:
    svc = make(pack=48, start=T0.add(hours=4, minutes=10))
    plan_tick(Tick("tick-1", svc.clock.now(), svc.clock.now()), svc)
    svc.bus.published.clear()
    svc.drain(INSTANCE, TEMPLATES)
    by_uri = {t.uri: t for t in svc.state.all_tasks()}
    assert {t.state for t in by_uri.values()} == {"done"}
    live = [t for t in by_uri.values() if t.table and t.low == T0.add(hours=3)]
    assert live and all(t.pack_uri is None for t in live)
    catch_up = [t for t in by_uri.values() if t.table and t.low < T0.add(hours=3)]
    assert catch_up and all(t.pack_uri for t in catch_up)
    assert len({t.pack_uri for t in catch_up}) == len(TABLES)


def test_a_failed_pack_retries_its_windows_one_by_one() -> None:
    svc = make(pack=48)
    backfill(svc, 4)
    svc.sqladmin.fail_next("ERROR_RDBMS", "query failed", leave_object=False)  # the first schema export
    svc.sqladmin.fail_next("ERROR_RDBMS", "division by zero")  # the orders pack
    drained(svc)
    tasks = svc.state.all_tasks()
    assert {t.state for t in tasks} == {"done"}
    orders = sorted((t for t in tasks if t.table == "orders"), key=lambda t: t.low)
    assert all(t.pack_uri is None and t.attempts == 2 for t in orders)  # alone after the pack failed
    assert len([u for u in svc.sqladmin.exported if "/packs/" in u]) == 2
    reference = make(pack=1)
    backfill(reference, 4)
    assert window_objects(svc) == window_objects(drained(reference))


def test_a_pack_whose_rows_come_out_of_window_order_falls_back_to_single_windows() -> None:
    svc = make(pack=48)

    def shuffled(body: dict[str, Any]) -> bytes:
        # A row of window 0 after rows of window 1 (as a parallel plan could interleave them): cannot be split.
        return b"1,1,a,,\n0,2,b,,\n" if "/packs/" in body["exportContext"]["uri"] else content(body)

    svc.sqladmin._content = shuffled
    backfill(svc, 3)
    drained(svc)
    tasks = svc.state.all_tasks()
    assert {t.state for t in tasks} == {"done"}
    tables = sorted((t for t in tasks if t.table), key=lambda t: (t.table, t.low))
    assert all(t.pack_uri is None and t.attempts == 1 for t in tables)  # alone; no attempt spent by the bad pack
    # Window 0's object was written before the bad row showed: its window moved to a new generation.
    assert [t.generation for t in tables] == [2, 1, 1, 2, 1, 1]
    reference = drained(make_backfilled(3))
    ours = {t.id: svc.objects.data[svc.objects.key_of(t.uri or "")] for t in tables}
    theirs = {
        t.id: reference.objects.data[reference.objects.key_of(t.uri or "")]
        for t in reference.state.all_tasks()
        if t.table
    }
    assert ours == theirs


class Crash(BaseException):
    """Stands for SIGKILL at a crash point."""


@pytest.mark.parametrize(
    ("point", "after"),
    [("after_submit", 1), ("mid_poll", 1), ("mid_split", 1), ("mid_split", 3), ("after_done", 2)],
)
def test_a_crash_at_any_point_of_a_pack_is_finished_by_recovery(point: str, after: int) -> None:
    svc = make(pack=48)
    backfill(svc, 5)
    seen: dict[str, Any] = {"count": 0}
    writes: list[str] = []
    create = svc.objects.create_bytes

    def counting_create(key: str, data: bytes, content_type: str) -> bool:
        created = create(key, data, content_type)
        if created:
            writes.append(key)
        return created

    svc.objects.create_bytes = counting_create  # type: ignore[method-assign]

    def crash(reached: str) -> None:
        in_pack = any(t.pack_uri for t in svc.state.all_tasks())
        if reached == point and in_pack and "lease" not in seen:
            seen["count"] += 1
            if seen["count"] == after:
                seen["lease"] = copy.deepcopy(svc.state.leases)
                raise Crash(reached)

    hooks.install(crash)
    work = svc.work(INSTANCE, "m-crashed")
    with pytest.raises(Crash):
        run_work(work, svc, TEMPLATES)
    hooks.install(None)
    svc.state.leases = seen["lease"]  # a killed process releases nothing
    assert run_work(work, svc, TEMPLATES) is None  # the redelivery hands the chain to a fresh message
    svc.bus.published.clear()
    drained(svc)
    tasks = svc.state.all_tasks()
    assert {t.state for t in tasks} == {"done"} and all(t.finalized for t in tasks)
    assert not [k for k in svc.objects.data if ".g2" in k]
    assert svc.sqladmin.overwrite_attempts == 0
    reference = make(pack=1)
    backfill(reference, 5)
    assert window_objects(svc) == window_objects(drained(reference))
    assert svc.state.watermarks() == reference.state.watermarks()
    assert len(svc.state.manifests()) == 5
    # Each window object written once; a split run again after the crash only checks those already there.
    assert len(writes) == len(set(writes)) == 10


def test_claiming_a_pack_is_all_or_none() -> None:
    svc = make(pack=48)
    backfill(svc, 3)
    tasks: list[Task] = sorted((t for t in svc.state.all_tasks() if t.table == "orders"), key=lambda t: t.low)
    svc.state.mark_failed(tasks[1], {"code": "x"})  # changed since it was read
    claimed = svc.state.claim_pack(
        tasks, uris=["gs://b/1", "gs://b/2", "gs://b/3"], generations=[1, 1, 1], pack_uri="gs://b/p", now=T0
    )
    assert claimed is None
    assert [svc.state.get_task(t.id).state for t in tasks] == ["pending", "failed", "pending"]  # type: ignore[union-attr]
    fresh = [svc.state.get_task(t.id) for t in (tasks[0], tasks[2])]
    claimed = svc.state.claim_pack(
        fresh,
        uris=["gs://b/1", "gs://b/3"],
        generations=[1, 2],
        pack_uri="gs://b/p",
        now=T0,  # type: ignore[arg-type]
    )
    assert claimed is not None
    assert [(t.state, t.uri, t.generation, t.attempts, t.pack_uri) for t in claimed] == [
        ("submitting", "gs://b/1", 1, 1, "gs://b/p"),
        ("submitting", "gs://b/3", 2, 1, "gs://b/p"),
    ]
    assert claimed[0].pack_ids == [t.id for t in fresh]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("pack", "path", "problem"),
    [
        ({"max_windows": 0}, "worker.pack.max_windows", "is not a positive integer and at most 500"),
        ({"max_windows": 501}, "worker.pack.max_windows", "is not a positive integer and at most 500"),
        ({"overhead_share": 1}, "worker.pack.overhead_share", "is not below 1"),
        ({"target_bytes": 1.5}, "worker.pack.target_bytes", "is not an integer"),
        ({"op_overhead": 3}, "worker.pack", "is not a known key; did you mean 'op_overhead_seconds'?"),
    ],
)
def test_pack_settings_are_validated_with_the_field_named(pack: dict[str, Any], path: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(config_doc(pack=pack))
    assert caught.value.path == path and caught.value.problem.startswith(problem)


def test_a_split_that_outlives_its_lease_stops_and_the_next_holder_finishes_it() -> None:
    svc = make(pack=48)
    backfill(svc, 4)
    stolen: dict[str, Any] = {}

    def steal(reached: str) -> None:
        if reached == "mid_split" and not stolen:
            svc.clock.advance(120)  # the split stalled past the lease; another worker took it
            stolen["lease"] = svc.state.acquire_lease(INSTANCE, "m-other/x", 60, svc.clock.now())

    hooks.install(steal)
    assert run_work(svc.work(INSTANCE, "m-slow"), svc, TEMPLATES) is None  # LeaseLost: it stops
    hooks.install(None)
    assert stolen["lease"].acquired
    tasks = svc.state.all_tasks()
    assert not [t for t in tasks if t.table and t.state == "done"]  # the old holder marked nothing done
    svc.state.release_lease(INSTANCE, "m-other/x")
    svc.bus.published.clear()
    drained(svc)
    assert {t.state for t in svc.state.all_tasks()} == {"done"}
    assert window_objects(svc) == window_objects(drained(make_backfilled(4)))


def test_a_pack_is_not_cancelled_as_stuck_for_running_longer_than_one_window() -> None:
    """Its stuck limit scales the previous export's duration by the windows each covered (a pack of 4 windows after
    a single one may run 4 times as long); before, a pack was held to one window's limit and cancelled."""
    doc = config_doc(pack={"max_windows": 48}, stuck_factor=3, stuck_min_seconds=1, poll_max_seconds=1)
    svc = FakeServices(parse_config(doc), start=T0.add(hours=30), duration=2.0, content=content)
    message = Backfill("bf-0", svc.clock.now(), T0, T0 + HOUR, "shop", ("orders",), False, False)
    plan_backfill(message, svc)
    drained(svc)  # window 0 alone: 2 s
    svc.sqladmin.duration = 10.0  # the pack of windows 1-4: more than 3 x 2 s, less than 3 x 2 s x 4
    message = Backfill("bf-1", svc.clock.now(), T0 + HOUR, T0 + HOUR * 5, "shop", ("orders",), False, False)
    plan_backfill(message, svc)
    svc.bus.published.clear()
    drained(svc)
    packed = [t for t in svc.state.all_tasks() if t.table and t.low > T0]
    assert {(t.state, t.attempts) for t in packed} == {("done", 1)}
    assert len({t.pack_uri for t in packed}) == 1 and len(packed) == 4
    assert packed[0].operation not in svc.sqladmin.cancelled  # (the schema exports, alone, are held to their own)


def manifest_objects(svc: FakeServices) -> list[Any]:
    """Every manifest's entries as a consumer reads them (operation ids aside: they differ between two runs)."""
    return sorted(
        (
            m["window"]["low"],
            o.get("table") or "",
            o["uri"],
            o["generation"],
            o["bytes"],
            o["rows"],
            o["md5"],
            o["crc32c"],
        )
        for m in svc.state.manifests()
        for o in [*m.get("objects", []), m["schema_object"]]
    )


def test_the_manifests_of_a_split_pack_read_no_window_object_again_and_equal_one_export_per_window() -> None:
    """The split records each window object's facts (Cloud Storage's answer to the create, the rows it counted) on
    its task when marking it done; before, each window's manifest step stat'ed and read every window object again."""
    packed = make(pack=48)
    backfill(packed, 8)
    read: list[str] = []
    stat, stream = packed.objects.stat, packed.objects.stream

    def recording_stat(key: str) -> Any:
        read.append(key)
        return stat(key)

    def recording_stream(key: str) -> Iterator[bytes]:
        read.append(key)
        return stream(key)

    packed.objects.stat = recording_stat  # type: ignore[method-assign]
    packed.objects.stream = recording_stream  # type: ignore[method-assign]
    drained(packed)
    assert not [k for k in read if "/raw/" in k]
    assert all(t.facts and t.facts["uri"] == t.uri for t in packed.state.all_tasks() if t.table)
    single = drained(make_backfilled(8))
    assert manifest_objects(packed) == manifest_objects(single) and len(manifest_objects(single)) == 8 * 3


def test_marking_a_packs_windows_done_is_all_or_none_and_fenced() -> None:
    svc = make(pack=48)
    backfill(svc, 3)
    lease = svc.state.acquire_lease(INSTANCE, "m-1/x", 60, svc.clock.now())
    fence = Fence(INSTANCE, "m-1/x", lease.epoch)
    read = sorted((t for t in svc.state.all_tasks() if t.table == "orders"), key=lambda t: t.low)
    claimed = svc.state.claim_pack(
        read, uris=["gs://b/0", "gs://b/1", "gs://b/2"], generations=[1, 1, 1], pack_uri="gs://b/p", now=T0, fence=fence
    )
    assert claimed is not None
    facts = [{"uri": f"gs://b/{i}", "bytes": i, "rows": i, "crc32c": None, "md5": "x"} for i in range(3)]
    with pytest.raises(LeaseLost):
        svc.state.mark_pack_done(claimed, facts, T0, fence=Fence(INSTANCE, "m-1/x", lease.epoch - 1))
    changed = svc.state.mark_running(claimed[2], "op-1")  # changed since the chain read it
    assert svc.state.mark_pack_done(claimed, facts, T0, fence=fence) is None
    assert [svc.state.get_task(t.id).state for t in claimed] == ["submitting", "submitting", "running"]  # type: ignore[union-attr]
    done = svc.state.mark_pack_done([*claimed[:2], changed], facts, T0, fence=fence)  # type: ignore[list-item]
    assert done is not None and [(t.state, t.facts) for t in done] == [("done", f) for f in facts]
    assert [svc.state.get_task(t.id).facts for t in claimed] == facts  # type: ignore[union-attr]
