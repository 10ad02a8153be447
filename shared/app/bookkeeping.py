"""After an export is DONE: move the table's watermark and, when its window is complete, write the manifest."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from shared.app.ports import ObjectStore, Services
from shared.app.verify import apply_verification
from shared.core import logs
from shared.core.columns import Ref, Star, UnknownColumns, resolve
from shared.core.config import SourceConfig
from shared.core.csvformat import Dialect, count_rows
from shared.core.errors import ManifestError, PermanentError, RetryableError
from shared.core.manifests import ObjectFacts, build_manifest, manifest_version, parse_schema_csv
from shared.core.tasks import Task, window_task_ids
from shared.core.templates import Templates
from shared.core.verification import schema_drift
from shared.core.windows import Window


def finalize(services: Services, templates: Templates, task: Task) -> None:
    """Bookkeeping for a done task; idempotent, so recovery may run it again after a crash.

    A manifest that cannot be written truthfully, or a verification result that cannot be read, is recorded
    (logged at ERROR, kept in the state for `cdc status`) and never stops the chain: whatever one window's
    bookkeeping raises, except a transient failure. A transient failure (Cloud Storage, Firestore) propagates,
    and the task stays unfinalized so the next invocation's recovery tries again.
    """
    if task.purpose == "verify":
        try:
            apply_verification(services, task)
        except RetryableError:
            raise
        except Exception as exc:  # one verification must not stop the chain (nor every recovery after it)
            logs.error("verification result not applied", **task.log_fields(), error=f"{type(exc).__name__}: {exc}")
        services.state.mark_finalized(task)
        return
    _advance_watermark(services, task)
    _manifest_step(services, templates, task)
    services.state.mark_finalized(task)


def finalize_pack(
    services: Services, templates: Templates, tasks: Sequence[Task], *, each: Callable[[Task], None]
) -> None:
    """`finalize` for the windows of one split pack (one table, consecutive windows, all done): the table's watermark
    walks once over all of them (one walk instead of one per window), then each window's manifest step and its
    finalized mark, in window order; `each(task)` runs before a window's step (the chain's crash point). Idempotent
    as `finalize`: a crash leaves the rest unfinalized, and recovery finalizes them one by one."""
    if tasks:
        _advance_watermark(services, tasks[-1])
    for task in tasks:
        each(task)
        _manifest_step(services, templates, task)
        services.state.mark_finalized(task)


def _advance_watermark(services: Services, task: Task) -> None:
    """Walk the table's watermark over every consecutive done window (it never moves back nor past a missing one)."""
    if task.table is None:
        return
    moved = services.state.advance_watermark(task.source, task.table, services.clock.now())
    if moved:
        logs.info(
            "watermark advanced",
            source=task.source,
            instance=task.instance,
            table=task.table,
            task=task.id,
            window_low=task.low,
            window_high=task.high,
            old=moved[0],
            new=moved[1],
        )


def _manifest_step(services: Services, templates: Templates, task: Task) -> None:
    try:
        _write_manifest_if_complete(services, templates, task)
    except RetryableError:
        raise
    except Exception as exc:  # a manifest that cannot be written must not stop the chain (nor every recovery)
        failure = exc if isinstance(exc, PermanentError) else ManifestError(task.source, str(task.window), repr(exc))
        _record_manifest_failure(services, task, failure)


def _write_manifest_if_complete(services: Services, templates: Templates, task: Task) -> None:
    config, state, objects = services.config, services.state, services.objects
    source = config.source(task.source)
    window = task.window
    tasks = list(state.get_tasks(window_task_ids(source.name, task.low, source.table_names)).values())
    if not tasks or any(t.state != "done" for t in tasks) or all(t.table is not None for t in tasks):
        return
    dialect = source.csv.dialect
    schema_task = next(t for t in tasks if t.table is None)
    snapshot = parse_schema_csv(objects.stream(objects.key_of(schema_task.uri or "")), dialect)
    columns = {t.table: _columns(templates, source, t, snapshot) for t in tasks if t.table is not None}
    drift = _schema_drift(services, templates, source, window, snapshot)
    facts = {t.uri or "": _facts(objects, t, dialect) for t in tasks}
    version = manifest_version(tasks)
    key = templates.manifest_key(config, source, window, version)
    recorded = state.get_manifest(source.name, window)
    previous = recorded.get("key") if recorded and recorded.get("key") != key else None
    manifest = build_manifest(source, window, tasks, columns, snapshot, facts, services.clock.now(), previous=previous)
    manifest["schema_drift"] = drift
    if recorded and recorded.get("pending_reason") and previous:
        manifest["replaced_because"] = recorded["pending_reason"]
    created = objects.create_json(key, manifest)
    kept = {"verified": recorded["verified"]} if recorded and recorded.get("verified") else {}
    state.save_manifest(source.name, window, {**manifest, **kept, "key": key, "status": "written"})
    logs.info(
        "window complete; manifest written" if created else "window complete; manifest was already written",
        source=source.name,
        instance=source.instance,
        window_low=window.low,
        window_high=window.high,
        key=key,
        version=version,
        rows={t.table: facts[t.uri or ""].rows for t in tasks if t.table is not None},
    )


