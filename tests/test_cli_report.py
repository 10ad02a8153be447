"""`cdc report --html`: the page is rendered in headless Chromium (screenshot + DOM dump) and the DOM is checked
cell by cell against the StateStore data it was made from. Chromium comes from `local/ensure_chromium.sh`."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pendulum
import pytest

from shared.ops.cli import EXIT_BAD_INPUT
from shared.ops.status import SCHEMA_ROW
from tests.cli_stack_support import FAILED_TASK, HOUR, RETRYING_TASK, T0, cdc, craft_queue, use_config

pytestmark = pytest.mark.stack

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
WIDTH, HEIGHT = 1280, 900


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert Path(CHROMIUM).exists(), "chromium is not installed: run local/ensure_chromium.sh (make test does)"
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}", f"--window-size={WIDTH},{HEIGHT}",
    ]  # fmt: skip
    result = subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


class _Dom(HTMLParser):
    """Collects the report's data-bearing elements from Chromium's DOM dump."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[tuple[str, str, str], dict[str, str]] = {}
        self.lag: dict[tuple[str, str], str] = {}
        self.errors: list[str] = []
        self.error_text: list[str] = []
        self._in_error = False
        self.external: list[str] = []
        self.lines: dict[str, tuple[str, str]] = {}
        self.threshold: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        classes = a.get("class", "").split()
        for key in ("src", "href"):
            if key in a:
                self.external.append(f"{tag} {key}={a[key]}")
        if tag == "td" and "cell" in classes:
            self.cells[(a["data-source"], a["data-table"], a["data-window"])] = {"state": a["data-state"], **a}
        elif tag == "tr" and "lag-row" in classes:
            self.lag[(a["data-source"], a["data-table"])] = a["data-lag-seconds"]
        elif tag == "polyline" and "lag-line" in classes:
            self.lines[a["data-table"]] = (a["data-points"], a["points"])
        elif tag == "line" and "threshold" in classes:
            self.threshold = a["data-threshold-seconds"]
        elif tag == "tr" and "error" in classes:
            self.errors.append(a["data-task"])
            self._in_error = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr":
            self._in_error = False

    def handle_data(self, data: str) -> None:
        if self._in_error:
            self.error_text.append(data)


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_report_renders_in_chromium_and_matches_the_state(clean_stack, stack_env, tmp_path: Path, monkeypatch) -> None:
    crafted = craft_queue(use_config(tmp_path, stack_env, monkeypatch))
    clock = T0 + HOUR * 3 + pendulum.duration(minutes=5)
    page = tmp_path / "report.html"
    result = cdc("report", "--html", str(page), "--since", (T0 - HOUR * 3).isoformat(), "--at", clock.isoformat())
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"wrote {page} (35 cells, 2 errors)"
    one = cdc("report", "--html", str(tmp_path / "one.html"), "--since", (T0 - HOUR).isoformat(), "--windows", "1")
    assert one.returncode == EXIT_BAD_INPUT  # --since and --windows exclude each other
    html = page.read_text()
    assert not re.search(r"""(src=|href=|url\(|@import)""", html), "the page must not load anything"

    shot = tmp_path / "report.png"
    chromium(tmp_path, f"--screenshot={shot}", page.as_uri())
    png = shot.read_bytes()
    assert _png_size(png) == (WIDTH, HEIGHT)
    assert len(png) > 20_000  # a blank page is ~5 kB; the coloured timeline and tables make it far larger

    dom = _Dom()
    dom.feed(chromium(tmp_path, "--dump-dom", page.as_uri()).stdout)
    assert dom.external == []

    # Every (table, window) cell, in the data's state; windows without a task are `missing`, or `before` when
    # they come before the pipeline's first window (the backfilled one at T0-2h).
    tasks = {(t.table or SCHEMA_ROW, t.low.strftime("%Y%m%dT%H%M%S")): t for t in crafted.state.all_tasks()}
    windows = [(T0 + HOUR * i).strftime("%Y%m%dT%H%M%S") for i in range(-3, 4)]
    rows = [SCHEMA_ROW, *crafted.config.sources[0].table_names]
    assert set(dom.cells) == {("shop", row, w) for row in rows for w in windows}
    first = (T0 - HOUR * 2).strftime("%Y%m%dT%H%M%S")
    for (_, row, window), cell in dom.cells.items():
        task = tasks.get((row, window))
        expected = task.state if task else ("before" if window < first else "missing")
        assert cell["state"] == expected, (row, window)
        assert f"s-{expected}" in cell["class"].split()
        assert ("backfill" in cell["class"].split()) == bool(task and task.backfill)
    states = {c["state"] for c in dom.cells.values()}
    assert states == {"done", "running", "pending", "failed", "missing", "before"}
    assert dom.cells[("shop", "orders", "20261120T010000")]["state"] == "failed"

    # Lag per table: clock minus watermark.
    for table in rows[1:]:
        watermark = crafted.state.get_watermark("shop", table)
        assert dom.lag[("shop", table)] == f"{(clock - watermark).total_seconds():.0f}"
    assert dom.lag[("shop", "orders")] == "7500"

    # Recent errors: the failed task and the one waiting for a retry, newest first, text escaped properly.
    assert sorted(dom.errors) == sorted([FAILED_TASK, RETRYING_TASK])
    assert "crafted <failure> & co" in "".join(dom.error_text)


