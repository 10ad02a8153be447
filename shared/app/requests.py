"""Turning a queued task into its `instances.export` request: the query, the object uri, the body."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.core.config import Config, SourceConfig
from shared.core.errors import ConfigError, TaskConfigMissing
from shared.core.tasks import Task
from shared.core.templates import Templates, export_request_body, export_uri


@dataclass
class Prepared:
    """A task ready to submit: its claimed uri and the request body."""

    task: Task
    uri: str
    generation: int
    body: dict[str, Any]


def source_of(config: Config, task: Task) -> SourceConfig:
    """The task's source, which must still configure its table; TaskConfigMissing otherwise."""
    try:
        source = config.source(task.source)
        if task.table is not None:
            source.table(task.table)
    except ConfigError as exc:
        raise TaskConfigMissing(task.id, task.source, task.table) from exc
    return source


def prepare(config: Config, templates: Templates, task: Task) -> Prepared:
    """Render the task's export; raises TemplateError or TaskConfigMissing (permanent for the task)."""
    source = source_of(config, task)
    window = task.window
    if task.purpose == "verify":
        windows = source.schedule.windows_between(task.low, task.high)
        query = templates.render_verify_query(source, task.table or "", windows)
        key = templates.verify_key(config, source, task.table or "", window, task.generation)
    else:
        if task.table is None:
            query = templates.render_schema_query(source, window)
        else:
            query = templates.render_query(source, source.table(task.table), window)
        key = templates.object_key(config, source, task.table, window, task.generation)
    uri = export_uri(config, key)
    return Prepared(task, uri, task.generation, export_request_body(source, query, uri, task.offload))
