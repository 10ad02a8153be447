"""`cdc`: operator commands over the library the functions use.

    cdc render TABLE --at T [--source S] [--generation N] [--json]  SQL, object URI, export request body
    cdc render --schema --at T ...                                    the same for the schema export
    cdc plan --at T [--since T | --watermark T] [--source S] [--json] the tasks a tick at T would create
    cdc status [--at T] [--json]                                      watermarks, lag, queue, errors
    cdc backfill --start T --end T [--source S] [--tables ...] [--force] [--[no-]offload] [--wait]
    cdc retry (--task ID ... | --failed)                              re-queue failed tasks, wake the chains
    cdc report --html PATH [--windows N | --since T] [--at T]         one self-contained HTML page

render and plan read the config and templates only; the others read Firestore (through StateStore) and
publish to Pub/Sub: with the emulator variables set (`python -m local.stack env`) they use the local stack,
without them the real project through Application Default Credentials.

Configuration: `--config PATH`, else CDC_CONFIG / CDC_CONFIG_FILE (see shared/core/config.py).
Exit codes: 0 done / healthy; 1 unhealthy (status: a failed task or a table lagging past lag_alert_seconds;
backfill --wait: a task failed); 2 bad input (argparse usage errors, or one `cdc: error: ...` line for project
errors); 3 backfill --wait timed out; 4 Google Cloud could not be reached or refused (credentials, network).

Adding a subcommand: write `_add_NAME(parser)` and `_run_NAME(args, config) -> int`, and append a
`Subcommand` to SUBCOMMANDS. `main` does the parsing, loads the config and maps errors to exit codes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pendulum
from google.api_core.exceptions import GoogleAPIError
from google.auth.exceptions import GoogleAuthError
from pendulum import DateTime

from shared.adapters.clients import Clients
from shared.core.config import Config, SourceConfig
from shared.core.environment import load_config
from shared.core.errors import CdcError, CloudUnavailable, UsageError, WindowError
from shared.core.templates import Templates, export_request_body, export_uri
from shared.core.windows import Window, due_windows, parse_timestamp
from shared.ops import backfill, report, status
from shared.ops.requeue import retry_failed

EXIT_UNHEALTHY = 1
EXIT_BAD_INPUT = CdcError.exit_code
EXIT_TIMEOUT = 3
EXIT_CLOUD = CloudUnavailable.exit_code


@dataclass(frozen=True)
class Subcommand:
    name: str
    help: str
    description: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, Config], int]


def timestamp_arg(text: str) -> DateTime:
    """argparse type for RFC 3339 timestamps with an offset (naive ones are rejected)."""
    try:
        return parse_timestamp(text, "timestamp")
    except WindowError as e:
        raise argparse.ArgumentTypeError(f"{text!r} {e.problem}") from e


def _add_source(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", metavar="S", help="source name (required when the config has several)")


def _pick_source(config: Config, name: str | None) -> SourceConfig:
    if name is not None:
        return config.source(name)
    if len(config.sources) > 1:
        names = ", ".join(s.name for s in config.sources)
        raise UsageError(f"the config has several sources ({names})", hint="pick one with --source")
    return config.sources[0]


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


# --- render -------------------------------------------------------------------------------------------------


def _add_render(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("table", nargs="?", metavar="TABLE", help="configured table name (or use --schema)")
    parser.add_argument("--schema", action="store_true", help="render the window's schema export instead")
    parser.add_argument(
        "--at", required=True, type=timestamp_arg, metavar="TIMESTAMP",
        help="any instant in the window, RFC 3339 with offset (a grid boundary is the window's logical date)",
    )  # fmt: skip
    _add_source(parser)
    parser.add_argument(
        "--generation", type=int, default=1, metavar="N",
        help="export generation: N > 1 names a re-export's object (.gN before the extension); default 1",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def _run_render(args: argparse.Namespace, config: Config) -> int:
    if (args.table is None) == (not args.schema):
        raise UsageError("give either a TABLE or --schema", hint="see cdc render --help")
    source = _pick_source(config, args.source)
    templates = Templates()
    window = source.schedule.window_at(args.at)
    if args.schema:
        query = templates.render_schema_query(source, window)
    else:
        query = templates.render_query(source, args.table, window)
    uri = export_uri(config, templates.object_key(config, source, args.table, window, args.generation))
    body = export_request_body(source, query, uri, source.offload)
    if args.json:
        _print_json(
            {
                "source": source.name,
                "instance": source.instance,
                "table": args.table,
                "window": _window_json(window),
                "sql": query,
                "uri": uri,
                "request": body,
            }
        )
        return 0
    print(f"-- {source.name} {args.table or 'schema'} window {window} on {source.instance}")
    print(query)
    print(f"uri: {uri}")
    print(f"POST projects/{source.instance_project}/instances/{source.instance_name}/export")
    _print_json(body)
    return 0


# --- plan ---------------------------------------------------------------------------------------------------


def _add_plan(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--at",
        required=True,
        type=timestamp_arg,
        metavar="TIMESTAMP",
        help="the tick's clock (RFC 3339 with offset)",
    )
    since = parser.add_mutually_exclusive_group()
    since.add_argument(
        "--since", type=timestamp_arg, metavar="TIMESTAMP",
        help="end of what was already planned; default: the source's start, else only the latest window",
    )  # fmt: skip
    since.add_argument(
        "--watermark", type=timestamp_arg, metavar="TIMESTAMP",
        help="a table watermark (end of exported data): plans every window after it, like --since",
    )  # fmt: skip
    _add_source(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def _window_json(window: Window) -> dict[str, str]:
    return {"low": window.low.isoformat(), "high": window.high.isoformat(), "ts_nodash": window.ts_nodash}


def _plan_source(
    config: Config, source: SourceConfig, templates: Templates, args: argparse.Namespace
) -> dict[str, Any]:
    since = args.since or args.watermark or source.start
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
        _print_json({"clock": args.at.isoformat(), "sources": plans})
        return 0
    for plan in plans:
        print(f"source {plan['source']} ({plan['instance']}) clock {args.at.isoformat()} since {plan['since']}")
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


def _add_status(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--at", type=timestamp_arg, metavar="TIMESTAMP", help="measure lag at this instant (default: now)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def _run_status(args: argparse.Namespace, config: Config) -> int:
    result = status.collect_status(config, Clients(config).state, clock=args.at)
    if args.json:
        _print_json(result.to_json())
    else:
        print(status.format_status(result))
    return 0 if result.healthy else EXIT_UNHEALTHY


# --- backfill -----------------------------------------------------------------------------------------------


def _add_backfill(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--start", required=True, type=timestamp_arg, metavar="TIMESTAMP", help="first window's low")
    parser.add_argument("--end", required=True, type=timestamp_arg, metavar="TIMESTAMP", help="last window's high")
    _add_source(parser)
    parser.add_argument("--tables", nargs="+", metavar="TABLE", help="only these tables (default: all of the source)")
    parser.add_argument("--force", action="store_true", help="re-export windows already done (new object generation)")
    parser.add_argument(
        "--offload", action=argparse.BooleanOptionalAction, default=None,
        help="serverless export (default: the source's setting)",
    )  # fmt: skip
    parser.add_argument("--wait", action="store_true", help="follow the tasks with a progress bar until all finish")
    parser.add_argument(
        "--timeout", type=float, default=3600, metavar="SECONDS", help="give up waiting after this long (default 3600)"
    )


def _progress_printer() -> Callable[[backfill.Progress], None]:
    """A progress bar redrawn in place on a terminal; elsewhere one line per change."""
    last: list[str] = []
    tty = sys.stderr.isatty()

    def show(progress: backfill.Progress) -> None:
        line = progress.line()
        if last and last[0] == line:
            return
        last[:] = [line]
        if tty:
            print("\r" + line.ljust(78), end="" if not progress.complete else "\n", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    return show


def _run_backfill(args: argparse.Namespace, config: Config) -> int:
    data = backfill.request_data(
        start=args.start, end=args.end, source=args.source, tables=args.tables, force=args.force, offload=args.offload
    )
    request = backfill.check_backfill(config, data, pendulum.now("UTC"))
    ids = backfill.task_ids(config, request)
    clients = Clients(config)
    stale = backfill.finished_before(clients.state, ids) if args.wait and request.force else set()
    message_id = clients.bus.publish_ticks(data)
    windows = len(ids) // (1 + len(request.tables))
    print(
        f"published backfill {message_id}: source {request.source} [{request.start.isoformat()}, "
        f"{request.end.isoformat()}) {windows} window(s) x {len(request.tables)} table(s) + schema = {len(ids)} task(s)"
        f"{', force' if request.force else ''}{', offload' if request.offload else ''}"
    )
    if not args.wait:
        return 0
    progress = backfill.wait(
        clients.state, ids, force_token=message_id, stale=stale, timeout=args.timeout, report=_progress_printer()
    )
    print(f"done {progress.states['done']}, failed {progress.states['failed']}, of {progress.total}")
    if not progress.complete:
        print(f"cdc: timed out after {args.timeout:g}s: {progress.line()}", file=sys.stderr)
        return EXIT_TIMEOUT
    return EXIT_UNHEALTHY if progress.states["failed"] else 0


# --- retry --------------------------------------------------------------------------------------------------


def _add_retry(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--task", action="append", metavar="ID", help="a failed task's id (repeatable)")
    which.add_argument("--failed", action="store_true", help="every failed task")


def _run_retry(args: argparse.Namespace, config: Config) -> int:
    result = retry_failed(Clients(config), args.task)
    if not result.requeued:
        print("no failed tasks: nothing to retry")
        return 0
    for tid in result.requeued:
        print(f"re-queued {tid}")
    print(f"woke {', '.join(result.woken)}")
    return 0


# --- report -------------------------------------------------------------------------------------------------


def _add_report(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--html", required=True, metavar="PATH", help="write the page here")
    span = parser.add_mutually_exclusive_group()
    span.add_argument(
        "--windows", type=int, default=48, metavar="N", help="windows per source, up to its planning cursor (48)"
    )
    span.add_argument("--since", type=timestamp_arg, metavar="TIMESTAMP", help="every window from here on")
    parser.add_argument(
        "--at", type=timestamp_arg, metavar="TIMESTAMP", help="measure lag at this instant (default: now)"
    )


def _run_report(args: argparse.Namespace, config: Config) -> int:
    if args.windows < 1:
        raise UsageError(f"--windows {args.windows} is not a positive number")
    data = report.collect_report(config, Clients(config).state, windows=args.windows, since=args.since, clock=args.at)
    path = Path(args.html)
    try:
        path.write_text(report.render_html(data), encoding="utf-8")
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror}") from e
    cells = sum(len(cells) for t in data.timelines for _, cells in t.rows)
    print(f"wrote {path} ({cells} cells, {len(data.errors)} errors)")
    return 0


SUBCOMMANDS: list[Subcommand] = [
    Subcommand(
        "render",
        "render a table's (or the schema's) export for one window",
        "Print the rendered SQL, the object URI and the instances.export request body for the window "
        "containing --at, exactly as the worker would send them. Reads templates and config only.",
        _add_render,
        _run_render,
    ),
    Subcommand(
        "plan",
        "show the tasks a tick would create",
        "Print the tasks (window, table or schema, object URI) a tick at --at would queue, and any gap beyond "
        "the catch-up cap. Computed from the config alone: Firestore is not read or written, so pass --since "
        "or --watermark to see a catch-up.",
        _add_plan,
        _run_plan,
    ),
    Subcommand(
        "status",
        "watermarks, lag, queue and errors per source and table",
        "Per source instance and table: the watermark, the lag behind the clock, pending / running / failed tasks, "
        "the export in flight and its age, and the last error. Exit code 1 when a task has failed or a table lags "
        "past lag_alert_seconds, 0 otherwise.",
        _add_status,
        _run_status,
    ),
    Subcommand(
        "backfill",
        "queue a backfill (checked like the planner does), optionally wait for it",
        "Check the backfill with the planner's own rules, publish it to the ticks topic, and with --wait follow "
        "its tasks until every one is done or failed (exit 1 if any failed, 3 on --timeout).",
        _add_backfill,
        _run_backfill,
    ),
    Subcommand(
        "retry",
        "re-queue failed tasks and wake their chains",
        "Put failed tasks back in the queue (attempts reset, next object generation) and publish a work message "
        "per instance concerned.",
        _add_retry,
        _run_retry,
    ),
    Subcommand(
        "report",
        "write a self-contained HTML page: timelines, lag, errors",
        "Write one HTML page (no external assets): a timeline per source with a cell per table and window "
        "coloured by task state, each table's watermark and lag, and the most recent errors.",
        _add_report,
        _run_report,
    ),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cdc",
        description="Operator commands for cloudsql-cdc (Cloud SQL -> Cloud Storage change data capture).",
        epilog="Configuration: --config PATH, else CDC_CONFIG (inline JSON) or CDC_CONFIG_FILE (a path).",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="PATH", help="config JSON file (default: CDC_CONFIG / CDC_CONFIG_FILE)")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in SUBCOMMANDS:
        sub = subparsers.add_parser(command.name, help=command.help, description=command.description, parents=[common])
        command.add_arguments(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    environ = dict(os.environ)
    if args.config:
        environ.pop("CDC_CONFIG", None)
        environ["CDC_CONFIG_FILE"] = args.config
    try:
        return args.run(args, load_config(environ))
    except CdcError as e:
        print("cdc: error: " + " ".join(str(e).split()), file=sys.stderr)
        return e.exit_code
    except (GoogleAPIError, GoogleAuthError) as e:
        print("cdc: error: Google Cloud: " + " ".join(str(e).split())[:500], file=sys.stderr)
        return EXIT_CLOUD


if __name__ == "__main__":
    sys.exit(main())