def _points(data: str) -> list[tuple[pendulum.DateTime, float]]:
    return [(pendulum.parse(t), float(lag)) for t, lag in (p.rsplit("=", 1) for p in data.split(";"))]


def test_lag_chart_in_chromium_matches_the_watermark_log(clean_stack, stack_env, tmp_path: Path, monkeypatch) -> None:
    """Lag over time (clock minus watermark), drawn from the watermark log: the SVG in Chromium's DOM carries
    the data it drew, equal to the --json data, and its shape follows the log (a drop of exactly what each move
    covered, the last point at the clock)."""
    crafted = craft_queue(use_config(tmp_path, stack_env, monkeypatch))
    page = tmp_path / "lag.html"
    result = cdc("report", "--html", str(page), "--since", (T0 - HOUR * 3).isoformat(), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    dom = _Dom()
    dom.feed(chromium(tmp_path, "--dump-dom", page.as_uri()).stdout)
    assert dom.threshold == f"{crafted.config.lag_alert_seconds:g}"
    tables = crafted.config.sources[0].table_names
    assert set(dom.lines) == set(tables)
    clock = pendulum.parse(data["status"]["clock"])
    log = crafted.state.watermark_history()
    for table in tables:
        drawn, svg_points = dom.lines[table]
        points = _points(drawn)
        assert [[t.isoformat(), round(lag)] for t, lag in points] == [
            [t, round(lag)] for t, lag in data["timelines"][0]["lag"][table]
        ]
        (move,) = [e for e in log if e["table"] == table]
        assert points[0] == (T0, 0.0)  # the watermark started at the pipeline's first live window
        assert points[1] == (move["at"], pytest.approx((move["at"] - move["from"]).total_seconds(), abs=1))
        assert points[2] == (move["at"], pytest.approx((move["at"] - move["to"]).total_seconds(), abs=1))
        assert points[-1][0] == clock
        assert points[-1][1] == pytest.approx(
            (clock - crafted.state.get_watermark("shop", table)).total_seconds(), abs=1
        )
        ys = [float(xy.split(",")[1]) for xy in svg_points.split()]
        assert len(ys) == len(points)
        for (_, lag_a), (_, lag_b), y_a, y_b in zip(points, points[1:], ys, ys[1:], strict=False):
            assert (y_b - y_a) * (lag_b - lag_a) <= 0  # a higher lag is drawn higher up (smaller y)


def test_report_of_an_empty_pipeline_and_bad_paths(clean_stack, stack_env, tmp_path: Path, monkeypatch) -> None:
    use_config(tmp_path, stack_env, monkeypatch)
    page = tmp_path / "empty.html"
    result = cdc("report", "--html", str(page), "--windows", "6")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"wrote {page} (0 cells, 0 errors)"  # nothing planned: nothing is "missing"
    assert "no windows planned yet" in page.read_text() and "no lag recorded yet" in page.read_text()
    since = cdc("report", "--html", str(page), "--since", "-6h")
    assert since.returncode == 0 and since.stdout.strip() == f"wrote {page} (30 cells, 0 errors)"
    assert page.read_text().count('data-state="before"') == 30  # 6 windows x (schema + 4 tables), none planned

    unwritable = cdc("report", "--html", str(tmp_path / "no" / "such" / "dir.html"))
    assert unwritable.returncode == EXIT_BAD_INPUT and "cannot write" in unwritable.stderr
    zero = cdc("report", "--html", str(page), "--windows", "0")
    assert zero.returncode == EXIT_BAD_INPUT and "--windows 0 is not a positive number" in zero.stderr
