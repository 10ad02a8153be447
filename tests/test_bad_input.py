"""Bad input: malformed messages, injection attempts, bad configurations and unrenderable templates.

Malformed messages go through the real Pub/Sub emulator to the functions; each must be acknowledged after
exactly one delivery (counted from the functions' logs: every delivery logs "message received" or
"message rejected" with the message id), logged at ERROR with its reason, and create nothing.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from local.demo_data import TABLES, seed
from local.faults import read_log_entries
from shared.core.config import parse_config
from shared.core.errors import MessageError
from shared.core.messages import parse_event
from shared.core.templates import Templates
from shared.core.windows import Window
from tests.pipeline_support import START, Pipeline, demo_config

REPO = Path(__file__).resolve().parent.parent
SQL = "x'; DROP TABLE orders; --"
OK_AT = START.add(hours=1, minutes=5).isoformat()
OK_START, OK_END = START.subtract(hours=2).isoformat(), START.isoformat()


def _backfill(**fields: Any) -> dict[str, Any]:
    return {"kind": "backfill", "start": OK_START, "end": OK_END, **fields}


# (case, topic, payload bytes, expected words in the logged reason)
MALFORMED: list[tuple[str, str, bytes, str]] = [
    ("not json", "ticks", b"tick please", "not JSON"),
    ("invalid utf-8", "ticks", b"\xff\xfe{", "not JSON"),
    ("json array", "ticks", b"[1, 2]", "not a JSON object"),
    ("json string", "ticks", b'"tick"', "not a JSON object"),
    ("no kind", "ticks", b"{}", "kind None"),
    ("unknown kind", "ticks", b'{"kind": "reboot"}', "kind 'reboot'"),
    ("kind wrong type", "ticks", b'{"kind": 5}', "kind 5"),
    ("tick naive at", "ticks", json.dumps({"kind": "tick", "at": "2026-11-20T01:05:00"}).encode(), "at"),
    ("tick at wrong type", "ticks", b'{"kind": "tick", "at": 12345}', "at 12345"),
    ("tick at not a time", "ticks", b'{"kind": "tick", "at": "yesterday"}', "at 'yesterday'"),
    ("tick at with sql", "ticks", json.dumps({"kind": "tick", "at": OK_AT + SQL}).encode(), "at"),
    ("tick unknown key", "ticks", b'{"kind": "tick", "when": "now"}', "'when' is not known"),
    ("backfill no start/end", "ticks", b'{"kind": "backfill"}', "no 'start'"),
    ("backfill no end", "ticks", json.dumps({"kind": "backfill", "start": OK_START}).encode(), "no 'end'"),
    ("backfill end before start", "ticks", json.dumps(_backfill(start=OK_END, end=OK_START)).encode(), "backfill"),
    ("backfill naive start", "ticks", json.dumps(_backfill(start="2026-11-19T22:00:00")).encode(), "start"),
    ("backfill off grid", "ticks", json.dumps(_backfill(start="2026-11-19T22:30:00+00:00")).encode(), "grid"),
    ("backfill over the cap", "ticks", json.dumps(_backfill(start="2026-01-01T00:00:00+00:00")).encode(), "2000"),
    ("backfill in the future", "ticks", json.dumps(_backfill(end="2099-01-01T00:00:00+00:00")).encode(), "backfill"),
    ("backfill unknown source", "ticks", json.dumps(_backfill(source="warehouse")).encode(), "source 'warehouse'"),
    ("backfill source with sql", "ticks", json.dumps(_backfill(source=SQL)).encode(), "source"),
    ("backfill source wrong type", "ticks", json.dumps(_backfill(source=["shop"])).encode(), "source"),
    ("backfill table with sql", "ticks", json.dumps(_backfill(tables=["orders; DROP TABLE orders"])).encode(), "table"),
    ("backfill unknown table", "ticks", json.dumps(_backfill(tables=["refunds"])).encode(), "table 'refunds'"),
    ("backfill tables not a list", "ticks", json.dumps(_backfill(tables="orders")).encode(), "tables 'orders'"),
    ("backfill tables empty", "ticks", json.dumps(_backfill(tables=[])).encode(), "tables []"),
    ("backfill table twice", "ticks", json.dumps(_backfill(tables=["orders", "orders"])).encode(), "twice"),
    ("backfill force not bool", "ticks", json.dumps(_backfill(force="yes")).encode(), "force 'yes'"),
    ("backfill offload not bool", "ticks", json.dumps(_backfill(offload=1)).encode(), "offload 1"),
    ("backfill start with sql", "ticks", json.dumps(_backfill(start=OK_START + SQL)).encode(), "start"),
    ("oversized payload", "ticks", json.dumps({"kind": "tick", "pad": "x" * 70_000}).encode(), "larger than"),
    ("work on ticks topic", "ticks", b'{"kind": "work", "instance": "cdc-local:shop-pg"}', "work message arrived"),
    ("work not json", "work", b"{work", "not JSON"),
    ("work no instance", "work", b'{"kind": "work"}', "instance None"),
    ("work unknown instance", "work", b'{"kind": "work", "instance": "cdc-local:nope"}', "not the instance"),
    ("work instance with sql", "work", json.dumps({"kind": "work", "instance": SQL}).encode(), "instance"),
    ("work instance wrong type", "work", b'{"kind": "work", "instance": 7}', "instance 7"),
    ("work unknown key", "work", b'{"kind": "work", "instance": "cdc-local:shop-pg", "x": 1}', "'x' is not known"),
    ("tick on work topic", "work", b'{"kind": "tick"}', "tick message arrived"),
    ("backfill on work topic", "work", json.dumps(_backfill()).encode(), "backfill message arrived"),
]


def _row_counts(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}


@pytest.fixture(scope="module")
def seeded(stack):
    return seed(stack.pg_dsn("postgres"), START, hours=2, rows_per_table=1_000)


@pytest.mark.stack
def test_malformed_messages_are_rejected_once_logged_and_create_nothing(stack, clean_stack, seeded, tmp_path):
    assert len(MALFORMED) >= 30
    p = Pipeline(stack, demo_config(), tmp_path / "config.json", None)
    shop_dsn = stack.pg_dsn("shop")
    rows_before = _row_counts(shop_dsn)
    logs = {name: stack.logs_dir / f"{name}.log" for name in ("planner", "worker")}
    offsets = {name: path.stat().st_size for name, path in logs.items()}
    topics = {"ticks": p.config.ticks_topic, "work": p.config.work_topic}
    sent = {p.driver.raw(topics[topic], data): (case, topic, reason) for case, topic, data, reason in MALFORMED}

    def deliveries() -> dict[str, list[dict[str, Any]]]:
        seen: dict[str, list[dict[str, Any]]] = {mid: [] for mid in sent}
        for name, path in logs.items():
            for entry in read_log_entries(path, offsets[name]):
                if entry.get("message_id") in seen and entry.get("message") != "message received":
                    seen[entry["message_id"]].append({**entry, "function": name})
        return seen

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(deliveries().values()):
        time.sleep(0.3)
    time.sleep(4.0)  # longer than the subscriptions' minimum retry back-off: a retried message shows again
    seen = deliveries()
    for message_id, (case, topic, reason) in sent.items():
        outcomes = seen[message_id]
        assert len(outcomes) == 1, (case, outcomes)
        outcome = outcomes[0]
        assert outcome["message"] == "message rejected; acknowledged without retry", (case, outcome)
        assert outcome["severity"] == "ERROR", case
        assert outcome["function"] == ("planner" if topic == "ticks" else "worker"), case
        assert reason in outcome["error"], (case, outcome["error"])

    assert p.state.all_tasks() == []
    assert p.operations() == []
    assert p.state.watermarks() == {}
    assert _row_counts(shop_dsn) == rows_before


class _Event:
    """A CloudEvent as functions-framework hands it over (only what parse_event reads)."""

    def __init__(self, payload: dict[str, Any]) -> None:
        data = base64.b64encode(json.dumps(payload).encode()).decode()
        self.data = {"message": {"data": data, "messageId": "m-1", "publishTime": "2026-11-20T12:00:00Z"}}


@pytest.mark.parametrize(
    "payload",
    [
        {"kind": SQL},
        {"kind": "tick", "at": SQL},
        {"kind": "tick", SQL: 1},
        _backfill(start=SQL),
        _backfill(end=SQL),
        _backfill(source=SQL),
        _backfill(tables=[SQL]),
        _backfill(force=SQL),
        _backfill(offload=SQL),
        {"kind": "work", "instance": SQL},
        {"kind": "work", "instance": f"cdc-local:shop-pg{SQL}"},
    ],
    ids=lambda p: next(k for k, v in p.items() if SQL in (str(v) + str(k))),
)
def test_injection_through_any_message_field_is_rejected(payload):
    config = parse_config(demo_config())
    with pytest.raises(MessageError):
        parse_event(_Event(payload), config)


def test_only_formatted_timestamps_and_identifiers_reach_the_sql():
    """A valid backfill with odd but legal spellings: the query carries normalised UTC timestamps only."""
    config = parse_config(demo_config())
    event = _Event(_backfill(start="2026-11-19T21:00:00-01:00", end="2026-11-20T00:00:00+00:00", tables=["orders"]))
    backfill = parse_event(event, config)
    source = config.source(backfill.source)
    low = backfill.start.in_timezone("UTC")
    query = Templates().render_query(source, backfill.tables[0], Window(low, low.add(hours=1)))
    assert "TIMESTAMPTZ '2026-11-19T22:00:00+00:00'" in query
    assert "TIMESTAMPTZ '2026-11-19T23:00:00+00:00'" in query
    assert "FROM public.orders" in query


def _cold_start(doc: dict[str, Any] | str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDC_")}
    env["CDC_CONFIG"] = doc if isinstance(doc, str) else json.dumps(doc)
    cmd = [sys.executable, "-m", "functions_framework", "--source", str(REPO / "functions" / "main.py"),
           "--target", "planner", "--signature-type", "cloudevent", "--port", "1"]  # fmt: skip
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_a_bad_configuration_fails_at_cold_start_naming_the_field():
    doc = demo_config()
    doc["sources"][0]["tables"][2]["name"] = "shipments; DROP TABLE orders"
    bad_name = _cold_start(doc)
    assert bad_name.returncode != 0
    output = bad_name.stdout + bad_name.stderr
    assert '"severity": "CRITICAL"' in output
    assert "sources[0].tables[2].name" in output

    doc = demo_config()
    doc["worker"]["lease_second"] = 30
    typo = _cold_start(doc)
    assert typo.returncode != 0
    assert "did you mean 'lease_seconds'" in typo.stdout + typo.stderr


@pytest.mark.stack
def test_an_unrenderable_template_fails_its_task_only(stack, clean_stack, seeded, tmp_path):
    doc = demo_config()
    doc["sources"][0]["tables"].insert(1, {"name": "refunds", "template": "missing/refunds.sql"})
    p = Pipeline(stack, doc, tmp_path / "config.json", None)
    p.tick_for(0)
    p.driver.wait_idle(expect_tasks=2 + len(TABLES))

    tasks = {t.table: t for t in p.state.all_tasks()}
    assert tasks["refunds"].state == "failed"
    assert tasks["refunds"].error["template"] == "missing/refunds.sql"
    assert {t.state for name, t in tasks.items() if name != "refunds"} == {"done"}
    for table in TABLES:
        assert p.state.get_watermark("shop", table) == START.add(hours=1)
    assert p.state.get_watermark("shop", "refunds") == START
    worker_log = (stack.logs_dir / "worker.log").read_text()
    assert "missing/refunds.sql" in worker_log
