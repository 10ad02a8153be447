"""The `cdc` command line, run as a subprocess (`python -m shared.ops.cli`) against the demo config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pendulum
import pytest

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "local" / "demo_config.json"


def cdc(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CDC_")}
    return subprocess.run(
        [sys.executable, "-m", "shared.ops.cli", *args],
        cwd=REPO,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_render_json_with_config_flag() -> None:
    result = cdc("render", "orders", "--at", "2026-01-01T10:30:00Z", "--config", str(DEMO), "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    uri = "gs://cdc-exports/cdc/raw/orders/2026/01/01/orders_20260101T100000.csv"
    assert out["window"] == {
        "low": "2026-01-01T10:00:00+00:00",
        "high": "2026-01-01T11:00:00+00:00",
        "ts_nodash": "20260101T100000",
    }
    assert out["uri"] == uri
    assert out["sql"].startswith("SELECT id, event_timestamp, customer_id") and "\n" not in out["sql"]
    context = out["request"]["exportContext"]
    assert context["uri"] == uri and context["databases"] == ["shop"] and context["fileType"] == "CSV"
    assert context["csvExportOptions"]["selectQuery"] == out["sql"]
    escape = json.loads(DEMO.read_text())["sources"][0]["csv"]["escape"]
    assert context["csvExportOptions"]["escapeCharacter"] == escape and context["offload"] is False


def test_render_text_with_env_config() -> None:
    result = cdc("render", "page_views", "--at", "2026-01-01T10:00:00+00:00", env={"CDC_CONFIG_FILE": str(DEMO)})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("-- shop page_views window [2026-01-01T10:00:00+00:00, 2026-01-01T11:00:00+00:00)")
    assert lines[1].startswith("SELECT id, event_timestamp, session_id")
    assert lines[2] == "uri: gs://cdc-exports/cdc/raw/page_views/2026/01/01/page_views_20260101T100000.csv"
    assert lines[3] == "POST projects/cdc-local/instances/shop-pg/export"
    assert json.loads("\n".join(lines[4:]))["exportContext"]["csvExportOptions"]["quoteCharacter"] == "22"


def test_render_schema_with_generation_and_inline_config() -> None:
    args = ("render", "--schema", "--at", "2026-01-01T10:30:00Z", "--generation", "2", "--json")
    result = cdc(*args, env={"CDC_CONFIG": DEMO.read_text()})
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["uri"] == "gs://cdc-exports/cdc/schemas/shop/2026/01/01/schema_20260101T100000.g2.csv"
    assert "information_schema.columns" in out["sql"]


def test_plan_with_since_shows_tasks_and_gap() -> None:
    args = ("plan", "--at", "2026-01-03T00:10:00Z", "--since", "2026-01-01T00:00:00Z", "--json")
    result = cdc(*args, "--config", str(DEMO))
    assert result.returncode == 0, result.stderr
    (plan,) = json.loads(result.stdout)["sources"]
    assert plan["source"] == "shop" and plan["catchup_cap"] == 48
    assert len(plan["tasks"]) == 48 * 5  # 48 windows x (schema + 4 tables)
    first = plan["tasks"][0]
    assert first["table"] == "(schema)" and first["window"]["low"] == "2026-01-01T00:00:00+00:00"
    assert plan["tasks"][1]["uri"] == "gs://cdc-exports/cdc/raw/orders/2026/01/01/orders_20260101T000000.csv"
    assert plan["gap"] is None  # exactly 48 windows were missing
    result = cdc("plan", "--at", "2026-01-03T01:10:00Z", "--watermark", "2026-01-01T00:00:00Z", "--config", str(DEMO))
    assert result.returncode == 0, result.stderr
    assert "gap [2026-01-03T00:00:00+00:00, 2026-01-03T01:00:00+00:00) beyond catchup_cap 48" in result.stdout


def test_plan_without_since_is_the_latest_window() -> None:
    result = cdc("plan", "--at", "2026-01-01T10:04:00Z", "--config", str(DEMO))
    assert result.returncode == 0, result.stderr
    windows = {line.split(")")[0] for line in result.stdout.splitlines()[1:]}
    assert windows == {"  [2026-01-01T08:00:00+00:00, 2026-01-01T09:00:00+00:00"}  # 09-10 settles at 10:05


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("render", "nope", "--at", "2026-01-01T00:00:00Z"),
            "cdc: error: source 'shop' tables: 'nope' is not a configured table",
        ),
        (("render", "--at", "2026-01-01T00:00:00Z"), "cdc: error: give either a TABLE or --schema"),
        (("render", "orders", "--at", "2026-01-01T00:00:00"), "has no UTC offset"),
        (("render", "orders", "--at", "2026-01-01T00:00:00Z", "--source", "crm"), "'crm' is not a configured source"),
        (("render", "orders", "--at", "2026-01-01T00:00:00Z", "--generation", "0"), "generation 0"),
        (
            (
                "plan",
                "--at",
                "2026-01-02T00:00:00Z",
                "--since",
                "2026-01-01T00:00:00Z",
                "--watermark",
                "2026-01-01T00:00:00Z",
            ),
            "not allowed with argument",
        ),
        (
            ("plan", "--at", "soon"),
            "'soon' is not an RFC 3339 timestamp with a UTC offset, e.g. 2026-01-01T00:00:00Z; "
            "accepted: now, today, yesterday",
        ),
        (("plan", "--at", "-1h2d"), "'-1h2d' repeats a unit or lists them out of order"),
        (("render", "orders", "--at", "2026-02-30"), "'2026-02-30' is not a calendar date"),
        (("frobnicate",), "invalid choice"),
    ],
)
def test_bad_input_exits_2_with_the_reason(args: tuple[str, ...], message: str) -> None:
    result = cdc(*args, "--config", str(DEMO)) if args[0] in ("render", "plan") else cdc(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stdout == ""
    if result.stderr.startswith("cdc: error:"):
        assert len(result.stderr.strip().splitlines()) == 1


def test_config_errors_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"project": "cdc-local"}))
    result = cdc("plan", "--at", "2026-01-01T00:00:00Z", "--config", str(bad))
    assert result.returncode == 2 and result.stderr.startswith("cdc: error: config error: sources is missing")
    result = cdc("plan", "--at", "2026-01-01T00:00:00Z")
    assert result.returncode == 2
    assert result.stderr.startswith("cdc: error: config error: --config is not given and neither CDC_CONFIG nor")
    missing = cdc("plan", "--config", str(tmp_path / "nope.json"))
    assert missing.returncode == 2
    assert missing.stderr.startswith(f"cdc: error: config error: --config: '{tmp_path / 'nope.json'}' cannot be read")
    assert "CDC_CONFIG_FILE" not in missing.stderr


def test_a_missing_template_is_a_config_error(tmp_path: Path) -> None:
    doc = json.loads(DEMO.read_text())
    doc["sources"][0]["tables"][0]["template"] = "nope.sql"
    (tmp_path / "c.json").write_text(json.dumps(doc))
    for args in (("status",), ("plan",), ("status", "--json")):
        result = cdc(*args, "--config", str(tmp_path / "c.json"))
        assert result.returncode == 2, (args, result.stderr)
        assert result.stdout == ""  # no JSON log line, no partial output
        assert result.stderr.startswith("cdc: error: config error: template 'nope.sql' does not exist under ")
        assert len(result.stderr.splitlines()) == 1


def test_help_is_complete() -> None:
    top = cdc("--help")
    assert top.returncode == 0 and "render" in top.stdout and "plan" in top.stdout
    assert "exit codes:\n  0  done" in top.stdout and "  4  Google Cloud or the local stack" in top.stdout
    assert "examples:\n  cdc status" in top.stdout and "times: now, today" in top.stdout
    for command in ("render", "plan", "status", "backfill", "retry", "report"):
        text = cdc(command, "--help").stdout
        assert f"examples:\n  cdc {command}" in text and "exit codes: 0 done" in text, command
        assert "--json" in text, command
    render = cdc("render", "--help").stdout
    for flag in ("TABLE", "--schema", "--at", "--source", "--generation", "--json", "--config"):
        assert flag in render
    plan = cdc("plan", "--help").stdout
    for flag in ("--at", "--since", "--watermark", "--source", "--json", "--config"):
        assert flag in plan


def test_version() -> None:
    result = cdc("--version")
    assert result.returncode == 0 and result.stdout.strip() == "cdc (cloudsql-cdc) 0.1.0"


def test_plan_text_says_what_since_is() -> None:
    result = cdc("plan", "--at", "2026-01-01T10:04:00Z", "--config", str(DEMO))
    assert "since None" not in result.stdout
    assert result.stdout.splitlines()[0].endswith("no --since/--watermark and no start: latest window only")
    relative = cdc("plan", "--at", "2026-01-01T10:04:00Z", "--since", "2026-01-01", "--json", "--config", str(DEMO))
    assert json.loads(relative.stdout)["sources"][0]["since"] == "2026-01-01T00:00:00+00:00"


def test_time_expressions_on_the_command_line() -> None:
    """`now` and offsets (`--at -2h` too, which argparse alone would take for an option) are one clock."""
    result = cdc("plan", "--at", "-2h", "--since", "-5h", "--json", "--config", str(DEMO))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    clock = pendulum.parse(out["clock"])
    assert abs((pendulum.now("UTC").subtract(hours=2) - clock).total_seconds()) < 20
    since = pendulum.parse(out["sources"][0]["since"])
    assert since == clock.subtract(hours=3).start_of("hour")  # floored to the 1h grid
    assert len(out["sources"][0]["tasks"]) in (10, 15)  # 2 or 3 settled windows x (schema + 4 tables)


def test_broken_pipe_is_quiet(tmp_path: Path) -> None:
    """`cdc plan --json | head -1`: no traceback, the exit status a Unix tool killed by SIGPIPE leaves."""
    doc = json.loads(DEMO.read_text())
    doc["sources"][0]["catchup_cap"] = 2000  # far more output than a pipe buffers (64 KiB)
    config = tmp_path / "big.json"
    config.write_text(json.dumps(doc))
    base = {k: v for k, v in os.environ.items() if not k.startswith("CDC_")}
    for extra in (("--json",), ()):
        args = [
            sys.executable,
            "-m",
            "shared.ops.cli",
            "plan",
            "--since",
            "2025-01-01",
            *extra,
            "--config",
            str(config),
        ]
        cdc_process = subprocess.Popen(args, cwd=REPO, env=base, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert cdc_process.stdout is not None and cdc_process.stderr is not None
        cdc_process.stdout.readline()
        cdc_process.stdout.close()  # what `head -1` does once it has its line
        stderr = cdc_process.stderr.read().decode()
        assert cdc_process.wait(timeout=30) == 141, stderr
        assert stderr == ""


def test_python_dash_m_shared_ops_works() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "shared.ops", "--help"], cwd=REPO, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0 and result.stdout.startswith("usage: cdc")


def test_render_lists_the_csv_columns_in_the_querys_order(tmp_path: Path) -> None:
    plain = cdc("render", "orders", "--at", "2026-01-01T00:00:00Z", "--json", "--config", str(DEMO))
    assert [c["name"] for c in json.loads(plain.stdout)["columns"]][:2] == ["id", "event_timestamp"]
    doc = json.loads(DEMO.read_text())
    doc["sources"][0]["tables"][0]["template"] = "examples/awkward_computed.sql"
    config = tmp_path / "config.json"
    config.write_text(json.dumps(doc))
    computed = cdc("render", "orders", "--at", "2026-01-01T00:00:00Z", "--config", str(config))
    assert computed.returncode == 0, computed.stderr
    assert "; CSV columns, in order: id, u_upper text, n_twice numeric, day date, tag text (" in computed.stdout
