"""`cdc report --html PATH`: one self-contained HTML page (inline CSS, no scripts, no external assets).

Per source, a timeline: one row per table (and the schema), one cell per window, coloured by the task's
state (`missing` when no task exists for that window); then each table's watermark and lag, and the most
recent errors. Every cell carries `data-source`, `data-table`, `data-window` and `data-state` so that the
page can be checked against the data it was made from (tests/test_cli_report.py does, in Chromium).
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

import pendulum

from shared.app.ports import StateStore
from shared.core.config import Config, SourceConfig
from shared.core.tasks import Task
from shared.ops.status import SCHEMA_ROW, ErrorSeen, Status, collect_status, human_seconds

STATES = ("done", "running", "submitting", "pending", "failed", "missing")
MAX_ERRORS = 20


@dataclass(frozen=True)
class Cell:
    window: pendulum.DateTime
    state: str
    task: str | None
    backfill: bool
    title: str


@dataclass(frozen=True)
class Timeline:
    source: str
    instance: str
    windows: tuple[pendulum.DateTime, ...]
    rows: tuple[tuple[str, tuple[Cell, ...]], ...]


@dataclass(frozen=True)
class Report:
    generated: pendulum.DateTime
    status: Status
    timelines: tuple[Timeline, ...]
    errors: tuple[ErrorSeen, ...]


def _range_start(source: SourceConfig, end: pendulum.DateTime, windows: int) -> pendulum.DateTime:
    low = source.schedule.floor(end)
    for _ in range(windows):
        low = source.schedule.previous_boundary(low)
    return low


def _cell(window: pendulum.DateTime, task: Task | None) -> Cell:
    if task is None:
        return Cell(window, "missing", None, False, f"{window.isoformat()}: no task")
    title = f"{task.id}: {task.state}, attempt {task.attempts}, generation {task.generation}"
    if task.error:
        title += f" - {task.error.get('code', '')} {task.error.get('message', '')}"
    return Cell(window, task.state, task.id, task.backfill, title)


def _timeline(source: SourceConfig, since: pendulum.DateTime, end: pendulum.DateTime, tasks: list[Task]) -> Timeline:
    grid = []
    low = source.schedule.floor(since)
    while low < end:
        grid.append(low)
        low = source.schedule.next_boundary(low)
    by_key = {(t.table, t.low): t for t in tasks}
    windows = tuple(sorted(set(grid) | {t.low for t in tasks}))
    rows = []
    for table in (None, *source.table_names):
        cells = tuple(_cell(w, by_key.get((table, w))) for w in windows)
        rows.append((table or SCHEMA_ROW, cells))
    return Timeline(source.name, source.instance, windows, tuple(rows))


def collect_report(
    config: Config,
    state: StateStore,
    *,
    windows: int = 48,
    since: pendulum.DateTime | None = None,
    clock: pendulum.DateTime | None = None,
) -> Report:
    """The last `windows` windows of each source up to its planning cursor (or the clock), or every window
    from `since` on; tasks outside the grid range but after its start (e.g. backfills) are shown too."""
    now = pendulum.now("UTC")
    status = collect_status(config, state, clock=clock)
    starts = {}
    ends = {}
    for source in config.sources:
        ends[source.name] = state.get_cursor(source.name) or source.schedule.floor(clock or now)
        starts[source.name] = since or _range_start(source, ends[source.name], windows)
    tasks = state.tasks_from(min(starts.values())) if starts else []
    timelines = []
    for source in config.sources:
        mine = [t for t in tasks if t.source == source.name and t.low >= starts[source.name]]
        timelines.append(_timeline(source, starts[source.name], ends[source.name], mine))
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
.health.ok { background: #dafbe1; color: #116329; } .health.bad { background: #ffebe9; color: #a40e26; }
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
.s-missing { background-color: #eaeef2; }
.legend span { display: inline-block; margin-right: 14px; }
.legend i { display: inline-block; width: 12px; height: 12px; margin-right: 4px; vertical-align: -1px; }
table.grid td, table.grid th { border-bottom: 1px solid #d1d9e0; padding: 4px 10px; text-align: left; }
table.grid td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.lagging td { background: #fff1e5; }
.errors td.message { max-width: 720px; font-family: ui-monospace, monospace; font-size: 12px; }
.none { color: #59636e; }
"""


def _ts(t: pendulum.DateTime | None) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%SZ") if t else "-"


def _window_label(window: pendulum.DateTime) -> str:
    return window.strftime("%m-%d %H:%M")


def _timeline_html(timeline: Timeline) -> list[str]:
    out = [
        f'<section class="source" data-source="{escape(timeline.source)}">',
        f"<h2>{escape(timeline.source)} <small>{escape(timeline.instance)}</small></h2>",
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
    out.append("</table></div></section>")
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
            out.append(
                f'<tr class="lag-row{" lagging" if t.lagging else ""}" data-source="{escape(source.source)}"'
                f' data-table="{escape(t.table)}" data-lag-seconds="{lag}">'
                f"<td>{escape(source.source)}</td><td>{escape(t.table)}</td>"
                f"<td>{_ts(t.watermark)}</td>"
                f'<td class="num">{human_seconds(t.lag_seconds)}</td><td class="num">{t.pending}</td>'
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


def render_html(report: Report) -> str:
    status = report.status
    health = (
        '<span class="health ok">healthy</span>'
        if status.healthy
        else f'<span class="health bad">unhealthy: {status.failed} failed, {len(status.lagging)} lagging</span>'
    )
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
        f'<div class="legend">{legend}<span>hatched: backfill</span></div>',
    ]
    for timeline in report.timelines:
        parts.extend(_timeline_html(timeline))
    parts.extend(_lag_html(report))
    parts.extend(_errors_html(report.errors))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
