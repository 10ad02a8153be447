"""The `cdc` subcommands: each is `_add_NAME(parser)` (its arguments) and `_run_NAME(args, config) -> int`.

Every command prints text by default and one JSON object with `--json` (like gcloud's `--format=json`); the
JSON goes to stdout alone, progress and errors to stderr. Commands that read Firestore or publish to Pub/Sub
first check within seconds that those services answer (shared/ops/probe.py), so an unreachable stack or
project is one line and exit 4, not a minute of silence.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pendulum

from shared.adapters.clients import Clients
from shared.core.columns import QueryShape, Ref, Star
from shared.core.config import Config, SourceConfig
from shared.core.errors import UsageError
from shared.core.templates import Templates, export_request_body, export_uri
from shared.core.windows import Window, due_windows
from shared.ops import backfill, report, status, verify
from shared.ops.probe import FIRESTORE, PUBSUB, Service, check_reachable
from shared.ops.requeue import retry_failed
from shared.ops.status import retry_command

EXIT_UNHEALTHY = 1
EXIT_TIMEOUT = 3

TimeType = Callable[[str], pendulum.DateTime]


@dataclass(frozen=True)
class Subcommand:
    name: str
    help: str
    description: str
    examples: str
    add_arguments: Callable[[argparse.ArgumentParser, TimeType], None]
    run: Callable[[argparse.Namespace, Config], int]


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def _add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def _add_source(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", metavar="S", help="source name (required when the config has several)")


def _pick_source(config: Config, name: str | None) -> SourceConfig:
    if name is not None:
        return config.source(name)
    if len(config.sources) > 1:
        names = ", ".join(s.name for s in config.sources)
        raise UsageError(f"the config has several sources ({names})", hint="pick one with --source")
    return config.sources[0]


def _clients(config: Config, services: tuple[Service, ...], environ: Mapping[str, str]) -> Clients:
    """The real clients, once the services they need have answered a quick check."""
    check_reachable(services, environ)
    return Clients(config)


def _window_json(window: Window) -> dict[str, str]:
    return {"low": window.low.isoformat(), "high": window.high.isoformat(), "ts_nodash": window.ts_nodash}


# --- render -------------------------------------------------------------------------------------------------


def _add_render(parser: argparse.ArgumentParser, time: TimeType) -> None:
    parser.add_argument("table", nargs="?", metavar="TABLE", help="configured table name (or use --schema)")
    parser.add_argument("--schema", action="store_true", help="render the window's schema export instead")
    parser.add_argument(
        "--at", default="now", type=time, metavar="TIME",
        help="any instant in the window (default: now; a grid boundary is the window's logical date)",
    )  # fmt: skip
    _add_source(parser)
    parser.add_argument(
        "--generation", type=int, default=1, metavar="N",
        help="export generation: N > 1 names a re-export's object (.gN before the extension); default 1",
    )  # fmt: skip
    _add_json(parser)


def _run_render(args: argparse.Namespace, config: Config) -> int:
    if (args.table is None) == (not args.schema):
        raise UsageError("give either a TABLE or --schema", hint="see cdc render --help")
    source = _pick_source(config, args.source)
    templates = Templates()
    window = source.schedule.window_at(args.at)
    columns: list[dict[str, str | None]] | None = None
    if args.schema:
        query = templates.render_schema_query(source, window)
    else:
        query = templates.render_query(source, args.table, window)
        columns = _csv_columns(templates.output_shape(source, args.table, window))
    uri = export_uri(config, templates.object_key(config, source, args.table, window, args.generation))
    body = export_request_body(source, query, uri, source.offload)
    if args.json:
        print_json({"source": source.name, "instance": source.instance, "table": args.table,
                    "window": _window_json(window), "sql": query, "uri": uri, "request": body,
                    "columns": columns})  # fmt: skip
        return 0
    listed = ""
    if columns is not None:
        names = ", ".join(c["name"] + (f" {c['type']}" if c["type"] else "") for c in columns)
        listed = f"; CSV columns, in order: {names} (untyped ones are typed from the window's schema snapshot)"
    print(f"-- {source.name} {args.table or 'schema'} window {window} on {source.instance}{listed}")
    print(query)
    print(f"uri: {uri}")
    print(f"POST projects/{source.instance_project}/instances/{source.instance_name}/export")
    print_json(body)
    return 0


def _csv_columns(shape: QueryShape) -> list[dict[str, str | None]]:
    """The CSV's columns as far as the query alone tells (types of plain columns come from the window's schema
    snapshot at export time)."""
    out: list[dict[str, str | None]] = []
    for spec in shape.specs:
        if isinstance(spec, Star):
            out.append({"name": f"{spec.table or ', '.join(shape.tables)}.*", "type": None})
        elif isinstance(spec, Ref):
            out.append({"name": spec.name, "type": spec.cast})
        else:
            out.append({"name": spec.name, "type": spec.type})
    return out


# --- plan ---------------------------------------------------------------------------------------------------


def _add_plan(parser: argparse.ArgumentParser, time: TimeType) -> None:
    parser.add_argument("--at", default="now", type=time, metavar="TIME", help="the tick's clock (default: now)")
    since = parser.add_mutually_exclusive_group()
    since.add_argument(
        "--since", type=time, metavar="TIME",
        help="end of what was already planned; default: the source's start, else only the latest window",
    )  # fmt: skip
    since.add_argument(
        "--watermark", type=time, metavar="TIME",
        help="a table watermark (end of exported data): plans every window after it, like --since",
    )  # fmt: skip
    _add_source(parser)
    _add_json(parser)


def _plan_source(config: Config, source: SourceConfig, templates: Templates, args: argparse.Namespace) -> dict:
    since = args.since or args.watermark or source.start
    since = source.schedule.floor(since) if since else None  # `-6h` lands mid-window: plan that whole window
    due = due_windows(source.schedule, args.at, source.settle, since, source.catchup_cap)
    tasks = []
    for window in due.windows:
        for table in (None, *source.table_names):
            tasks.append(
                {"window": _window_json(window), "table": table or "(schema)",
                 "uri": export_uri(config, templates.object_key(config, source, table, window))}
            )  # fmt: skip
    return {
        "source": source.name,
        "instance": source.instance,
        "since": since.isoformat() if since else None,
        "tasks": tasks,
        "gap": _window_json(due.gap) if due.gap else None,
        "catchup_cap": source.catchup_cap,
    }


def _run_plan(args: argparse.Namespace, config: Config) -> int:
    sources = (config.source(args.source),) if args.source else config.sources
    templates = Templates()
    plans = [_plan_source(config, source, templates, args) for source in sources]
    if args.json:
        print_json({"clock": args.at.isoformat(), "sources": plans})
        return 0
    for plan in plans:
        since = f"since {plan['since']}" if plan["since"] else "no --since/--watermark and no start: latest window only"
        print(f"source {plan['source']} ({plan['instance']}) clock {args.at.isoformat()} {since}")
        if not plan["tasks"]:
            print("  nothing due")
        for task in plan["tasks"]:
            window = task["window"]
            print(f"  [{window['low']}, {window['high']})  {task['table']:<12} {task['uri']}")
        if plan["gap"]:
            gap = plan["gap"]
            print(
                f"  gap [{gap['low']}, {gap['high']}) beyond catchup_cap {plan['catchup_cap']}: planned by later ticks"
            )
    return 0


# --- status -------------------------------------------------------------------------------------------------


def _add_status(parser: argparse.ArgumentParser, time: TimeType) -> None:
    parser.add_argument("--at", type=time, metavar="TIME", help="measure lag at this instant (default: now)")
    _add_json(parser)


def _run_status(args: argparse.Namespace, config: Config) -> int:
    result = status.collect_status(config, _clients(config, (FIRESTORE,), args.environ).state, clock=args.at)
    if args.json:
        print_json(result.to_json())
    else:
        print(status.format_status(result))
    return 0 if result.healthy else EXIT_UNHEALTHY


# --- backfill -----------------------------------------------------------------------------------------------


def _add_backfill(parser: argparse.ArgumentParser, time: TimeType) -> None:
    parser.add_argument("--start", required=True, type=time, metavar="TIME", help="first window's low")
    parser.add_argument("--end", required=True, type=time, metavar="TIME", help="last window's high")
    _add_source(parser)
    parser.add_argument("--tables", nargs="+", metavar="TABLE", help="only these tables (default: all of the source)")
    parser.add_argument("--force", action="store_true", help="re-export windows already done (new object generation)")
    parser.add_argument(
        "--offload", action=argparse.BooleanOptionalAction, default=None,
        help="serverless export (default: the source's setting)",
    )  # fmt: skip
    parser.add_argument(
        "--wait", action="store_true", help="follow the tasks with a progress bar (elapsed, ETA) until all finish"
    )
    parser.add_argument(
        "--timeout", type=float, default=3600, metavar="SECONDS", help="give up waiting after this long (default 3600)"
    )
    _add_json(parser)


def _progress_printer() -> Callable[[backfill.Progress], None]:
    """A progress bar redrawn in place on a terminal; elsewhere one line per change (of counts, not of time)."""
    last: list[str] = []
    tty = sys.stderr.isatty()

    def show(progress: backfill.Progress) -> None:
        counts = progress.line().split("  ")[1]
        if not tty and last and last[0] == counts:
            return
        last[:] = [counts]
        if tty:
            print("\r" + progress.line().ljust(78), end="" if not progress.complete else "\n", file=sys.stderr,
                  flush=True)  # fmt: skip
        else:
            print(progress.line(), file=sys.stderr, flush=True)

    return show


def _run_backfill(args: argparse.Namespace, config: Config) -> int:
    data = backfill.request_data(
        start=args.start, end=args.end, source=args.source, tables=args.tables, force=args.force, offload=args.offload
    )
    request = backfill.check_backfill(config, data, pendulum.now("UTC"))
    ids = backfill.task_ids(config, request)
    per_window = 1 + len(request.tables)
    windows = len(ids) // per_window
    clients = _clients(config, (FIRESTORE, PUBSUB), args.environ)
    summary: dict[str, Any] = {
        "source": request.source, "start": request.start.isoformat(), "end": request.end.isoformat(),
        "windows": windows, "tables": list(request.tables), "tasks": len(ids), "force": request.force,
        "offload": request.offload,
    }  # fmt: skip
    done_already = 0 if request.force else backfill.windows_done(clients.state, ids, per_window)
    if done_already == windows:
        summary.update(published=None, skipped_windows=done_already)
        if args.json:
            print_json(summary)
        else:
            print(f"nothing to do: {windows} window(s) already exported (--force exports them again)")
        return 0
    stale = backfill.finished_before(clients.state, ids) if args.wait and request.force else set()
    message_id = clients.bus.publish_ticks(data)
    summary.update(published=message_id, skipped_windows=done_already)
    if not args.json:
        print(
            f"published backfill {message_id}: source {request.source} [{request.start.isoformat()}, "
            f"{request.end.isoformat()}) {windows} window(s) x {len(request.tables)} table(s) + schema = "
            f"{len(ids)} task(s){', force' if request.force else ''}{', offload' if request.offload else ''}"
        )
        if done_already:
            print(f"{done_already} of {windows} window(s) already exported: skipped (--force exports them again)")
    if not args.wait:
        if args.json:
            print_json(summary)
        return 0
    progress = backfill.wait(
        clients.state, ids, force_token=message_id, stale=stale, timeout=args.timeout, report=_progress_printer()
    )
    failed = backfill.failures(clients.state, ids) if progress.states["failed"] else []
    summary.update(progress=progress.to_json(), complete=progress.complete, failed=[e.to_json() for e in failed])
    if args.json:
        print_json(summary)
    else:
        print(f"done {progress.states['done']}, failed {progress.states['failed']}, of {progress.total}")
        for error in failed:
            kept = "; a re-export: the earlier export is still in place" if error.reexport else ""
            print(f"failed {error.task} (attempt {error.attempts}{kept}): {error.one_line[:300]}")
        if failed:
            print(f"to retry: {retry_command([e.task for e in failed])}")
    if not progress.complete:
        print(f"cdc: timed out after {args.timeout:g}s: {progress.line()} (the backfill goes on)", file=sys.stderr)
        return EXIT_TIMEOUT
    return EXIT_UNHEALTHY if failed else 0


# --- verify -------------------------------------------------------------------------------------------------


def _add_verify(parser: argparse.ArgumentParser, time: TimeType) -> None:
    parser.add_argument("--start", type=time, metavar="TIME", help="first window's low (default: a day before --end)")
    parser.add_argument("--end", type=time, metavar="TIME", help="last window's high (default: the latest settled)")
    _add_source(parser)
    parser.add_argument("--tables", nargs="+", metavar="TABLE", help="only these tables (default: all of the source)")
    parser.add_argument("--wait", action="store_true", help="follow the verification and list what it repaired")
    parser.add_argument(
        "--timeout", type=float, default=3600, metavar="SECONDS", help="give up waiting after this long (default 3600)"
    )
    _add_json(parser)


def _run_verify(args: argparse.Namespace, config: Config) -> int:
    now = pendulum.now("UTC")
    default_start, default_end = verify.default_range(config, args.source, now)
    start, end = verify.snap(config, args.source, args.start or default_start, args.end or default_end, now)
    data = verify.request_data(start, end, args.source, args.tables)
    request = verify.check_verify(config, data, now)
    clients = _clients(config, (FIRESTORE, PUBSUB), args.environ)
    message_id = clients.bus.publish_ticks(data)
    ids = verify.task_ids(request, message_id)
    summary: dict[str, Any] = {
        "source": request.source, "start": request.start.isoformat(), "end": request.end.isoformat(),
        "tables": list(request.tables), "published": message_id, "tasks": ids,
    }  # fmt: skip
    if not args.json:
        print(
            f"published verification {message_id}: source {request.source} [{request.start.isoformat()}, "
            f"{request.end.isoformat()}) {len(request.tables)} table(s), one export each, behind live work"
        )
    if not args.wait:
        if args.json:
            print_json(summary)
        return 0
    progress = backfill.wait(
        clients.state, ids, force_token=None, stale=set(), timeout=args.timeout, report=_progress_printer()
    )
    found = verify.repairs(clients.state, config, request, ids)
    summary.update(progress=progress.to_json(), complete=progress.complete, repaired=found)
    if args.json:
        print_json(summary)
    else:
        verified = f"verified {progress.states['done']} of {progress.total} table(s)"
        print(f"{verified}; windows changed since export: {len(found)}")
        for item in found:
            print(
                f"repaired {item['table']} [{item['window_low']}, {item['window_high']}): "
                f"{item['rows_exported']} rows exported, {item['rows_now']} now; re-exported as a new generation"
            )
    if not progress.complete:
        print(f"cdc: timed out after {args.timeout:g}s: {progress.line()} (the verification goes on)", file=sys.stderr)
        return EXIT_TIMEOUT
    return EXIT_UNHEALTHY if progress.states["failed"] else 0


# --- retry --------------------------------------------------------------------------------------------------


def _add_retry(parser: argparse.ArgumentParser, time: TimeType) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--task", action="append", metavar="ID", help="a failed task's id (repeatable)")
    which.add_argument("--failed", action="store_true", help="every failed task")
    _add_json(parser)


def _run_retry(args: argparse.Namespace, config: Config) -> int:
    result = retry_failed(_clients(config, (FIRESTORE, PUBSUB), args.environ), args.task)
    if args.json:
        print_json({"requeued": result.requeued, "woken": result.woken})
    elif not result.requeued:
        print("no failed tasks: nothing to retry")
    else:
        for tid in result.requeued:
            print(f"re-queued {tid}")
        print(f"woke {', '.join(result.woken)}")
    return 0


# --- report -------------------------------------------------------------------------------------------------


def _add_report(parser: argparse.ArgumentParser, time: TimeType) -> None:
    parser.add_argument("--html", metavar="PATH", help="write the page here")
    span = parser.add_mutually_exclusive_group()
    span.add_argument(
        "--windows", type=int, default=48, metavar="N", help="windows per source, up to its planning cursor (48)"
    )
    span.add_argument("--since", type=time, metavar="TIME", help="every window from here on")
    parser.add_argument("--at", type=time, metavar="TIME", help="measure lag at this instant (default: now)")
    parser.add_argument("--json", action="store_true", help="print the report's data as one JSON object")


def _run_report(args: argparse.Namespace, config: Config) -> int:
    if not args.html and not args.json:
        raise UsageError("give --html PATH (the page), --json (its data), or both")
    if args.windows < 1:
        raise UsageError(f"--windows {args.windows} is not a positive number")
    state = _clients(config, (FIRESTORE,), args.environ).state
    data = report.collect_report(config, state, windows=args.windows, since=args.since, clock=args.at)
    if args.html:
        path = Path(args.html)
        try:
            path.write_text(report.render_html(data), encoding="utf-8")
        except OSError as e:
            raise UsageError(f"cannot write {path}: {e.strerror}", hint="pick a writable path for --html") from e
    if args.json:
        print_json({"html": args.html, **data.to_json()})
    else:
        print(f"wrote {args.html} ({report.plural(data.cells, 'cell')}, {report.plural(len(data.errors), 'error')})")
    return 0


SUBCOMMANDS: list[Subcommand] = [
    Subcommand(
        "render",
        "render a table's (or the schema's) export for one window",
        "Print the rendered SQL, the object URI and the instances.export request body for the window "
        "containing --at, exactly as the worker would send them. Reads templates and config only.",
        "  cdc render orders --at 2026-11-20T10:00:00Z\n  cdc render --schema --at today --json",
        _add_render,
        _run_render,
    ),
    Subcommand(
        "plan",
        "show the tasks a tick would create",
        "Print the tasks (window, table or schema, object URI) a tick at --at would queue, and any gap beyond "
        "the catch-up cap. Computed from the config alone: Firestore is not read or written, so pass --since "
        "or --watermark to see a catch-up.",
        "  cdc plan                               # what a tick now would queue\n"
        "  cdc plan --at now --since -6h --json   # a catch-up of the last six hours",
        _add_plan,
        _run_plan,
    ),
    Subcommand(
        "status",
        "watermarks, lag, queue and errors per source and table",
        "Per source instance and table: the watermark, the lag behind the clock, pending / running / failed tasks, "
        "the export in flight and its age, every failed task with the command that retries it, and re-exports "
        "that failed (a warning: the earlier export is still in place). Exit code 1 when a task has failed or a "
        "table lags past lag_alert_seconds, 0 otherwise.",
        "  cdc status\n  cdc status --json | jq .failed\n  cdc status --at +1h      # would it lag in an hour?",
        _add_status,
        _run_status,
    ),
    Subcommand(
        "backfill",
        "queue a backfill (checked like the planner does), optionally wait for it",
        "Check the backfill with the planner's own rules, publish it to the ticks topic, and with --wait follow "
        "its tasks until every one is done or failed (exit 1 if any failed, naming each and the retry command; "
        "3 on --timeout). Windows already exported are skipped unless --force.",
        "  cdc backfill --start 2026-11-20 --end 2026-11-21 --wait\n"
        "  cdc backfill --start 2026-11-20T06:00:00Z --end 2026-11-20T09:00:00Z --tables orders --force --wait --json",
        _add_backfill,
        _run_backfill,
    ),
    Subcommand(
        "verify",
        "re-count past windows in the source and re-export the ones that changed",
        "Check a verification with the planner's own rules and publish it: one export per table (behind live "
        "work) of each window's row count and checksum in the source, compared with the manifests and the "
        "previous verification; a window whose rows changed after export (late commits, back-dated rows, "
        "deletes) is re-exported as a new generation. With --wait, list what was repaired (exit 1 if a "
        "verification export failed, 3 on --timeout).",
        "  cdc verify --wait                       # the last day\n"
        "  cdc verify --start -6h --end now --tables orders --wait --json",
        _add_verify,
        _run_verify,
    ),
    Subcommand(
        "retry",
        "re-queue failed tasks and wake their chains",
        "Put failed tasks back in the queue (attempts reset, next object generation) and publish a work message "
        "per instance concerned.",
        "  cdc retry --failed\n  cdc retry --task shop.20261120T010000.table.orders",
        _add_retry,
        _run_retry,
    ),
    Subcommand(
        "report",
        "write a self-contained HTML page: timelines, lag over time, errors",
        "Write one HTML page (no external assets): a timeline per source with a cell per table and window "
        "coloured by task state, a lag-over-time chart, each table's watermark and lag, and the most recent "
        "errors. --json prints the same data.",
        "  cdc report --html /tmp/cdc.html\n  cdc report --since yesterday --json",
        _add_report,
        _run_report,
    ),
]
