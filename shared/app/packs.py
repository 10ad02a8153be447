"""Packs: one export for consecutive catch-up or backfill windows of one table, split into the windows' own objects.

Tasks stay one per (table, window), so watermarks, manifests, verification and status are unchanged; a pack exists
only on its tasks (`pack_uri`, `pack_ids`, shared/core/tasks.py):

1. claim (`plan_pack`, `StateStore.claim_pack`): when the chain's next ready task is a table export that is not live,
   it is claimed in one transaction with the following consecutive windows of its table that are pending, ready
   and not live either (shared/core/packing.pack_windows says how many); each keeps its own uri and generation;
2. export: one `instances.export` of `pack_query` into a pack object under `<root>/packs/` (a fresh name per
   attempt, since the API never overwrites); the first task carries the operation, the others stay `submitting`;
3. split (`finish_pack`), once the operation is DONE: the pack object is streamed once and each window's rows are
   written to the task's own uri with a create-only write (an object left by an earlier split attempt is compared,
   never rewritten), renewing the lease between windows; only then are the windows marked done and finalized, in
   window order (a pack of at most `target_bytes` splits well within one invocation). A crash at any point
   leaves the tasks in flight: recovery polls the operation again (DONE) and the split runs again, writing only
   what is missing.
A failed pack export retries its windows with the usual attempt rules, each marked (`error.pack`) to be exported on
its own next time, so one window whose query fails cannot block the others. A pack that cannot be split
(PackSplitError) sends its windows back the same way, without spending an attempt.

The worker's identity may create objects but not delete them (terraform/iam.tf), so pack objects stay where they
are and the bucket's lifecycle rule on `<root>/packs/` deletes them (terraform/storage.tf).
"""

from __future__ import annotations

import gzip
import hashlib
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.app.bookkeeping import finalize_pack
from shared.app.hooks import reached
from shared.app.lost import previous_export
from shared.app.ports import ObjectStat
from shared.app.requests import Prepared, prepare, source_of
from shared.core import logs
from shared.core.csvformat import Dialect, decompressed
from shared.core.errors import PermanentError
from shared.core.operations import Operation
from shared.core.packing import NO_PACK_KEY, PackSplitError, pack_query, pack_windows, split_records
from shared.core.tasks import LIVE_RANK, Task, claim_rank, next_generation, task_id
from shared.core.templates import export_request_body, export_uri
from shared.core.windows import latest_settled_window, ts_nodash

if TYPE_CHECKING:
    from shared.app.chain import Chain


@dataclass
class PreparedPack:
    """Consecutive windows of one table, ready to claim: each window's own request (its uri and generation) and the
    pack's export."""

    members: list[Prepared]
    uri: str
    body: dict[str, object]


def is_live(chain: Chain, task: Task) -> bool:
    """A live window, by the chain's claim-time rank (shared/core/tasks.claim_rank): its source's latest settled
    window, whoever queued it; catch-up and backfill windows are not."""
    source = chain.config.source(task.source)
    live_low = latest_settled_window(source.schedule, chain.clock.now(), source.settle).low
    return claim_rank(task, live_low) == LIVE_RANK


def _packable(chain: Chain, task: Task) -> bool:
    return (
        task.purpose == "export"
        and task.table is not None
        and task.state == "pending"
        and task.ready(chain.clock.now())
        and not (task.error or {}).get(NO_PACK_KEY)
        and not is_live(chain, task)
    )


def _bytes_per_window(chain: Chain, task: Task) -> float | None:
    """The size of the table's previous window's object, if it is done (the estimate packing sizes from)."""
    previous = previous_export(chain.state, task)
    if previous is None or not previous.uri:
        return None
    stat = chain.services.objects.stat(chain.services.objects.key_of(previous.uri))
    return None if stat is None else float(stat.size)


