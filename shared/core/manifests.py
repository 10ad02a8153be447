"""The window manifest: which objects hold a complete window, and the column names they lack.

Exports are headerless CSV; the manifest carries each table's columns (from the window's schema export),
so a consumer never has to guess. It is written beside the window's objects as `_manifest.json` and kept
in Firestore.
"""

from __future__ import annotations

import csv
import io
from typing import Any

import pendulum

from shared.core.config import SourceConfig
from shared.core.tasks import Task
from shared.core.windows import Window

SCHEMA_COLUMNS = ("table_name", "column_name", "data_type", "ordinal_position", "is_nullable")


def parse_schema_csv(data: bytes, escape: str = "\\") -> dict[str, list[dict[str, Any]]]:
    """Columns per table from the schema export (rows of SCHEMA_COLUMNS, in ordinal order)."""
    reader = csv.reader(io.StringIO(data.decode("utf-8")), doublequote=False, escapechar=escape)
    columns: dict[str, list[dict[str, Any]]] = {}
    for row in reader:
        if len(row) != len(SCHEMA_COLUMNS):
            continue
        table, name, data_type, position, nullable = row
        columns.setdefault(table, []).append(
            {"name": name, "type": data_type, "position": int(position), "nullable": nullable == "YES"}
        )
    for cols in columns.values():
        cols.sort(key=lambda c: c["position"])
    return columns


def build_manifest(
    source: SourceConfig,
    window: Window,
    tasks: list[Task],
    columns: dict[str, list[dict[str, Any]]],
    sizes: dict[str, int | None],
    finished: pendulum.DateTime,
) -> dict[str, Any]:
    """The manifest document for a complete window (`tasks` all done, schema task included)."""
    schema_task = next(t for t in tasks if t.table is None)
    tables = sorted((t for t in tasks if t.table is not None), key=lambda t: t.table or "")
    return {
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
        "format": {
            "type": "csv",
            "header": False,
            "gzip": source.csv.gzip,
            "escape": source.csv.escape,
            "quote": source.csv.quote,
            "fields_terminated_by": source.csv.fields_terminated_by,
        },
        "schema_object": schema_task.uri,
        "objects": [
            {
                "table": t.table,
                "uri": t.uri,
                "generation": t.generation,
                "operation": t.operation,
                "bytes": sizes.get(t.uri or ""),
                "columns": [c["name"] for c in columns.get(t.table or "", [])],
            }
            for t in tables
        ],
        "columns": columns,
        "operations": [t.operation for t in [schema_task, *tables]],
        "finished_at": finished.isoformat(),
    }
