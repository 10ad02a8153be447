"""`cdc`: operator commands over the library the functions use; this module parses and maps outcomes to exit codes.

    cdc render TABLE [--at T] [--source S] [--generation N] [--json]   SQL, object URI, export request body
    cdc plan [--at T] [--since T | --watermark T] [--source S] [--json] the tasks a tick at T would create
    cdc status [--at T] [--json]                                      watermarks, lag, queue, every failed task
    cdc backfill --start T --end T [--tables ...] [--force] [--wait] [--json]
    cdc retry (--task ID ... | --failed) [--json]                     re-queue failed tasks, wake the chains
    cdc report [--html PATH] [--json] [--windows N | --since T]       one self-contained HTML page, or its data
    cdc --version

Times (T) are `now`, `today`, `yesterday`, a date, an offset such as `-2h`, or RFC 3339 (shared/ops/timeexpr.py).
render and plan read the config and templates only; the others read Firestore and publish to Pub/Sub: with
the emulator variables set (`set -a; . .stack/env; set +a`) the local stack, without them the real project
through Application Default Credentials. They check within seconds that those answer (exit 4 otherwise).

Exit codes (EXIT_CODES below): 0 done / healthy; 1 unhealthy; 2 bad input or configuration; 3 backfill --wait
timed out; 4 Google Cloud (or the local stack) unreachable or refusing; 141 the reader of stdout went away.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from collections.abc import Mapping, Sequence
from importlib import metadata

import pendulum
from google.api_core.exceptions import GoogleAPIError
from google.auth.exceptions import GoogleAuthError

from shared.core.config import Config
from shared.core.environment import load_config
from shared.core.errors import CdcError, CloudUnavailable, ConfigError, TemplateError
from shared.core.templates import Templates
from shared.ops.commands import EXIT_TIMEOUT, EXIT_UNHEALTHY, SUBCOMMANDS
from shared.ops.timeexpr import ACCEPTED, is_offset, parse_time

EXIT_BAD_INPUT = CdcError.exit_code
EXIT_CLOUD = CloudUnavailable.exit_code
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what `head` leaves behind for other Unix tools
EXIT_CODES = (
    (0, "done; for status: healthy"),
    (EXIT_UNHEALTHY, "unhealthy: status found a failed task or a lagging table; backfill --wait saw a task fail"),
    (EXIT_BAD_INPUT, "bad input: usage, configuration (also a missing template), a request the planner refuses"),
    (EXIT_TIMEOUT, "backfill --wait gave up after --timeout (the backfill goes on)"),
    (EXIT_CLOUD, "Google Cloud or the local stack unreachable or refusing (make up, emulator variables, credentials)"),
)
TIME_OPTIONS = ("--at", "--since", "--watermark", "--start", "--end")
CONFIG_HINT = "pass --config PATH, or set CDC_CONFIG_FILE (the local stack: set -a; . .stack/env; set +a)"


def _version() -> str:
    try:
        return metadata.version("cloudsql-cdc")
    except metadata.PackageNotFoundError:
        return "unknown (not installed: run make venv)"


def build_parser(now: pendulum.DateTime | None = None) -> argparse.ArgumentParser:
    """The parser; time arguments are read against `now` (one instant for the whole invocation)."""
    clock = now or pendulum.now("UTC")

    def time_arg(text: str) -> pendulum.DateTime:
        try:
            return parse_time(text, clock)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from e

    codes = "\n".join(f"  {code}  {meaning}" for code, meaning in EXIT_CODES)
    parser = argparse.ArgumentParser(
        prog="cdc",
        description="Operator commands for cloudsql-cdc (Cloud SQL -> Cloud Storage change data capture).",
        epilog=f"times: {ACCEPTED}\n\nexit codes:\n{codes}\n\n"
        "configuration: --config PATH, else CDC_CONFIG (inline JSON) or CDC_CONFIG_FILE (a path).\n"
        "examples:\n  cdc status\n  cdc backfill --start yesterday --end today --wait\n"
        "  cdc report --html /tmp/cdc.html",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"cdc (cloudsql-cdc) {_version()}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="PATH", help="config JSON file (default: CDC_CONFIG / CDC_CONFIG_FILE)")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in SUBCOMMANDS:
        sub = subparsers.add_parser(
            command.name, help=command.help, description=command.description, parents=[common],
            epilog=f"examples:\n{command.examples}\n\ntimes: {ACCEPTED}\nexit codes: "
            + ", ".join(f"{code} {meaning.split(':')[0]}" for code, meaning in EXIT_CODES),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )  # fmt: skip
        command.add_arguments(sub, time_arg)
        sub.set_defaults(run=command.run)
    return parser


def join_offsets(argv: Sequence[str]) -> list[str]:
    """`--at -2h` -> `--at=-2h`: argparse would take `-2h` for an option."""
    out: list[str] = []
    for arg in argv:
        if out and out[-1] in TIME_OPTIONS and is_offset(arg):
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def load_cli_config(path: str | None, environ: Mapping[str, str]) -> Config:
    """The config, strictly: a template that cannot render is a config error here (the functions only log it,
    so that the other tables keep exporting), and the labels say what the operator typed."""
    env = dict(environ)
    if path:
        env.pop("CDC_CONFIG", None)
        env["CDC_CONFIG_FILE"] = path
    if not env.get("CDC_CONFIG") and not env.get("CDC_CONFIG_FILE"):
        raise ConfigError("--config", None, "is not given and neither CDC_CONFIG nor CDC_CONFIG_FILE is set",
                          hint=CONFIG_HINT)  # fmt: skip
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # its lenient template check logs; the strict one is below
            config = load_config(env)
    except ConfigError as e:
        if path and e.path == "CDC_CONFIG_FILE":
            raise ConfigError("--config", e.value, e.problem, hint=e.hint or None) from e
        raise
    try:
        Templates().validate(config)
    except TemplateError as e:
        raise ConfigError(f"template {e.template!r}", None, e.reason, hint=e.hint) from e
    return config


def describe(error: CdcError, *, loading: bool = False) -> str:
    """One line: `config error: bucket is missing (required)` rather than `bucket: None is missing`."""
    if isinstance(error, ConfigError):
        value = "" if error.value is None else f": {error.value!r}"
        text = f"{'config error: ' if loading else ''}{error.path}{value} {error.problem}"
        return " ".join((f"{text}. {error.hint}" if error.hint else text).split())
    return " ".join(str(error).split())


def _run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    loading = True
    try:
        config = load_cli_config(args.config, environ)
        loading = False
        args.environ = environ
        return args.run(args, config)
    except CdcError as e:
        print(f"cdc: error: {describe(e, loading=loading)}", file=sys.stderr)
        return e.exit_code
    except (GoogleAPIError, GoogleAuthError) as e:
        text = " ".join(str(e).split())[:500]
        print(f"cdc: error: Google Cloud: {text}. {CloudUnavailable.hint}", file=sys.stderr)
        return EXIT_CLOUD


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(join_offsets(sys.argv[1:] if argv is None else argv))
    try:
        code = _run(args, dict(os.environ))
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader (`| head`) has gone: say nothing more, and keep Python from complaining at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    return code


if __name__ == "__main__":
    sys.exit(main())