def plan_pack(chain: Chain, first: Prepared) -> PreparedPack | None:
    """The pack that starts with `first`, or None when it should be exported on its own."""
    settings = chain.settings.pack
    task = first.task
    if not settings.enabled or not _packable(chain, task):
        return None
    size = pack_windows(settings, _bytes_per_window(chain, task))
    if size < 2:
        return None
    source = source_of(chain.config, task)
    windows = []
    for window in source.schedule.iter_windows(task.low):
        windows.append(window)
        if len(windows) >= size:
            break
    ids = [task_id(source.name, w.low, task.table) for w in windows[1:]]
    found = chain.state.get_tasks(ids)
    members = [first]
    for tid in ids:
        candidate = found.get(tid)
        if candidate is None or not _packable(chain, candidate) or candidate.offload != task.offload:
            break
        try:
            members.append(prepare(chain.config, chain.templates, candidate))
        except PermanentError:
            break  # it fails on its own when the chain reaches it
    if len(members) < 2:
        return None
    return _prepared_pack(chain, members)


def _prepared_pack(chain: Chain, members: list[Prepared], uri: str | None = None) -> PreparedPack:
    task = members[0].task
    source = source_of(chain.config, task)
    queries = [m.body["exportContext"]["csvExportOptions"]["selectQuery"] for m in members]  # type: ignore[index]
    if uri is None:
        extension = ".csv.gz" if source.csv.gzip else ".csv"
        stem = f"{ts_nodash(task.low)}_{ts_nodash(members[-1].task.high)}_{secrets.token_hex(4)}"
        uri = export_uri(chain.config, f"{chain.config.root}/packs/{source.name}/{task.table}/{stem}{extension}")
    return PreparedPack(members, uri, export_request_body(source, pack_query(queries), uri, task.offload))


def claim_pack(chain: Chain, pack: PreparedPack) -> Task | None:
    """Claim the pack's windows in one transaction; the first window's claimed task (which carries the operation),
    or None when one of them changed meanwhile (nothing is claimed then)."""
    claimed = chain.state.claim_pack(
        [m.task for m in pack.members],
        uris=[m.uri for m in pack.members],
        generations=[m.generation for m in pack.members],
        pack_uri=pack.uri,
        now=chain.clock.now(),
        fence=chain.lease.fence,
    )
    if claimed is None:
        return None
    logs.info(
        "windows packed into one export",
        **claimed[0].log_fields(),
        pack_uri=pack.uri,
        windows=len(claimed),
        last_window_high=claimed[-1].high,
    )
    return claimed[0]


def windows_of(task: Task) -> int:
    """How many windows the task's export covers: its pack's, or 1."""
    return len(task.pack_ids) if task.pack_uri and task.pack_ids else 1


def members_of(chain: Chain, task: Task) -> list[Task]:
    """The pack's tasks still exported by it (in flight with this pack object), in window order."""
    found = chain.state.get_tasks(task.pack_ids or [task.id])
    return [
        t
        for tid in task.pack_ids or [task.id]
        if (t := found.get(tid)) is not None and t.pack_uri == task.pack_uri and t.state in ("submitting", "running")
    ]


def resume_body(chain: Chain, task: Task) -> dict[str, object]:
    """The pack's export request again (recovery resubmitting a pack that was claimed but never sent)."""
    members = [prepare(chain.config, chain.templates, t) for t in members_of(chain, task)]
    return _prepared_pack(chain, members, task.pack_uri).body


def retry_members(chain: Chain, task: Task, *, vanished: bool = False, solo: bool = False) -> None:
    """Send every window of the pack back to the queue, no attempt spent: recovery found it never sent while another
    export runs (or, `solo`, unable to render again: each window then goes alone), or its operation vanished."""
    for member in members_of(chain, task):
        if vanished:
            chain.retry_vanished(member)
            continue
        error = {**(member.error or {}), NO_PACK_KEY: task.pack_uri} if solo else member.error
        chain.state.mark_retry(
            member,
            error=error,
            not_before=chain.clock.now(),
            generation=member.generation,
            refund=True,
            fence=chain.lease.fence,
        )


def failure_error(task: Task, operation: Operation) -> dict[str, object]:
    """The error a failed pack records on each window: marked so that the window is exported on its own next time."""
    return {"code": operation.error_code, "message": operation.error_message, NO_PACK_KEY: task.pack_uri}


