"""The window manifest: column names from the schema export, objects in table order."""

from __future__ import annotations

import gzip

import pendulum
import pytest

from shared.core.columns import UnknownColumns, query_shape
from shared.core.config import parse_config
from shared.core.csvformat import Dialect
from shared.core.manifests import ObjectFacts, build_manifest, parse_schema_csv
from shared.core.tasks import Task
from shared.core.windows import Window

SCHEMA_CSV = (
    b"orders,note,text,3,YES\n"
    b"orders,id,bigint,1,NO\n"
    b"orders,event_timestamp,timestamp with time zone,2,NO\n"
    b"payments,id,bigint,1,NO\n"
)
CONFIG = parse_config(
    {
        "project": "cdc-local",
        "region": "europe-west1",
        "bucket": "cdc-exports",
        "sources": [
            {
                "name": "shop",
                "instance": "cdc-local:shop-pg",
                "database": "shop",
                "interval": "1h",
                "tables": [{"name": "orders"}, {"name": "payments"}],
            }
        ],
    }
)


def test_schema_csv_gives_columns_in_ordinal_order() -> None:
    columns = parse_schema_csv(SCHEMA_CSV, Dialect())
    assert [c["name"] for c in columns["orders"]] == ["id", "event_timestamp", "note"]
    assert columns["orders"][2] == {"name": "note", "type": "text", "position": 3, "nullable": True}
    assert columns["payments"] == [{"name": "id", "type": "bigint", "position": 1, "nullable": False}]


@pytest.mark.parametrize(
    "dialect",
    [Dialect(), Dialect(delimiter="\t", quote="'", escape="'"), Dialect(delimiter="|", quote="'", escape="\\")],
)
@pytest.mark.parametrize("zipped", [False, True])
def test_schema_csv_in_any_dialect_gzip_or_not(dialect: Dialect, zipped: bool) -> None:
    """Defects: a gzipped snapshot crashed the chain (UnicodeDecodeError 0x8b); another dialect gave no columns."""
    data = SCHEMA_CSV.replace(b",", dialect.delimiter.encode())
    data = gzip.compress(data, mtime=0) if zipped else data
    columns = parse_schema_csv(data, dialect)
    assert [c["name"] for c in columns["orders"]] == ["id", "event_timestamp", "note"]


def test_manifest_lists_objects_with_their_columns_rows_and_checksums() -> None:
    source = CONFIG.sources[0]
    low = pendulum.datetime(2026, 11, 20, 1, tz="UTC")
    window = Window(low, low.add(hours=1))

    def task(table: str | None, uri: str, op: str, generation: int = 1) -> Task:
        return Task(
            "shop", source.instance, "shop", table, low, low.add(hours=1), state="done", uri=uri, operation=op,
            generation=generation,
        )  # fmt: skip

    tasks = [
        task("payments", "gs://b/p.csv", "op-p"),
        task(None, "gs://b/s.csv", "op-s"),
        task("orders", "gs://b/o.g2.csv", "op-o", generation=2),
    ]
    snapshot = parse_schema_csv(SCHEMA_CSV, Dialect())
    columns = {
        "orders": [
            {"name": "note", "type": "text", "nullable": True},
            {"name": "id", "type": "bigint", "nullable": False},
        ],
        "payments": [{"name": "id", "type": "bigint", "nullable": False}],
    }
    facts = {
        "gs://b/o.g2.csv": ObjectFacts(10, 1, "crc-o", "md5-o"),
        "gs://b/p.csv": ObjectFacts(20, 2, "crc-p", "md5-p"),
        "gs://b/s.csv": ObjectFacts(30, 4, None, None),
    }
    manifest = build_manifest(source, window, tasks, columns, snapshot, facts, low, previous="m/_manifest.json")
    assert manifest["window"]["low"] == "2026-11-20T01:00:00+00:00"
    assert manifest["window"]["bounds"] == "[low, high)"
    assert manifest["schema_object"]["uri"] == "gs://b/s.csv" and manifest["schema_object"]["rows"] == 4
    assert [(o["table"], o["uri"], o["bytes"], o["rows"], o["crc32c"]) for o in manifest["objects"]] == [
        ("orders", "gs://b/o.g2.csv", 10, 1, "crc-o"),
        ("payments", "gs://b/p.csv", 20, 2, "crc-p"),
    ]
    assert [c["name"] for c in manifest["objects"][0]["columns"]] == ["note", "id"]  # the CSV's order, not the table's
    assert manifest["operations"] == ["op-s", "op-o", "op-p"]
    assert (manifest["version"], manifest["previous"]) == (2, "m/_manifest.json")
    assert manifest["format"]["delimiter"] == "," and manifest["format"]["compression"] == "none"
    assert manifest["schema_snapshot"] == snapshot


def test_a_querys_shape_is_parsed_once_per_text_and_a_bad_query_is_refused_every_time() -> None:
    """A window's bookkeeping asks for each table's shape several times (schema query, columns, schema drift)."""
    query_shape.cache_clear()
    sql = "SELECT id, note::text AS n FROM public.orders WHERE event_timestamp >= TIMESTAMPTZ '2026-01-01T00:00:00Z'"
    first = query_shape(sql)
    assert query_shape(sql) is first and query_shape.cache_info().hits == 1
    assert query_shape(sql.replace("2026-01-01", "2026-01-02")) == first  # another window: parsed, same shape
    bad = "SELECT upper(note) FROM public.orders"
    for _ in range(2):
        with pytest.raises(UnknownColumns):
            query_shape(bad)
