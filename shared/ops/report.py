"""`cdc report --html PATH`: one self-contained HTML page (inline CSS and SVG, no scripts, no external assets).

Per source, a timeline: one row per table (and the schema), one cell per window, coloured by the task's
state (`missing` when no task exists for a window the pipeline should have planned, `before` for windows
before the pipeline's first one); a lag-over-time chart; then each table's watermark and lag, and the most
recent errors. Every cell carries `data-source`, `data-table`, `data-window` and `data-state`, and every lag
line `data-points`, so that the page can be checked against the data it was made from
(tests/test_cli_report.py does, in Chromium).

The lag chart is the planner's freshness measure (clock minus watermark) over time, rebuilt from the
watermark log (`watermark_history`: every move of every watermark, with its time): between two moves the lag
grows with the clock, at a move it drops by what the move covered. It is exact, not sampled at ticks.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from html import escape

import pendulum

from shared.app.ports import StateStore
from shared.core.config import Config, SourceConfig
from shared.core.tasks import Task
from shared.ops.status import SCHEMA_ROW, ErrorSeen, Status, collect_status, human_seconds

STATES = ("done", "running", "submitting", "pending", "failed", "missing", "before")
MAX_ERRORS = 20
LagPoint = tuple[pendulum.DateTime, float]


@dataclass(frozen=True)
class Cell:
    window: pendulum.DateTime
    state: str
    task: str | None
    backfill: bool
    title: str


def _cell_json(cell: Cell) -> dict[str, object]:
    return {"window": cell.window.isoformat(), "state": cell.state, "task": cell.task}


@dataclass(frozen=True)
class Timeline:
    source: str
    instance: str
    windows: tuple[pendulum.DateTime, ...]
    rows: tuple[tuple[str, tuple[Cell, ...]], ...]
    first_window: pendulum.DateTime | None = None
    lag: tuple[tuple[str, tuple[LagPoint, ...]], ...] = ()

    @property
    def cells(self) -> int:
        return sum(len(cells) for _, cells in self.rows)

    def to_json(self) -> dict[str, object]:
        return {
            "source": self.source,
            "instance": self.instance,
            "first_window": self.first_window.isoformat() if self.first_window else None,
            "windows": [w.isoformat() for w in self.windows],
            "rows": {table: [_cell_json(c) for c in cells] for table, cells in self.rows},
            "lag": {table: [[t.isoformat(), lag] for t, lag in points] for table, points in self.lag},
        }


@dataclass(frozen=True)
class Report:
    generated: pendulum.DateTime
    status: Status
    timelines: tuple[Timeline, ...]
    errors: tuple[ErrorSeen, ...]

    @property
    def cells(self) -> int:
        return sum(t.cells for t in self.timelines)

    def to_json(self) -> dict[str, object]:
        return {
            "generated": self.generated.isoformat(),
            "status": self.status.to_json(),
            "timelines": [t.to_json() for t in self.timelines],
            "errors": [e.to_json() for e in self.errors],
        }


def _range_start(source: SourceConfig, end: pendulum.DateTime, windows: int) -> pendulum.DateTime:
    low = source.schedule.floor(end)
    for _ in range(windows):
        low = source.schedule.previous_boundary(low)
    return low


def _cell(window: pendulum.DateTime, task: Task | None, first: pendulum.DateTime | None) -> Cell:
    if task is None and (first is None or window < first):
        return Cell(window, "before", None, False, f"{window.isoformat()}: before the pipeline's first window")
    if task is None:
        return Cell(window, "missing", None, False, f"{window.isoformat()}: no task")
    title = f"{task.id}: {task.state}, attempt {task.attempts}, generation {task.generation}"
    if task.error:
        title += f" - {task.error.get('code', '')} {task.error.get('message', '')}"
    return Cell(window, task.state, task.id, task.backfill, title)


def first_window(
    source: SourceConfig, history: list[dict], watermarks: dict[tuple[str, str], pendulum.DateTime], tasks: list[Task]
) -> pendulum.DateTime | None:
    """The pipeline's first window for the source: where its watermarks started (a watermark is created at the
    first window the planner queued), or an earlier backfilled window; None when nothing was planned yet."""
    lows = [e["from"] for e in history if e["source"] == source.name]
    lows += [v for (name, _), v in watermarks.items() if name == source.name]
    lows += [t.low for t in tasks]
    return min(lows) if lows else None


def lag_series(
    history: list[dict], source: str, table: str, current: pendulum.DateTime | None,
    start: pendulum.DateTime, clock: pendulum.DateTime,
) -> tuple[LagPoint, ...]:  # fmt: skip
    """Lag (seconds) over [start, clock] from the watermark log: a point where each move starts and ends."""
    moves = sorted((e for e in history if e["source"] == source and e["table"] == table), key=lambda e: e["at"])
    if current is None:
        return ()
    before = [e for e in moves if e["at"] <= start]
    after = [e for e in moves if start < e["at"] <= clock]
    watermark = before[-1]["to"] if before else (after[0]["from"] if after else current)
    begin = start if before or not after else max(start, min(after[0]["at"], watermark))
    points: list[LagPoint] = [(begin, max(0.0, (begin - watermark).total_seconds()))]
    for move in after:
        points.append((move["at"], max(0.0, (move["at"] - move["from"]).total_seconds())))
        points.append((move["at"], max(0.0, (move["at"] - move["to"]).total_seconds())))
        watermark = move["to"]
    points.append((clock, max(0.0, (clock - watermark).total_seconds())))
    return tuple(points)


def _timeline(
    source: SourceConfig, since: pendulum.DateTime, end: pendulum.DateTime, tasks: list[Task],
    first: pendulum.DateTime | None,
) -> Timeline:  # fmt: skip
    grid = []
    low = source.schedule.floor(since)
    while low < end:
        grid.append(low)
        low = source.schedule.next_boundary(low)
    by_key = {(t.table, t.low): t for t in tasks}
    windows = tuple(sorted(set(grid) | {t.low for t in tasks}))
    rows = []
    for table in (None, *source.table_names):
        cells = tuple(_cell(w, by_key.get((table, w)), first) for w in windows)
        rows.append((table or SCHEMA_ROW, cells))
    return Timeline(source.name, source.instance, windows, tuple(rows), first)


def collect_report(
    config: Config,
    state: StateStore,
    *,
    windows: int = 48,
    since: pendulum.DateTime | None = None,
    clock: pendulum.DateTime | None = None,
) -> Report:
    """The last `windows` windows of each source up to its planning cursor (or the clock), but none before
    the pipeline's first window, or every window from `since` on; tasks outside the grid range but after its
    start (e.g. backfills) are shown too."""
    now = pendulum.now("UTC")
    status = collect_status(config, state, clock=clock)
    history = state.watermark_history()
    watermarks = state.watermarks()
    starts = {}
    ends = {}
    for source in config.sources:
        ends[source.name] = state.get_cursor(source.name) or source.schedule.floor(clock or now)
        starts[source.name] = since or _range_start(source, ends[source.name], windows)
    tasks = state.tasks_from(min(starts.values())) if starts else []
    timelines = []
    for source in config.sources:
        mine = [t for t in tasks if t.source == source.name and t.low >= starts[source.name]]
        first = first_window(source, history, watermarks, mine)
        start = starts[source.name] if since else max(starts[source.name], first or ends[source.name])
        timeline = _timeline(source, start, ends[source.name], [t for t in mine if t.low >= start], first)
        lag = tuple(
            (table, lag_series(history, source.name, table, watermarks.get((source.name, table)), start, status.clock))
            for table in source.table_names
        )
        timelines.append(replace(timeline, lag=lag))
    failed = state.tasks_in_state("failed")
    with_error = {t.id: t for t in [*tasks, *failed] if t.error}
    errors = sorted(
        (ErrorSeen.of(t) for t in with_error.values()),
        key=lambda e: (e.at.timestamp() if e.at else 0.0, e.task),
        reverse=True,
    )
    return Report(now, status, tuple(timelines), tuple(errors[:MAX_ERRORS]))


_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #1f2328; background: #fff; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 28px 0 8px; }
.meta { color: #59636e; margin-bottom: 12px; }
.health { display: inline-block; padding: 2px 10px; border-radius: 10px; font-weight: 600; }
.health.ok { background: #dafbe1; color: #116329; } .health.warn { background: #fff8c5; color: #7d4e00; }
.health.bad { background: #ffebe9; color: #a40e26; }
table { border-collapse: collapse; }
.timeline { overflow-x: auto; padding-bottom: 6px; }
.timeline th.table { text-align: right; padding-right: 8px; font-weight: 500; white-space: nowrap; }
.timeline th.window { font-weight: 400; font-size: 10px; color: #59636e; writing-mode: vertical-rl;
  transform: rotate(180deg); padding: 2px 0; height: 74px; text-align: left; }
td.cell { width: 14px; min-width: 14px; height: 18px; border: 1px solid #fff; padding: 0; }
td.cell.backfill { background-image: repeating-linear-gradient(45deg, transparent 0 3px,
  rgba(255,255,255,.45) 3px 5px); }
.s-done { background-color: #2da44e; } .s-running, .s-submitting { background-color: #0969da; }
.s-pending { background-color: #d4a72c; } .s-failed { background-color: #cf222e; }
.s-missing { background-color: #eaeef2; } .s-before { background-color: #fff; outline: 1px dashed #d1d9e0;
  outline-offset: -3px; }
svg.lagchart { display: block; margin: 8px 0 4px; } svg.lagchart text { font-size: 11px; fill: #59636e; }
svg.lagchart .threshold { stroke: #cf222e; stroke-dasharray: 6 4; } svg.lagchart .axis { stroke: #d1d9e0; }
svg.lagchart polyline { fill: none; stroke-width: 1.8; }
.legend span { display: inline-block; margin-right: 14px; }
.legend i { display: inline-block; width: 12px; height: 12px; margin-right: 4px; vertical-align: -1px; }
table.grid td, table.grid th { border-bottom: 1px solid #d1d9e0; padding: 4px 10px; text-align: left; }
table.grid td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.lagging td { background: #fff1e5; }
.errors td.message { max-width: 720px; font-family: ui-monospace, monospace; font-size: 12px; }
.none { color: #59636e; }
"""


