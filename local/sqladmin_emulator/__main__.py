"""`python -m local.sqladmin_emulator --host H --port P --pg CONNINFO --storage-endpoint URL [faults]`.

Prints one JSON log line `{"severity": "INFO", "message": "sqladmin emulator ready", "url": ...}` once it
accepts connections; stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import signal
import sys
from types import FrameType

from local.sqladmin_emulator.faults import FaultSettings
from local.sqladmin_emulator.server import EmulatorServer
from shared.core.logs import log


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m local.sqladmin_emulator", description="Cloud SQL Admin API emulator (export path)."
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True, help="0 picks a free port (printed in the ready line)")
    p.add_argument(
        "--pg",
        required=True,
        help='libpq conninfo without dbname, e.g. "host=127.0.0.1 port=N user=postgres"',
    )
    p.add_argument("--storage-endpoint", required=True, help="fake-gcs-server URL, e.g. http://127.0.0.1:G")
    p.add_argument("--min-duration", type=float, default=0.0, help="seconds an operation runs at least")
    p.add_argument(
        "--op-overhead-seconds", type=float, default=0.0, help="seconds every export runs longer than its query"
    )
    p.add_argument(
        "--duration-jitter", type=float, default=0.0, help="each export runs min-duration x uniform(1 -/+ this)"
    )
    p.add_argument("--error-rate", type=float, default=0.0, help="probability of HTTP 503 on each API call")
    p.add_argument("--op-fail-rate", type=float, default=0.0, help="probability an export fails")
    p.add_argument("--fail-uri-regex", default=None, help="exports whose uri matches always fail")
    p.add_argument("--request-latency", type=float, default=0.0, help="seconds added to every API call")
    p.add_argument("--seed", type=int, default=None, help="seed of the fault draws")
    p.add_argument("--user", default="cloudsql-emulator@localhost", help="the operations' `user` field")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    faults = FaultSettings().merged(
        {
            "min_duration": args.min_duration,
            "op_overhead_seconds": args.op_overhead_seconds,
            "duration_jitter": args.duration_jitter,
            "error_rate": args.error_rate,
            "op_fail_rate": args.op_fail_rate,
            "fail_uri_regex": args.fail_uri_regex,
            "request_latency": args.request_latency,
            "seed": args.seed,
        }
    )
    server = EmulatorServer(
        (args.host, args.port),
        pg_conninfo=args.pg,
        storage_endpoint=args.storage_endpoint,
        faults=faults,
        user=args.user,
    )

    def _stop(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)
    host, port = server.server_address[:2]
    log(
        "INFO",
        "sqladmin emulator ready",
        url=f"http://{host}:{port}/",
        host=host,
        port=port,
        storage_endpoint=args.storage_endpoint,
        faults=server.faults.as_dict(),
    )
    try:
        server.serve_forever(poll_interval=0.2)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.server_close()
        log("INFO", "sqladmin emulator stopped", port=port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