def _schema_drift(
    services: Services, templates: Templates, source: SourceConfig, window: Any, snapshot: dict[str, Any]
) -> list[dict[str, Any]]:
    """Columns added, removed or retyped since the previous window's snapshot; each logged (ERROR when a column
    an export selects is removed or retyped: its CSV changed shape).

    Windows do not always complete in order (live windows go before catch-up and backfill): if the next window's
    manifest exists already, the change from this window to it is logged too (for the next window), since that
    manifest was written before it had this one to compare with."""
    previous_window = Window(source.schedule.previous_boundary(window.low), window.low)
    previous = services.state.get_manifest(source.name, previous_window)
    next_window = Window(window.high, source.schedule.next_boundary(window.high))
    following = services.state.get_manifest(source.name, next_window)
    selected = _selected_columns(templates, source, window, snapshot)
    drift = schema_drift(previous.get("schema_snapshot") if previous else None, snapshot, selected)
    _log_drift(source, window, drift)
    if following is not None and following.get("schema_snapshot") is not None:
        _log_drift(source, next_window, schema_drift(snapshot, following["schema_snapshot"], selected))
    return drift


def _selected_columns(
    templates: Templates, source: SourceConfig, window: Any, snapshot: dict[str, Any]
) -> dict[str, set[str]]:
    """Per table, the columns the window's exports select (a change to one of them changes a CSV's shape)."""
    selected: dict[str, set[str]] = {}
    for table in source.tables:
        try:
            shape = templates.output_shape(source, table, window)
        except PermanentError:
            continue
        for spec in shape.specs:
            if isinstance(spec, Star):
                for name in [spec.table] if spec.table else shape.tables:
                    selected.setdefault(name, set()).update(c["name"] for c in snapshot.get(name, []))
            elif isinstance(spec, Ref):
                for name in [spec.table] if spec.table else shape.tables:
                    selected.setdefault(name, set()).add(spec.column)
    return selected


def _log_drift(source: SourceConfig, window: Any, drift: list[dict[str, Any]]) -> None:
    for change in drift:
        logs.log(
            change["severity"],
            f"schema drift: column {change['change']}",
            source=source.name,
            instance=source.instance,
            window_low=window.low,
            window_high=window.high,
            **{k: v for k, v in change.items() if k != "severity"},
        )


def _columns(
    templates: Templates, source: SourceConfig, task: Task, snapshot: dict[str, list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """The CSV's columns, from the table's query and the window's schema snapshot; ManifestError if unknowable."""
    try:
        return resolve(templates.output_shape(source, task.table or "", task.window), snapshot)
    except UnknownColumns as exc:
        raise ManifestError(source.name, str(task.window), f"table {task.table!r} {exc}") from exc


def _facts(objects: ObjectStore, task: Task, dialect: Dialect) -> ObjectFacts:
    """The object's size and checksums (Cloud Storage's) and rows (counted by the project): as the split recorded
    them when it created the object (`Task.facts`, for that uri), else read from the bucket."""
    known = task.facts
    if known and known.get("uri") == task.uri:
        return ObjectFacts(known["bytes"], known["rows"], known["crc32c"], known["md5"])
    key = objects.key_of(task.uri or "")
    stat = objects.stat(key)
    if stat is None:
        raise ManifestError(task.source, str(task.window), f"object {task.uri} of a done export does not exist")
    return ObjectFacts(stat.size, count_rows(objects.stream(key), dialect), stat.crc32c, stat.md5)


def _record_manifest_failure(services: Services, task: Task, exc: PermanentError) -> None:
    error = {"code": type(exc).__name__, "message": str(exc)}
    services.state.save_manifest(
        task.source,
        task.window,
        {
            "source": task.source,
            "window": {"low": task.low.isoformat(), "high": task.high.isoformat()},
            "status": "failed",
            "error": error,
        },
    )
    logs.error(
        "manifest not written; the exports stand",
        **task.log_fields(),
        source=task.source,
        error=error,
    )
