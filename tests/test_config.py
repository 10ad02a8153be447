"""Configuration parsing and validation: every rule, asserted on ConfigError's path, value and problem."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pendulum
import pytest

from shared.core.config import Config, parse_config
from shared.core.environment import load_config
from shared.core.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "local" / "demo_config.json"


def minimal() -> dict[str, Any]:
    return {
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


def with_(path: str, value: object, doc: dict[str, Any] | None = None) -> dict[str, Any]:
    """A copy of `doc` (default: minimal()) with the dotted path (list indices as numbers) set to value."""
    doc = copy.deepcopy(doc or minimal())
    *parents, last = path.split(".")
    node: Any = doc
    for part in parents:
        node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
    node[int(last) if last.isdigit() else last] = value
    return doc


def config_error(doc: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as e:
        parse_config(doc)
    return e.value


def test_defaults() -> None:
    config = parse_config(minimal())
    source = config.sources[0]
    assert (config.root, config.firestore_database, config.firestore_prefix) == ("cdc", "(default)", "cdc_")
    assert config.firestore_writes_per_second == 500  # Firestore's limit for sequential indexed values
    assert (config.ticks_topic, config.work_topic, config.backfill_max_windows) == ("cdc-ticks", "cdc-work", 2000)
    assert config.layout.table == "keys/table.j2" and config.lag_alert_seconds == 7200
    assert config.worker.budget_seconds == 300 and config.worker.max_attempts == 3
    assert (config.worker.poll_window_calls, config.worker.poll_spread, config.worker.api_calls_per_minute) == (
        10, 0.05, 150,
    )  # fmt: skip
    assert (source.schema, source.settle, source.catchup_cap, source.start) == (
        "public",
        pendulum.duration(minutes=5),
        48,
        None,
    )
    assert (source.csv.escape, source.csv.quote, source.csv.fields_terminated_by, source.csv.gzip) == (
        "22", "22", "2C", False,
    )  # fmt: skip
    assert source.tables[0].template == "orders.sql" and source.tables[0].watermark_column == "event_timestamp"
    assert config.sqladmin_endpoint is None


def test_demo_config_loads_with_templates() -> None:
    config = load_config({"CDC_CONFIG_FILE": str(DEMO)})
    source = config.source("shop")
    assert source.instance == "cdc-local:shop-pg"
    assert (source.instance_project, source.instance_name) == ("cdc-local", "shop-pg")
    assert source.table_names == ("orders", "payments", "shipments", "page_views")
    assert source.schedule.step_seconds == 3600
    assert config.instances() == ("cdc-local:shop-pg",)
    assert config.sources_for_instance("cdc-local:shop-pg") == (source,)
    assert config.sources_for_instance("cdc-local:other") == ()


def test_load_config_inline_and_endpoint() -> None:
    config = load_config({"CDC_CONFIG": DEMO.read_text(), "CDC_SQLADMIN_ENDPOINT": "http://127.0.0.1:9000/"})
    assert isinstance(config, Config) and config.sqladmin_endpoint == "http://127.0.0.1:9000/"


@pytest.mark.parametrize(
    ("environ", "path", "problem"),
    [
        ({}, "CDC_CONFIG", "is not set"),
        ({"CDC_CONFIG": "{}", "CDC_CONFIG_FILE": "x.json"}, "CDC_CONFIG_FILE", "set only one of them"),
        ({"CDC_CONFIG": "{nope"}, "CDC_CONFIG", "is not valid JSON: Expecting property name"),
        ({"CDC_CONFIG_FILE": "/no/such/file.json"}, "CDC_CONFIG_FILE", "cannot be read"),
        ({"CDC_CONFIG": '{"project": 1, "project": 2}'}, "(config)", "appears twice"),
    ],
)
def test_load_config_errors(environ: dict[str, str], path: str, problem: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(environ)
    assert e.value.path == path
    assert problem in e.value.problem


def test_load_config_reports_a_broken_template_without_failing(capsys: pytest.CaptureFixture[str]) -> None:
    """A template that cannot render fails only its own tasks (with its name); the rest keeps exporting."""
    doc = with_("sources.0.tables", [{"name": "orders", "template": "missing.sql"}])
    config = load_config({"CDC_CONFIG": json.dumps(doc)})
    assert config.sources[0].tables[0].template == "missing.sql"
    entry = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert entry["severity"] == "ERROR"
    assert entry["template"] == "missing.sql"


def test_load_config_rejects_colliding_object_keys() -> None:
    first = minimal()["sources"][0]
    doc = with_("sources", [first, {**first, "name": "shop2", "instance": "cdc-local:other-pg"}])
    with pytest.raises(ConfigError) as e:
        load_config({"CDC_CONFIG": json.dumps(doc)})
    assert e.value.path == "layout.table"


@pytest.mark.parametrize(
    ("path", "value", "error_path", "problem"),
    [
        ("sources.0.tables.1.name", "a;drop", "sources[0].tables[1].name", "is not a SQL identifier"),
        ("sources.0.tables.1.name", "x" * 64, "sources[0].tables[1].name", "at most 63 characters"),
        (
            "sources.0.tables.0.watermark_column",
            "event time",
            "sources[0].tables[0].watermark_column",
            "SQL identifier",
        ),
        ("sources.0.schema", "public;", "sources[0].schema", "is not a SQL identifier"),
        ("sources.0.database", "1shop", "sources[0].database", "is not a SQL identifier"),
        ("sources.0.name", "shop-1", "sources[0].name", "is not a SQL identifier"),
        ("sources.0.instance", "shop-pg", "sources[0].instance", "is not 'project:instance'"),
        ("sources.0.instance", "Cdc-Local:shop", "sources[0].instance", "is not 'project:instance'"),
        ("sources.0.interval", "7m", "sources[0].interval", "does not divide a day evenly"),
        ("sources.0.interval", "every hour", "sources[0].interval", "5-field cron expression"),
        ("sources.0.interval", 3600, "sources[0].interval", "is not a string"),
        ("sources.0.settle", "5 minutes", "sources[0].settle", "is not a duration"),
        ("sources.0.catchup_cap", 0, "sources[0].catchup_cap", "is not a positive integer"),
        ("sources.0.catchup_cap", True, "sources[0].catchup_cap", "is not an integer"),
        ("sources.0.offload", "no", "sources[0].offload", "is not true or false"),
        ("sources.0.start", "2026-01-01T00:00:00", "sources[0].start", "has no UTC offset"),
        (
            "sources.0.start",
            "2026-01-01T00:30:00Z",
            "sources[0].start",
            "nearest grid points 2026-01-01T00:00:00+00:00",
        ),
        ("sources.0.csv.escape", "\\", "sources[0].csv.escape", "two hex digits"),
        ("sources.0.csv.gzip", 1, "sources[0].csv.gzip", "is not true or false"),
        ("sources.0.tables", [], "sources[0].tables", "is empty"),
        ("sources.0.tables.0.template", "../etc/passwd", "sources[0].tables[0].template", "relative template path"),
        ("sources.0.tables.0.params", {"limit": "1; drop"}, "sources[0].tables[0].params.limit", "SQL identifier"),
        ("sources.0.tables.0.params", {"x": [1]}, "sources[0].tables[0].params.x", "a number or true or false"),
        ("sources", [], "sources", "is empty"),
        ("sources", {}, "sources", "is not a list"),
        ("project", "CDC", "project", "is not a GCP project id"),
        ("region", "europe", "region", "is not a GCP region"),
        ("bucket", "Bad Bucket", "bucket", "is not a bucket name"),
        ("root", "/cdc/", "root", "is not a key prefix"),
        ("layout.table", "../x", "layout.table", "relative template path"),
        ("worker.budget_seconds", 600, "worker.budget_seconds", "at most 540"),
        ("worker.poll_initial_seconds", 10, "worker.poll_initial_seconds", "is larger than worker.poll_max_seconds"),
        ("worker.poll_window_calls", -1, "worker.poll_window_calls", "is not an integer from 0 to 100"),
        ("worker.poll_window_calls", 101, "worker.poll_window_calls", "is not an integer from 0 to 100"),
        ("worker.poll_window_calls", 2.5, "worker.poll_window_calls", "is not an integer"),
        ("worker.poll_spread", 0, "worker.poll_spread", "is not a positive number"),
        ("worker.poll_spread", 2, "worker.poll_spread", "at most 1"),
        ("worker.poll_sparse_seconds", -5, "worker.poll_sparse_seconds", "is not a positive number"),
        ("worker.api_calls_per_minute", 0, "worker.api_calls_per_minute", "is not a positive number"),
        ("worker.api_calls_per_minute", 5, "worker.api_calls_per_minute", "could not submit and poll one export"),
        ("worker.api_calls_per_minute", "180", "worker.api_calls_per_minute", "is not an integer or a number"),
        ("backfill.max_windows", -1, "backfill.max_windows", "is not a positive integer"),
        ("firestore.prefix", "a/b", "firestore.prefix", "is not a collection prefix"),
        ("firestore.writes_per_second", 0, "firestore.writes_per_second", "is not a positive number"),
        ("topics.work", "x", "topics.work", "is not a Pub/Sub topic name"),
    ],
)
def test_field_errors(path: str, value: object, error_path: str, problem: str) -> None:
    error = config_error(with_(path, value))
    assert error.path == error_path
    expected = next(iter(value.values())) if ".params." in error_path else value  # type: ignore[union-attr]
    assert error.value == expected
    assert problem in error.problem


def test_error_message_reads_path_value_problem() -> None:
    error = config_error(with_("sources.0.tables.1.name", "a;drop"))
    assert str(error).startswith("sources[0].tables[1].name: 'a;drop' is not a SQL identifier")


@pytest.mark.parametrize(
    ("path", "key", "error_path", "suggestion"),
    [
        ("sources.0.setle", "setle", "sources[0]", "did you mean 'settle'?"),
        ("sources.0.tables.0.watermark", "watermark", "sources[0].tables[0]", "did you mean 'watermark_column'?"),
        ("bucekt", "bucekt", "(config)", "did you mean 'bucket'?"),
        ("worker.budget", "budget", "worker", "did you mean 'budget_seconds'?"),
        ("zzz", "zzz", "(config)", "known keys: project, region"),
    ],
)
def test_unknown_keys_name_the_closest_known_key(path: str, key: str, error_path: str, suggestion: str) -> None:
    error = config_error(with_(path, "x"))
    assert (error.path, error.value) == (error_path, key)
    assert suggestion in error.problem


@pytest.mark.parametrize("key", ["project", "region", "bucket", "sources"])
def test_required_top_level_keys(key: str) -> None:
    doc = minimal()
    del doc[key]
    error = config_error(doc)
    assert (error.path, error.value) == (key, None) and "is missing" in error.problem


@pytest.mark.parametrize("key", ["name", "instance", "database", "interval", "tables"])
def test_required_source_keys(key: str) -> None:
    doc = minimal()
    del doc["sources"][0][key]
    error = config_error(doc)
    assert error.path == f"sources[0].{key}" and "is missing" in error.problem


def test_duplicate_table_and_source_names() -> None:
    error = config_error(with_("sources.0.tables", [{"name": "orders"}, {"name": "orders"}]))
    assert (error.path, error.value) == ("sources[0].tables[1].name", "orders")
    second = {**minimal()["sources"][0], "instance": "cdc-local:other-pg", "tables": [{"name": "users"}]}
    error = config_error(with_("sources", [minimal()["sources"][0], second]))
    assert (error.path, error.value) == ("sources[1].name", "shop")


def test_same_instance_and_database_twice_is_rejected() -> None:
    second = {**minimal()["sources"][0], "name": "shop2", "tables": [{"name": "users"}]}
    error = config_error(with_("sources", [minimal()["sources"][0], second]))
    assert (error.path, error.value) == ("sources[1]", "cdc-local:shop-pg/shop")
    assert "'shop'" in error.problem


def test_shared_table_names_need_a_layout_with_source() -> None:
    second = {**minimal()["sources"][0], "name": "eu", "instance": "cdc-local:eu-pg"}
    doc = with_("sources", [minimal()["sources"][0], second])
    error = config_error(doc)
    assert (error.path, error.value) == ("layout.table", "keys/table.j2")
    assert "'orders'" in error.problem and "'shop'" in error.problem and "'eu'" in error.problem
    assert "{{ source }}" in error.hint
    config = parse_config(with_("layout", {"table": "keys/table_by_source.j2"}, doc))
    assert [s.name for s in config.sources] == ["shop", "eu"]


def test_shared_table_names_with_a_custom_layout_lacking_source_fail_at_load(tmp_path: Path) -> None:
    second = {**minimal()["sources"][0], "name": "eu", "instance": "cdc-local:eu-pg"}
    doc = with_("layout", {"table": "keys/schema.j2"}, with_("sources", [minimal()["sources"][0], second]))
    doc["sources"][0]["tables"] = doc["sources"][1]["tables"] = [{"name": "orders", "template": "orders.sql"}]
    parse_config(doc)  # a custom layout is checked by rendering it, at load time
    with pytest.raises(ConfigError) as e:
        load_config({"CDC_CONFIG": json.dumps(doc)})
    assert e.value.path == "layout.table" and "renders the same key" in e.value.problem


def test_cron_interval_and_start() -> None:
    config = parse_config(
        with_("sources.0.start", "2026-01-01T00:15:00+00:00", with_("sources.0.interval", "*/15  * * * *"))
    )
    source = config.sources[0]
    assert source.interval == "*/15 * * * *" and source.schedule.cron == "*/15 * * * *"
    assert source.start == pendulum.datetime(2026, 1, 1, 0, 15, tz="UTC")


def test_lookups_of_unknown_names() -> None:
    config = parse_config(minimal())
    with pytest.raises(ConfigError) as e:
        config.source("nope")
    assert (e.value.path, e.value.value) == ("sources", "nope") and "known: shop" in e.value.problem
    with pytest.raises(ConfigError) as e:
        config.sources[0].table("nope")
    assert e.value.value == "nope" and "known: orders, payments" in e.value.problem


def test_csv_hex_is_normalised_and_params_kept() -> None:
    doc = with_("sources.0.csv", {"escape": "5c", "gzip": True})
    doc = with_("sources.0.tables.0.params", {"flag": True, "limit": 10, "col": "note"}, doc)
    source = parse_config(doc).sources[0]
    assert source.csv.escape == "5C" and source.csv.gzip
    assert source.tables[0].params == {"flag": True, "limit": 10, "col": "note"}


def test_bad_endpoint() -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(minimal(), sqladmin_endpoint="localhost:9000")
    assert (e.value.path, e.value.value) == ("CDC_SQLADMIN_ENDPOINT", "localhost:9000")
