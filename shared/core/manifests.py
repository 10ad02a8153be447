"""The window manifest: what a consumer reads to load a complete window without guessing.

Exports are headerless CSV. For every table the manifest names the current object (generation), its columns
exactly as they appear in that CSV (the export query's output, in order, with types: shared/core/columns.py),
its dialect and compression, its size, row count and checksums, and the operation that wrote it; and the window's
schema snapshot. It is written beside the window's objects under a versioned key that is never replaced: a
re-export makes a new version that names the one it supersedes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pendulum

from shared.core.config import SourceConfig
from shared.core.csvformat import Dialect, read_rows
from shared.core.tasks import Task
from shared.core.windows import Window

MANIFEST_FORMAT = 2
SCHEMA_COLUMNS = ("table_name", "column_name", "data_type", "ordinal_position", "is_nullable")


@dataclass(frozen=True)
class ObjectFacts:
    """What the bucket says of an exported object, and the rows the project counted in it."""

    bytes: int
    rows: int
    crc32c: str | None
    md5: str | None


def parse_schema_csv(data: bytes | Iterable[bytes], dialect: Dialect) -> dict[str, list[dict[str, Any]]]:
    """Columns per table from the schema export (rows of SCHEMA_COLUMNS, in the source's dialect, gzip or not),
    in ordinal order."""
    columns: dict[str, list[dict[str, Any]]] = {}
    for row in read_rows(data, dialect):
        if len(row) != len(SCHEMA_COLUMNS) or None in row:
            continue
        table, name, data_type, position, nullable = row
        columns.setdefault(table or "", []).append(
            {"name": name, "type": data_type, "position": int(position or 0), "nullable": nullable == "YES"}
        )
    for cols in columns.values():
        cols.sort(key=lambda c: c["position"])
    return columns


def manifest_version(tasks: Iterable[Task]) -> int:
    """1 for a window exported once; every re-export of any of its objects (a new generation) raises it, so the
    same state always has the same version and a later state a higher one."""
    return 1 + sum(t.generation - 1 for t in tasks)


def build_manifest(
    source: SourceConfig,
    window: Window,
    tasks: list[Task],
    columns: dict[str, list[dict[str, Any]]],
    snapshot: dict[str, list[dict[str, Any]]],
    facts: dict[str, ObjectFacts],
    finished: pendulum.DateTime,
    *,
    previous: str | None = None,
) -> dict[str, Any]:
    """The manifest document for a complete window (`tasks` all done, schema task included).

    `columns` is each table's CSV columns, `facts` each object's measurements by uri, `previous` the key of the
    manifest this one supersedes."""
    schema_task = next(t for t in tasks if t.table is None)
    tables = sorted((t for t in tasks if t.table is not None), key=lambda t: t.table or "")
    dialect = source.csv.dialect

    def measured(task: Task) -> dict[str, Any]:
        fact = facts[task.uri or ""]
        return {"bytes": fact.bytes, "rows": fact.rows, "crc32c": fact.crc32c, "md5": fact.md5}

    return {
        "manifest_format": MANIFEST_FORMAT,
        "version": manifest_version(tasks),
        "previous": previous,
        "source": source.name,
        "instance": source.instance,
        "database": source.database,
        "schema": source.schema,
        "window": {
            "low": window.low.isoformat(),
            "high": window.high.isoformat(),
            "bounds": "[low, high)",
            "logical_date": window.logical_date.isoformat(),
        },
        "format": dialect.describe(),
        "schema_object": {"uri": schema_task.uri, "generation": schema_task.generation, **measured(schema_task)},
        "objects": [
            {
                "table": t.table,
                "uri": t.uri,
                "generation": t.generation,
                "operation": t.operation,
                **measured(t),
                "columns": columns[t.table or ""],
            }
            for t in tables
        ],
        "schema_snapshot": snapshot,
        "operations": [t.operation for t in [schema_task, *tables]],
        "finished_at": finished.isoformat(),
    }
