"""Completeness beyond the settle delay: verification results, the windows they prove changed, and schema drift."""

from __future__ import annotations

import json

import pendulum
import pytest

from shared.app.planner import plan_tick
from shared.core.config import parse_config
from shared.core.csvformat import Dialect
from shared.core.errors import ConfigError
from shared.core.messages import Tick
from shared.core.templates import Templates
from shared.core.verification import WindowCount, compare, parse_counts, schema_drift
from shared.core.windows import Window
from shared.testing.services import FakeServices
from tests.test_chain import INSTANCE, SCHEMA_CSV, T0, config_doc

HOUR = pendulum.duration(hours=1)
WINDOWS = [Window(T0 + HOUR * i, T0 + HOUR * (i + 1)) for i in range(4)]


def test_parse_counts_reads_the_verification_export() -> None:
    data = b"2026-01-01T00:00:00+00:00,3,123\n2026-01-01T01:00:00+00:00,0,0\n"
    counts = parse_counts(data, Dialect())
    assert counts[T0] == WindowCount(T0, 3, "123") and counts[T0 + HOUR].rows == 0
    with pytest.raises(ValueError, match="window_low, row_count, checksum"):
        parse_counts(b"2026-01-01T00:00:00+00:00,3\n", Dialect())


def test_compare_finds_late_rows_deletes_and_in_place_changes_only() -> None:
    counts = {
        WINDOWS[0].low: WindowCount(WINDOWS[0].low, 5, "a"),  # unchanged
        WINDOWS[1].low: WindowCount(WINDOWS[1].low, 7, "b"),  # 2 late rows
        WINDOWS[2].low: WindowCount(WINDOWS[2].low, 4, "c"),  # one deleted
        WINDOWS[3].low: WindowCount(WINDOWS[3].low, 5, "d2"),  # updated in place
    }
    exported = {WINDOWS[0].low: 5, WINDOWS[1].low: 5, WINDOWS[2].low: 5, WINDOWS[3].low: 5}
    previous = {WINDOWS[0].low: "a", WINDOWS[3].low: "d1"}
    findings = compare("orders", WINDOWS, counts, exported, previous)
    assert [(f.window.low, f.rows_exported, f.rows_now) for f in findings] == [
        (WINDOWS[1].low, 5, 7),
        (WINDOWS[2].low, 5, 4),
        (WINDOWS[3].low, 5, 5),
    ]
    assert "more rows" in findings[0].reason and "fewer rows" in findings[1].reason
    assert "checksum" in findings[2].reason


def test_compare_skips_windows_never_exported_and_a_first_verification_without_checksums() -> None:
    counts = {w.low: WindowCount(w.low, 5, "x") for w in WINDOWS}
    assert compare("orders", WINDOWS, counts, {WINDOWS[0].low: 5}, {}) == []


def test_schema_drift_flags_what_changes_a_csv_as_error() -> None:
    before = {"orders": [{"name": "id", "type": "bigint"}, {"name": "note", "type": "text"}]}
    after = {"orders": [{"name": "id", "type": "integer"}, {"name": "extra", "type": "text"}]}
    drift = schema_drift(before, after, {"orders": {"id"}})
    assert [(d["column"], d["change"], d["severity"]) for d in drift] == [
        ("extra", "added", "WARNING"),
        ("id", "retyped", "ERROR"),
        ("note", "removed", "WARNING"),
    ]
    assert schema_drift(None, after, {}) == []


def test_verify_rules_are_validated_against_the_grid() -> None:
    doc = config_doc()
    doc["sources"][0]["verify"] = [{"every": "1h", "lookback": "6h"}, {"every": "1d", "lookback": "7d"}]
    rules = parse_config(doc).sources[0].verify
    assert [(r.every.total_seconds(), r.lookback.total_seconds()) for r in rules] == [(3600, 21600), (86400, 604800)]
    doc["sources"][0]["verify"] = [{"every": "90m", "lookback": "6h"}]
    with pytest.raises(ConfigError) as e:
        parse_config(doc)
    assert e.value.path == "sources[0].verify[0].every" and "whole number" in e.value.problem


def test_the_verification_query_lists_every_window_and_compares_the_column_bare() -> None:
    config = parse_config(config_doc())
    source = config.sources[0]
    sql = Templates().render_verify_query(source, source.tables[0], WINDOWS[:2])
    assert "ON t.event_timestamp >= w.low AND t.event_timestamp < w.high" in sql  # bare column: the index serves
    assert sql.count("TIMESTAMPTZ") == 4 and "LEFT JOIN public.orders AS t" in sql


def test_schema_drift_is_recorded_in_the_manifest_and_logged(capsys: pytest.CaptureFixture[str]) -> None:
    """A column added mid-run, and one the export selects retyped: the next window's manifest records both."""
    schemas = [
        SCHEMA_CSV,
        SCHEMA_CSV.replace(b"customer_id,bigint", b"customer_id,text") + b"orders,extra,text,9,YES\n",
    ]
    served: list[int] = []

    def content(body: dict) -> bytes:
        query = body["exportContext"]["csvExportOptions"]["selectQuery"]
        if "information_schema" in query:
            served.append(1)
            return schemas[0] if len(served) == 1 else schemas[1]
        return b"1,a\n"

    svc = FakeServices(parse_config(config_doc()), start=T0.add(hours=2, minutes=10), content=content)
    plan_tick(Tick("t", svc.clock.now(), svc.clock.now()), svc)
    svc.bus.published.clear()
    svc.drain(INSTANCE, Templates())
    manifests = sorted(svc.state.manifests(), key=lambda m: m["window"]["low"])
    assert manifests[0]["schema_drift"] == []
    drift = {(d["table"], d["column"], d["change"], d["severity"]) for d in manifests[1]["schema_drift"]}
    assert drift == {("orders", "extra", "added", "WARNING"), ("orders", "customer_id", "retyped", "ERROR")}
    logged = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "schema drift" in line]
    assert {(e["severity"], e["column"]) for e in logged} == {("WARNING", "extra"), ("ERROR", "customer_id")}
