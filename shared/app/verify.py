"""Acting on a finished verification export: record what the source holds, and re-export the windows that changed.

Each verified window's count and checksum are kept on its manifest record (`verified`), so the next verification
compares with them. A changed window is re-queued as a forced export (a new generation, behind live work, never
overwriting); when it is done the window gets a new manifest version that names the previous one and says why it
was replaced. Each repair is logged at WARNING (`verification repaired a window`: counted by a log-based metric and
alertable) with the table, the window and the rows before and after.
"""

from __future__ import annotations

from shared.app.ports import Services
from shared.core import logs
from shared.core.tasks import Task, task_id, window_tasks
from shared.core.verification import compare, parse_counts
from shared.core.windows import Window


def apply_verification(services: Services, task: Task) -> None:
    """Compare a done verification task's results with the manifests and the previous verification; repair."""
    config, state, objects = services.config, services.state, services.objects
    source = config.source(task.source)
    table = task.table or ""
    windows = source.schedule.windows_between(task.low, task.high)
    counts = parse_counts(objects.stream(objects.key_of(task.uri or "")), source.csv.dialect)
    records = {w.low: state.get_manifest(source.name, w) for w in windows}
    exported: dict = {}
    previous: dict = {}
    for low, record in records.items():
        if not record or record.get("status") != "written":
            continue
        entry = next((o for o in record.get("objects", []) if o.get("table") == table), None)
        if entry is not None:
            exported[low] = entry["rows"]
        verified = (record.get("verified") or {}).get(table)
        if verified:
            previous[low] = verified["checksum"]
    findings = compare(table, windows, counts, exported, previous)
    now = services.clock.now()
    for window in windows:
        record, count = records[window.low], counts.get(window.low)
        if record and record.get("status") == "written" and count is not None:
            verified = {**(record.get("verified") or {}), table: {"rows": count.rows, "checksum": count.checksum}}
            record = {**record, "verified": verified, "verified_at": now.isoformat()}
            records[window.low] = record
            state.save_manifest(source.name, window, record)
    for finding in findings:
        reason = {**finding.as_record(), "verification": task.id}
        _repair(services, source.name, finding.window, table, reason, records[finding.window.low])
    logs.info(
        "verification finished",
        source=source.name,
        instance=source.instance,
        table=table,
        task=task.id,
        window_low=task.low,
        window_high=task.high,
        windows=len(windows),
        compared=len(exported),
        repaired=len(findings),
    )


def _repair(services: Services, source_name: str, window: Window, table: str, reason: dict, record: dict) -> None:
    """Re-export one changed window of a table as a new generation; the next manifest says why."""
    state = services.state
    source = services.config.source(source_name)
    current = state.get_task(task_id(source_name, window.low, table))
    requested = window_tasks(source, [window], priority=current.priority if current else 1, offload=source.offload)
    export = next(t for t in requested if t.table == table)
    token = f"verify:{export.id}:{reason['rows_now']}:{services.clock.now().isoformat()}"
    created = state.create_tasks([export], force_token=token)
    state.save_manifest(source_name, window, {**record, "pending_reason": {"by": "verification", **reason}})
    logs.warning(
        "verification repaired a window: re-exporting it as a new generation",
        source=source_name,
        instance=source.instance,
        table=table,
        task=export.id,
        window_low=window.low,
        window_high=window.high,
        rows_before=reason["rows_exported"],
        rows_after=reason["rows_now"],
        reason=reason["reason"],
        requeued=created.forced + created.created,
    )