def finish_pack(chain: Chain, task: Task) -> None:
    """The pack's export is DONE without error: split it, then mark every window done and finalize it, in order."""
    members = members_of(chain, task)
    if not members:
        return
    source = source_of(chain.config, task)
    try:
        facts = split_pack(chain, members, source.csv.dialect)
    except PackSplitError as exc:
        _unpack(chain, members, exc)
        return
    logs.info("pack split into its windows", **members[0].log_fields(), pack_uri=task.pack_uri, windows=len(members))
    done = chain.state.mark_pack_done(
        members, [facts[m.id] for m in members], chain.clock.now(), fence=chain.lease.fence
    )
    if done is None:  # a window changed meanwhile (an operator's re-queue): each goes its own way, as a lone export's
        done = []
        for member in members:
            marked = chain.state.mark_done(member, chain.clock.now(), fence=chain.lease.fence)
            if marked is not None:
                done.append(marked)

    def each(member: Task) -> None:
        reached("after_done")
        chain.stats.done += 1
        logs.info("export done", **member.log_fields(), pack_uri=task.pack_uri)

    finalize_pack(chain.services, chain.templates, done, each=each)


def _unpack(chain: Chain, members: list[Task], exc: PackSplitError) -> None:
    """A pack that cannot be split: each window exported alone (a new generation where a split wrote an object)."""
    objects = chain.services.objects
    for member in members:
        wrote = bool(member.uri) and objects.exists(objects.key_of(member.uri or ""))
        error = {"code": type(exc).__name__, "message": str(exc), NO_PACK_KEY: member.pack_uri}
        generation = next_generation(member) if wrote else member.generation
        chain.state.mark_retry(
            member,
            error=error,
            not_before=chain.clock.now(),
            generation=generation,
            refund=True,
            fence=chain.lease.fence,
        )
    logs.error(
        "pack object cannot be split; its windows are exported one by one", **members[0].log_fields(), error=str(exc)
    )


def split_pack(chain: Chain, members: list[Task], dialect: Dialect) -> dict[str, dict[str, Any]]:
    """Write each member's window object from the pack object, streaming it once; per member id, the object's facts
    (`Task.facts`: Cloud Storage's size and checksums, the rows counted here), so that the manifest reads nothing
    again. Create-only: an object already there (an earlier split attempt) must hold the same rows, else
    PackSplitError."""
    objects = chain.services.objects
    pack_key = objects.key_of(members[0].pack_uri or "")
    ids = members[0].pack_ids or [m.id for m in members]
    todo = {ids.index(m.id): m for m in members}
    rows = split_records(objects.stream(pack_key), dialect, len(ids))
    pending: tuple[int, bytes] | None = next(rows, None)
    facts: dict[str, dict[str, Any]] = {}
    for index in range(len(ids)):
        chunks: list[bytes] = []
        while pending is not None and pending[0] == index:
            chunks.append(pending[1])
            pending = next(rows, None)
        if index in todo:
            member = todo[index]
            stat = _write_window(chain, member, b"".join(chunks), dialect)
            facts[member.id] = {
                "uri": member.uri, "bytes": stat.size, "rows": len(chunks), "crc32c": stat.crc32c, "md5": stat.md5,
            }  # fmt: skip
            chain.lease.heartbeat()  # fencing: a split that outlived the lease stops here (LeaseLost)
            reached("mid_split")
    return facts


def _write_window(chain: Chain, task: Task, content: bytes, dialect: Dialect) -> ObjectStat:
    """Create the window's object; its metadata as Cloud Storage holds it."""
    objects = chain.services.objects
    key = objects.key_of(task.uri or "")
    data = gzip.compress(content, mtime=0) if dialect.gzip else content
    content_type = "application/gzip" if dialect.gzip else "text/csv"  # as the export writes them
    created = objects.create_bytes(key, data, content_type)  # refused, never replaced, if the object exists
    if created is not None:
        return created
    # Written before (a split that crashed): it must hold exactly these rows.
    digest = hashlib.md5(content).hexdigest()
    existing = hashlib.md5()
    for chunk in decompressed(objects.stream(key)):
        existing.update(chunk)
    stat = objects.stat(key)
    if existing.hexdigest() != digest or stat is None:
        raise PackSplitError(f"{task.uri} exists with other rows than the pack's window {ts_nodash(task.low)}")
    logs.info("window object already written by an earlier split; checked", **task.log_fields())
    return stat
