"""Completeness beyond the settle delay: verification results, the windows they prove changed, and schema drift."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pendulum
import pytest

from shared.app.planner import plan_tick, plan_verify
from shared.core.config import parse_config
from shared.core.csvformat import Dialect
from shared.core.errors import ConfigError
from shared.core.messages import Tick, Verify
from shared.core.templates import Templates
from shared.core.verification import WindowCount, compare, parse_counts, schema_drift
from shared.core.windows import Window
from shared.ops import report, status
from shared.ops import verify as verify_cli
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


def drifting_schema(body: dict) -> bytes:
    """A column added in the window [01:00, 02:00), and one the export selects retyped."""
    query = body["exportContext"]["csvExportOptions"]["selectQuery"]
    if "information_schema" not in query:
        return b"1,a\n"
    if "T010000" not in body["exportContext"]["uri"]:
        return SCHEMA_CSV
    return SCHEMA_CSV.replace(b"customer_id,bigint", b"customer_id,text") + b"orders,extra,text,9,YES\n"


DRIFT = {("orders", "extra", "added", "WARNING"), ("orders", "customer_id", "retyped", "ERROR")}


def test_schema_drift_is_recorded_in_the_manifest_and_logged(capsys: pytest.CaptureFixture[str]) -> None:
    """A column added mid-run, and one the export selects retyped: the next window's manifest records both."""
    svc = FakeServices(parse_config(config_doc()), start=T0.add(hours=1, minutes=10), content=drifting_schema)
    for _ in range(2):  # one window per tick, in order
        plan_tick(Tick("t", svc.clock.now(), svc.clock.now()), svc)
        svc.bus.published.clear()
        svc.drain(INSTANCE, Templates())
        svc.clock.advance(3600)
    manifests = sorted(svc.state.manifests(), key=lambda m: m["window"]["low"])
    assert manifests[0]["schema_drift"] == []
    drift = {(d["table"], d["column"], d["change"], d["severity"]) for d in manifests[1]["schema_drift"]}
    assert drift == DRIFT
    logged = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "schema drift" in line]
    assert {(e["severity"], e["column"]) for e in logged} == {("WARNING", "extra"), ("ERROR", "customer_id")}


def test_schema_drift_is_flagged_when_the_later_window_completed_first(capsys: pytest.CaptureFixture[str]) -> None:
    """Live windows go first, so after a pause the later window's manifest is written before the earlier one: the
    change is flagged (logged for the later window, alertable) when the earlier window completes."""
    svc = FakeServices(parse_config(config_doc()), start=T0.add(hours=2, minutes=10), content=drifting_schema)
    plan_tick(Tick("t", svc.clock.now(), svc.clock.now()), svc)  # [00:00, 01:00) catch-up, [01:00, 02:00) live
    svc.bus.published.clear()
    svc.drain(INSTANCE, Templates())
    logged = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "schema drift" in line]
    assert {(e["severity"], e["column"], e["window_low"]) for e in logged} == {
        ("WARNING", "extra", T0.add(hours=1).isoformat()),
        ("ERROR", "customer_id", T0.add(hours=1).isoformat()),
    }


