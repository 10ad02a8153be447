"""Every dialect and gzip, end to end, with awkward values and templates that reorder, subset and compute columns.

For gzip on/off x three dialects, the whole pipeline (Pub/Sub push -> functions -> Admin API emulator running
PostgreSQL's COPY -> storage) exports one window of a table full of awkward values through three templates. Each
exported value is compared with the source as PostgreSQL prints it (the same query, every column cast to text),
NULL kept apart from the empty string; each manifest's columns (names, order, types), row count, size and MD5 are
compared with the object and with the query's own description; and DuckDB, a real third-party reader, loads each
dialect's object with only the manifest's description and gets the same values.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import duckdb
import pendulum
import psycopg
import pytest
from psycopg import sql

from shared.core.csvformat import Dialect, read_rows
from shared.core.templates import Templates
from tests.pipeline_support import TEST_WORKER, Pipeline

pytestmark = pytest.mark.stack

START = pendulum.datetime(2026, 6, 1, tz="UTC")
DATABASE = "formats"
TABLES = {
    "awkward": "examples/awkward_reordered.sql",
    "awkward_subset": "examples/awkward_subset.sql",
    "awkward_computed": "examples/awkward_computed.sql",
}
DIALECTS = {
    "api-default": {"escape": "22", "quote": "22", "fields_terminated_by": "2C"},
    "tab-apostrophe": {"escape": "27", "quote": "27", "fields_terminated_by": "09"},
    "pipe-backslash": {"escape": "5C", "quote": "22", "fields_terminated_by": "7C"},
}
BIG = 'x,"\\\n|\t' * 150_000  # about 1 MB of every special character

DDL = """
DROP TABLE IF EXISTS awkward;
CREATE TABLE awkward (
    "when" timestamptz, note text, id bigint PRIMARY KEY, n numeric, f double precision, arr int[], j jsonb,
    b bytea, iv interval, ts timestamp, tstz timestamptz, u text, t_null text, e text, big text,
    event_timestamp timestamptz NOT NULL
);
"""
ROWS = [
    {
        "id": 1, "when": "2026-06-01T00:10:00+00", "note": "plain", "n": "99999999999999999999.000000000001",
        "f": "NaN", "arr": "{1,NULL,3}", "j": '{"q": "a \\"quoted\\" \\\\ back\\nslash", "n": null}',
        "b": "\\x00ff2c22275c0a", "iv": "1 year 2 mons -3 days 04:05:06.789", "ts": "2026-01-01 00:00:00",
        "tstz": "2026-01-01 12:00:00+05:30", "u": 'héllo, 世界 "q" \\ ;|\t\'', "t_null": "NULL", "e": "",
        "big": BIG,
    },
    {
        "id": 2, "when": None, "note": "line\nbreak\r\nand CR", "n": "-0.00000000000000000001", "f": "Infinity",
        "arr": "{}", "j": "null", "b": "\\x", "iv": "0", "ts": "1970-01-01 00:00:00", "tstz": "infinity",
        "u": "", "t_null": None, "e": None, "big": "\\.",
    },
    {
        "id": 3, "when": None, "note": None, "n": None, "f": "-Infinity", "arr": None, "j": None, "b": None,
        "iv": None, "ts": None, "tstz": None, "u": None, "t_null": None, "e": None, "big": None,
    },
]  # fmt: skip


@pytest.fixture(scope="module")
def formats_dsn(stack: Any) -> str:
    dsn = stack.create_database(DATABASE)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(DDL)
        for i, row in enumerate(ROWS):
            values = {**row, "event_timestamp": START.add(minutes=i + 1)}
            names = list(values)
            conn.execute(
                sql.SQL("INSERT INTO awkward ({}) VALUES ({})").format(
                    sql.SQL(", ").join(map(sql.Identifier, names)), sql.SQL(", ").join(sql.Placeholder() * len(names))
                ),
                [values[n] for n in names],
            )
    return dsn


def formats_config(dialect: dict[str, str], gzip: bool) -> dict[str, Any]:
    return {
        "project": "cdc-local",
        "region": "europe-west1",
        "bucket": "cdc-exports",
        "worker": TEST_WORKER,
        "sources": [
            {
                "name": "fmt",
                "instance": "cdc-local:fmt-pg",
                "database": DATABASE,
                "interval": "1h",
                "settle": "1m",
                "start": START.isoformat(),
                "csv": {**dialect, "gzip": gzip},
                "tables": [{"name": name, "template": template} for name, template in TABLES.items()],
            }
        ],
    }


def as_postgres_prints(dsn: str, query: str) -> tuple[list[str], list[tuple[str | None, ...]]]:
    """The query's output column names, and its rows with every value cast to text (PostgreSQL's output)."""
    with psycopg.connect(dsn, options="-c TimeZone=UTC") as conn:
        names = [
            c.name for c in conn.execute(sql.SQL("SELECT * FROM ({}) q LIMIT 0").format(sql.SQL(query))).description
        ]
        texts = sql.SQL(", ").join(sql.SQL("q.{}::text").format(sql.Identifier(n)) for n in names)
        rows = conn.execute(sql.SQL("SELECT {} FROM ({}) q").format(texts, sql.SQL(query))).fetchall()
    return names, [tuple(r) for r in rows]


def duckdb_rows(path: Path, fmt: dict[str, Any], width: int) -> list[tuple[str | None, ...]]:
    relation = duckdb.read_csv(
        str(path),
        header=False,
        delimiter=fmt["delimiter"],
        quotechar=fmt["quote"],
        escapechar=fmt["escape"],
        all_varchar=True,
        compression="gzip" if fmt["compression"] == "gzip" else "none",
        columns={f"c{i}": "VARCHAR" for i in range(width)},
        max_line_size=4_000_000,
        allow_quoted_nulls=False,
    )
    return [tuple(r) for r in relation.fetchall()]


@pytest.mark.parametrize("gzip", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("dialect_name", list(DIALECTS))
def test_every_value_and_manifest_match_the_source(
    stack: Any, stack_env: dict[str, str], formats_dsn: str, tmp_path: Path, dialect_name: str, gzip: bool
) -> None:
    p = Pipeline(stack, formats_config(DIALECTS[dialect_name], gzip), tmp_path / "config.json", None)
    source = p.config.sources[0]
    p.driver.tick(START.add(hours=1, minutes=1))
    p.driver.wait_idle(expect_tasks=1 + len(TABLES), timeout=180)
    assert {t.state for t in p.state.all_tasks()} == {"done"}
    [manifest] = p.state.manifests()
    assert manifest["status"] == "written"
    assert manifest["format"]["compression"] == ("gzip" if gzip else "none")
    objects = p.driver.clients.objects
    templates = Templates()
    dialect: Dialect = source.csv.dialect
    for entry in manifest["objects"]:
        query = templates.render_query(source, entry["table"], p.config.sources[0].schedule.window_at(START))
        names, expected = as_postgres_prints(formats_dsn, query)
        key = objects.key_of(entry["uri"])
        data = b"".join(objects.stream(key))
        assert data.startswith(b"\x1f\x8b") == gzip
        exported = [tuple(r) for r in read_rows(data, dialect)]
        assert exported == expected, f"{entry['table']}: values differ from the source"
        assert [c["name"] for c in entry["columns"]] == names, f"{entry['table']}: manifest columns"
        assert entry["rows"] == len(expected) == len(ROWS)
        assert entry["bytes"] == len(data)
        assert entry["md5"] == base64.b64encode(hashlib.md5(data).digest()).decode()
    reordered = next(o for o in manifest["objects"] if o["table"] == "awkward")
    assert [(c["name"], c["type"]) for c in reordered["columns"][:3]] == [
        ("id", "bigint"), ("when", "timestamp with time zone"), ("note", "text")
    ]  # fmt: skip
    computed = next(o for o in manifest["objects"] if o["table"] == "awkward_computed")
    assert [(c["name"], c["type"]) for c in computed["columns"]] == [
        ("id", "bigint"), ("u_upper", "text"), ("n_twice", "numeric"), ("day", "date"), ("tag", "text")
    ]  # fmt: skip
    written = json.loads(b"".join(objects.stream(manifest["key"])))
    assert written["objects"] == manifest["objects"]
    # A real third-party reader, told only what the manifest says, reads the same values.
    path = tmp_path / Path(reordered["uri"]).name
    path.write_bytes(b"".join(objects.stream(objects.key_of(reordered["uri"]))))
    theirs = duckdb_rows(path, manifest["format"], len(reordered["columns"]))
    assert theirs == [tuple(r) for r in read_rows(path.read_bytes(), dialect)]
    assert theirs[0][12] == "NULL" and theirs[2][12] is None  # the text 'NULL' is not NULL
    assert theirs[0][13] == "" and theirs[1][13] is None  # the empty string is not NULL
