"""The window manifest: column names from the schema export, objects in table order."""

from __future__ import annotations

import pendulum

from shared.core.config import parse_config
from shared.core.manifests import build_manifest, parse_schema_csv
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
    columns = parse_schema_csv(SCHEMA_CSV)
    assert [c["name"] for c in columns["orders"]] == ["id", "event_timestamp", "note"]
    assert columns["orders"][2] == {"name": "note", "type": "text", "position": 3, "nullable": True}
    assert columns["payments"] == [{"name": "id", "type": "bigint", "position": 1, "nullable": False}]


def test_manifest_lists_objects_with_their_columns() -> None:
    source = CONFIG.sources[0]
    low = pendulum.datetime(2026, 11, 20, 1, tz="UTC")
    window = Window(low, low.add(hours=1))

    def task(table: str | None, uri: str, op: str) -> Task:
        return Task("shop", source.instance, "shop", table, low, low.add(hours=1), state="done", uri=uri, operation=op)

    tasks = [
        task("payments", "gs://b/p.csv", "op-p"),
        task(None, "gs://b/s.csv", "op-s"),
        task("orders", "gs://b/o.g2.csv", "op-o"),
    ]
    manifest = build_manifest(
        source, window, tasks, parse_schema_csv(SCHEMA_CSV), {"gs://b/o.g2.csv": 10, "gs://b/p.csv": 20}, low
    )
    assert manifest["window"]["low"] == "2026-11-20T01:00:00+00:00"
    assert manifest["window"]["bounds"] == "[low, high)"
    assert manifest["schema_object"] == "gs://b/s.csv"
    assert [(o["table"], o["uri"], o["bytes"]) for o in manifest["objects"]] == [
        ("orders", "gs://b/o.g2.csv", 10),
        ("payments", "gs://b/p.csv", 20),
    ]
    assert manifest["objects"][0]["columns"] == ["id", "event_timestamp", "note"]
    assert manifest["operations"] == ["op-s", "op-o", "op-p"]