class FakeSource:
    """Rows per (table, window low) in the source; the fake Admin API exports what it holds at export time."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], int] = {}
        self.version: dict[tuple[str, str], int] = {}

    def content(self, body: dict) -> bytes:
        query = body["exportContext"]["csvExportOptions"]["selectQuery"]
        if "information_schema" in query:
            return SCHEMA_CSV
        if "WITH w(low, high)" in query:
            table = re.search(r"LEFT JOIN public\.(\w+)", query).group(1)
            lows = re.findall(r"\(TIMESTAMPTZ '([^']+)', TIMESTAMPTZ", query)
            return "".join(
                f"{low},{self.rows.get((table, low), 1)},{self.version.get((table, low), 0)}\n" for low in lows
            ).encode()
        table = re.search(r"FROM public\.(\w+)", query).group(1)
        low = re.search(r">= TIMESTAMPTZ '([^']+)'", query).group(1)
        return b"".join(b"%d,a\n" % i for i in range(self.rows.get((table, low), 1)))


def test_late_rows_are_found_and_repaired_as_a_new_generation_and_an_unchanged_range_is_left_alone() -> None:
    source_rows = FakeSource()
    svc = FakeServices(parse_config(config_doc()), start=T0.add(hours=3, minutes=10), content=source_rows.content)
    templates = Templates()
    plan_tick(Tick("t", svc.clock.now(), svc.clock.now()), svc)
    svc.bus.published.clear()
    svc.drain(INSTANCE, templates)
    assert {t.state for t in svc.state.all_tasks()} == {"done"}
    late = (T0 + HOUR).isoformat()
    source_rows.rows[("orders", late)] = 3  # two rows committed after their window was exported
    source_rows.version[("orders", late)] = 7

    def verify() -> None:
        message = Verify("v", svc.clock.now(), T0, T0 + HOUR * 3, "shop", ("orders", "payments"))
        plan_verify(message, svc)
        svc.bus.published.clear()
        svc.drain(INSTANCE, templates)

    verify()
    window = Window(T0 + HOUR, T0 + HOUR * 2)
    repaired = svc.state.get_task(f"shop.{window.ts_nodash}.table.orders")
    assert repaired.state == "done" and repaired.generation == 2 and repaired.uri.endswith(".g2.csv")
    record = svc.state.get_manifest("shop", window)
    assert record["version"] == 2 and record["previous"].endswith("/_manifest.json")
    assert record["replaced_because"]["rows_exported"] == 1 and record["replaced_because"]["rows_now"] == 3
    assert next(o for o in record["objects"] if o["table"] == "orders")["rows"] == 3
    assert svc.sqladmin.overwrite_attempts == 0
    assert any(k.endswith("_manifest.v2.json") for k in svc.objects.data)
    # The watermark never moved back, and a second verification of the unchanged range re-exports nothing.
    assert svc.state.get_watermark("shop", "orders") == T0 + HOUR * 3
    exports_before = len([u for u in svc.sqladmin.exported if "/raw/" in u])
    svc.clock.advance(60)
    verify_twice = Verify("v2", svc.clock.now(), T0, T0 + HOUR * 3, "shop", ("orders", "payments"))
    plan_verify(verify_twice, svc)
    svc.bus.published.clear()
    svc.drain(INSTANCE, templates)
    assert len([u for u in svc.sqladmin.exported if "/raw/" in u]) == exports_before
    shown = status.collect_status(svc.config, svc.state, clock=svc.clock.now())
    verification = shown.sources[0].completeness["verification"]
    assert verification["orders"]["repaired"] == 1 and verification["payments"]["repaired"] == 0
    assert verification["orders"]["windows"] == 3 and verification["orders"]["last_verified_at"]
    assert "orders 3 window(s)" in status.format_status(shown) and "1 repaired" in status.format_status(shown)


def test_a_scheduled_verification_is_planned_once_per_period_behind_live_work() -> None:
    doc = config_doc()
    doc["sources"][0]["verify"] = [{"every": "2h", "lookback": "2h"}]
    svc = FakeServices(parse_config(doc), start=T0.add(hours=4, minutes=10), content=FakeSource().content)
    for minutes in (0, 20):
        svc.clock.advance(minutes * 60)
        plan_tick(Tick("t", svc.clock.now(), svc.clock.now()), svc)
    verifications = [t for t in svc.state.all_tasks() if t.purpose == "verify"]
    assert sorted((t.table, t.low, t.high) for t in verifications) == [
        ("orders", T0 + HOUR * 2, T0 + HOUR * 4),
        ("payments", T0 + HOUR * 2, T0 + HOUR * 4),
    ]
    pending = svc.state.next_pending(INSTANCE, limit=100)
    first_verify = next(i for i, t in enumerate(pending) if t.purpose == "verify")
    assert all(t.purpose == "export" for t in pending[:first_verify])
    assert all(t.priority == 0 for t in pending if t.purpose == "export")


def test_a_manifest_that_cannot_be_written_truthfully_is_recorded_shown_and_never_stops_the_chain(
    tmp_path: Path,
) -> None:
    shutil.copytree(Templates().root, tmp_path / "templates")
    (tmp_path / "templates" / "orders.sql").write_text(
        "SELECT id, lower(currency) FROM {{ schema }}.{{ table }} "
        "WHERE event_timestamp >= TIMESTAMPTZ '{{ low_watermark.isoformat() }}' "
        "AND event_timestamp < TIMESTAMPTZ '{{ high_watermark.isoformat() }}'"
    )
    templates = Templates(tmp_path / "templates")
    svc = FakeServices(parse_config(config_doc()), start=T0.add(hours=2, minutes=10), content=FakeSource().content)
    plan_tick(Tick("t", svc.clock.now(), svc.clock.now()), svc)
    svc.bus.published.clear()
    svc.drain(INSTANCE, templates)
    assert {t.state for t in svc.state.all_tasks()} == {"done"} and all(t.finalized for t in svc.state.all_tasks())
    records = svc.state.manifests()
    assert len(records) == 2 and {r["status"] for r in records} == {"failed"}
    assert "lower(currency)" in records[0]["error"]["message"].lower() and not svc.objects.json_writes
    text = status.format_status(status.collect_status(svc.config, svc.state, clock=svc.clock.now()))
    assert text.count("manifest not written for window") == 2


def test_the_report_shows_verification_per_table() -> None:
    svc = FakeServices(parse_config(config_doc()), start=T0.add(hours=2, minutes=10), content=FakeSource().content)
    plan_tick(Tick("t", svc.clock.now(), svc.clock.now()), svc)
    svc.bus.published.clear()
    svc.drain(INSTANCE, Templates())
    plan_verify(Verify("v", svc.clock.now(), T0, T0 + HOUR * 2, "shop", ("orders",)), svc)
    svc.bus.published.clear()
    svc.drain(INSTANCE, Templates())
    data = report.collect_report(svc.config, svc.state, windows=4, since=None, clock=svc.clock.now())
    html = report.render_html(data)
    assert '<tr data-table="orders"><td>orders</td><td class="num">2</td>' in html
    assert '<tr data-table="payments"><td>payments</td><td class="num">0</td><td>never</td>' in html


def test_cdc_verify_snaps_relative_times_to_whole_settled_windows() -> None:
    config = parse_config(config_doc())
    now = T0.add(hours=5, minutes=3)  # settle 5m: the 04:00 window is not settled yet
    assert verify_cli.snap(config, None, T0.add(minutes=30), now, now) == (T0, T0 + HOUR * 4)
    assert verify_cli.default_range(config, None, now) == (T0.subtract(hours=20), T0 + HOUR * 4)


def test_an_unreadable_object_records_a_failed_manifest_and_the_chain_goes_on() -> None:
    """Whatever one window's bookkeeping raises (here: a schema snapshot that is not UTF-8), the chain finishes
    every other window; before, every recovery raised again and the chain died."""

    def content(body: dict) -> bytes:
        query = body["exportContext"]["csvExportOptions"]["selectQuery"]
        return b"\xff\xfe\x00bad" if "information_schema" in query else b"1,a\n"

    svc = FakeServices(parse_config(config_doc()), start=T0.add(hours=2, minutes=10), content=content)
    plan_tick(Tick("t", svc.clock.now(), svc.clock.now()), svc)
    svc.bus.published.clear()
    svc.drain(INSTANCE, Templates())
    assert {t.state for t in svc.state.all_tasks()} == {"done"} and all(t.finalized for t in svc.state.all_tasks())
    assert {r["status"] for r in svc.state.manifests()} == {"failed"}
    assert svc.state.get_watermark("shop", "orders") == T0 + HOUR * 2