def plural(count: int, noun: str) -> str:
    """`1 error`, `2 errors`."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _ts(t: pendulum.DateTime | None) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%SZ") if t else "-"


def _window_label(window: pendulum.DateTime) -> str:
    return window.strftime("%m-%d %H:%M")


def _breaker_html(status: Status, source: str) -> str:
    breaker = next((s.breaker for s in status.sources if s.source == source), None)
    if not breaker:
        return ""
    text = ", ".join(f"{k} {v}" for k, v in breaker.items())
    return f'<p class="breaker" data-source="{escape(source)}">breaker: {escape(text)}</p>'


def _timeline_html(timeline: Timeline, status: Status) -> list[str]:
    threshold = status.threshold_seconds
    out = [
        f'<section class="source" data-source="{escape(timeline.source)}">',
        f"<h2>{escape(timeline.source)} <small>{escape(timeline.instance)}</small></h2>",
        _breaker_html(status, timeline.source),
        '<div class="timeline"><table>',
        "<tr><th></th>"
        + "".join(f'<th class="window" title="{w.isoformat()}">{_window_label(w)}</th>' for w in timeline.windows)
        + "</tr>",
    ]
    for table, cells in timeline.rows:
        tds = "".join(
            f'<td class="cell s-{c.state}{" backfill" if c.backfill else ""}" data-source="{escape(timeline.source)}"'
            f' data-table="{escape(table)}" data-window="{c.window.strftime("%Y%m%dT%H%M%S")}"'
            f' data-state="{c.state}" title="{escape(c.title)}"></td>'
            for c in cells
        )
        out.append(f'<tr><th class="table">{escape(table)}</th>{tds}</tr>')
    if not timeline.windows:
        out.append('<tr><td class="none">no windows planned yet</td></tr>')
    out.append("</table></div>")
    out.append(f"<h3>Lag over time <small>(clock minus watermark, threshold {human_seconds(threshold)})</small></h3>")
    out.extend(_lag_chart(timeline, threshold))
    out.append("</section>")
    return out


CHART_W, CHART_H, CHART_PAD = 900, 200, 56
PALETTE = ("#0969da", "#8250df", "#bf3989", "#1a7f37", "#9a6700", "#cf222e", "#57606a", "#0550ae")


def _lag_chart(timeline: Timeline, threshold: float) -> list[str]:
    """An inline SVG: one line per table (lag in seconds over time) and the alert threshold, dashed."""
    points = [p for _, series in timeline.lag for p in series]
    if not points:
        return ['<p class="none lagchart">no lag recorded yet (no watermark)</p>']
    t0 = min(t for t, _ in points).timestamp()
    t1 = max(max(t for t, _ in points).timestamp(), t0 + 1)
    top = max(max(lag for _, lag in points), threshold) * 1.1 or 1.0
    width, height = CHART_W - 2 * CHART_PAD, CHART_H - 40

    def xy(t: pendulum.DateTime, lag: float) -> str:
        x = CHART_PAD + width * (t.timestamp() - t0) / (t1 - t0)
        return f"{x:.1f},{10 + height * (1 - lag / top):.1f}"

    out = [
        f'<svg class="lagchart" data-source="{escape(timeline.source)}" width="{CHART_W}" height="{CHART_H}"'
        f' viewBox="0 0 {CHART_W} {CHART_H}" role="img" aria-label="lag over time">',
        f'<line class="axis" x1="{CHART_PAD}" y1="{10 + height}" x2="{CHART_PAD + width}" y2="{10 + height}"/>',
    ]
    for fraction in (0.0, 0.5, 1.0):
        y = 10 + height * (1 - fraction)
        label = human_seconds(top * fraction)
        out.append(f'<text x="{CHART_PAD - 6}" y="{y + 4:.1f}" text-anchor="end">{label}</text>')
    threshold_y = 10 + height * (1 - threshold / top)
    out.append(
        f'<line class="threshold" data-threshold-seconds="{threshold:g}" x1="{CHART_PAD}" y1="{threshold_y:.1f}"'
        f' x2="{CHART_PAD + width}" y2="{threshold_y:.1f}"/>'
    )
    start, end = pendulum.from_timestamp(t0), pendulum.from_timestamp(t1)
    out.append(f'<text x="{CHART_PAD}" y="{CHART_H - 12}">{_ts(start)}</text>')
    out.append(f'<text x="{CHART_PAD + width}" y="{CHART_H - 12}" text-anchor="end">{_ts(end)}</text>')
    for i, (table, series) in enumerate(timeline.lag):
        if not series:
            continue
        data = ";".join(f"{t.isoformat()}={lag:.0f}" for t, lag in series)
        out.append(
            f'<polyline class="lag-line" data-table="{escape(table)}" data-points="{data}"'
            f' stroke="{PALETTE[i % len(PALETTE)]}" points="{" ".join(xy(t, lag) for t, lag in series)}">'
            f"<title>{escape(table)}</title></polyline>"
        )
    out.append("</svg>")
    legend = "".join(
        f'<span><i style="background:{PALETTE[i % len(PALETTE)]}"></i>{escape(table)}</span>'
        for i, (table, _) in enumerate(timeline.lag)
    )
    out.append(f'<div class="legend">{legend}<span>dashed: lag_alert_seconds</span></div>')
    return out


def _lag_html(report: Report) -> list[str]:
    out = [
        "<h2>Lag</h2>",
        '<table class="grid lag"><tr><th>source</th><th>table</th><th>watermark</th><th>lag</th>'
        "<th>pending</th><th>running</th><th>failed</th></tr>",
    ]
    for source in report.status.sources:
        for t in source.tables:
            if t.table == SCHEMA_ROW:
                continue
            lag = "" if t.lag_seconds is None else f"{t.lag_seconds:.0f}"
            pending = "-" if t.pending is None else t.pending
            out.append(
                f'<tr class="lag-row{" lagging" if t.lagging else ""}" data-source="{escape(source.source)}"'
                f' data-table="{escape(t.table)}" data-lag-seconds="{lag}">'
                f"<td>{escape(source.source)}</td><td>{escape(t.table)}</td>"
                f"<td>{_ts(t.watermark)}</td>"
                f'<td class="num">{human_seconds(t.lag_seconds)}</td><td class="num">{pending}</td>'
                f'<td class="num">{t.running}</td><td class="num">{t.failed}</td></tr>'
            )
    out.append("</table>")
    return out


def _errors_html(errors: tuple[ErrorSeen, ...]) -> list[str]:
    out = ["<h2>Recent errors</h2>"]
    if not errors:
        return [*out, '<p class="none">none</p>']
    out.append('<table class="grid errors"><tr><th>when</th><th>task</th><th>state</th><th>code</th>')
    out.append("<th>message</th></tr>")
    for e in errors:
        out.append(
            f'<tr class="error" data-task="{escape(e.task)}"><td>{_ts(e.at)}</td>'
            f"<td>{escape(e.task)}</td><td>{escape(e.state)}</td><td>{escape(e.code)}</td>"
            f'<td class="message">{escape(e.message)}</td></tr>'
        )
    out.append("</table>")
    return out


def _completeness_html(report: Report) -> list[str]:
    """Per source: each table's verification (windows verified, last run, repaired), manifests not written, drift."""
    out = ["<h2>Completeness</h2>"]
    for source in report.status.sources:
        info = source.completeness or {}
        out.append(f"<h3>{escape(source.source)}</h3>")
        out.append('<table class="grid completeness"><tr><th>table</th><th>windows verified</th><th>last verified</th>')
        out.append("<th>windows repaired</th></tr>")
        for table, v in (info.get("verification") or {}).items():
            out.append(
                f'<tr data-table="{escape(table)}"><td>{escape(table)}</td><td class="num">{v["windows"]}</td>'
                f'<td>{escape(str(v["last_verified_at"] or "never"))}</td><td class="num">{v["repaired"]}</td></tr>'
            )
        out.append("</table>")
        for item in info.get("failed_manifests") or []:
            out.append(
                f'<p class="error">manifest not written for {escape(str(item["window"]))}: '
                f"{escape(str(item['error']))}</p>"
            )
        for change in info.get("schema_drift") or []:
            out.append(
                f'<p class="drift">schema drift at {escape(str(change["window_low"]))}: '
                f"{escape(change['table'])}.{escape(change['column'])} {escape(change['change'])} "
                f"({escape(str(change['type_before']))} &rarr; {escape(str(change['type_after']))})</p>"
            )
    return out


def render_html(report: Report) -> str:
    status = report.status
    health = (
        '<span class="health ok">healthy</span>'
        if status.healthy
        else f'<span class="health bad">unhealthy: {status.failed} failed, {len(status.lagging)} lagging</span>'
    )
    if status.warnings:
        health += f' <span class="health warn">{plural(status.warnings, "re-export")} failed (data in place)</span>'

    legend = "".join(f'<span><i class="s-{s}"></i>{s}</span>' for s in STATES)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>cloudsql-cdc report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>cloudsql-cdc report</h1>",
        f'<div class="meta">generated {_ts(report.generated)} · lag measured at {_ts(status.clock)}'
        f" · threshold {human_seconds(status.threshold_seconds)} · {health}</div>",
        f'<div class="legend">{legend}<span>hatched: backfill</span>'
        "<span>before: earlier than the pipeline's first window</span></div>",
    ]
    for timeline in report.timelines:
        parts.extend(_timeline_html(timeline, status))
    parts.extend(_lag_html(report))
    parts.extend(_completeness_html(report))
    parts.extend(_errors_html(report.errors))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
