"""After an export is DONE: move the table's watermark and, when its window is complete, write the manifest."""

from __future__ import annotations

from shared.app.ports import Services
from shared.core import logs
from shared.core.manifests import build_manifest, parse_schema_csv
from shared.core.tasks import Task, window_task_ids
from shared.core.templates import Templates


def finalize(services: Services, templates: Templates, task: Task) -> None:
    """Bookkeeping for a done task; idempotent, so recovery may run it again after a crash."""
    now = services.clock.now()
    if task.table is not None:
        moved = services.state.advance_watermark(task.source, task.table, now)
        if moved:
            logs.info("watermark advanced", source=task.source, table=task.table, old=moved[0], new=moved[1])
    _write_manifest_if_complete(services, templates, task)
    services.state.mark_finalized(task)


def _write_manifest_if_complete(services: Services, templates: Templates, task: Task) -> None:
    config = services.config
    source = config.source(task.source)
    tasks = list(services.state.get_tasks(window_task_ids(source.name, task.low, source.table_names)).values())
    if not tasks or any(t.state != "done" for t in tasks) or all(t.table is not None for t in tasks):
        return
    objects = services.objects
    schema_task = next(t for t in tasks if t.table is None)
    columns = parse_schema_csv(objects.download(objects.key_of(schema_task.uri or "")))
    sizes = {t.uri or "": objects.size(objects.key_of(t.uri or "")) for t in tasks}
    manifest = build_manifest(source, task.window, tasks, columns, sizes, services.clock.now())
    objects.write_json(templates.manifest_key(config, source, task.window), manifest)
    services.state.save_manifest(source.name, task.window, manifest)
    logs.info(
        "window complete; manifest written",
        source=source.name,
        instance=source.instance,
        window_low=task.low,
        window_high=task.high,
        objects=len(tasks),
    )
