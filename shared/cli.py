"""`cdc`: operator commands over the library the functions use. Nothing here touches Firestore or Pub/Sub.

    cdc render TABLE --at T [--source S] [--generation N] [--json]  SQL, object URI, export request body
    cdc render --schema --at T ...                                    the same for the schema export
    cdc plan --at T [--since T | --watermark T] [--source S] [--json] the tasks a tick at T would create

Configuration: `--config PATH`, else CDC_CONFIG / CDC_CONFIG_FILE (see shared/config.py).
Exit codes: 0 done, 2 bad input (argparse usage errors, or one `cdc: error: ...` line for project errors).

Adding a subcommand: write `_add_NAME(parser)` and `_run_NAME(args, config) -> int`, and append a
`Subcommand` to SUBCOMMANDS. `main` does the parsing, loads the config and maps CdcError to exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pendulum import DateTime

from shared.config import Config, SourceConfig, load_config
from shared.errors import CdcError, WindowError
from shared.templates import Templates, export_request_body, export_uri
from shared.windows import Window, due_windows, parse_timestamp

EXIT_BAD_INPUT = 2


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
        raise CdcError(f"the config has several sources ({names})", hint="pick one with --source")
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
        raise CdcError("give either a TABLE or --schema", hint="see cdc render --help")
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
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
