"""Operator commands against a stack or project that is not there: one line naming what to check, exit 4, fast.

Closed ports (nothing listens), a silent port (accepts, never answers) and Google Cloud without credentials;
the commands run as subprocesses with a bound on their wall time (before: 60-120 s of silence, or a traceback).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.ops.cli import EXIT_CLOUD
from tests.test_cli import DEMO, REPO

BOUND_SECONDS = 10  # the probe gives each service 3 s; the rest is interpreter start-up
SETTLED = ("--start", "2026-01-01T00:00:00Z", "--end", "2026-01-01T02:00:00Z")
COMMANDS = [
    ("status",),
    ("status", "--json"),
    ("retry", "--failed"),
    ("report", "--html", "report.html"),
    ("backfill", *SETTLED),
    ("backfill", *SETTLED, "--wait"),
]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (backlog) and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield s.getsockname()[1]


def run(args: tuple[str, ...], env: dict[str, str], cwd: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CDC_", "FIRESTORE_", "PUBSUB_", "STORAGE_"))}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "shared.ops.cli", *args, "--config", str(DEMO)],
        cwd=cwd, env={**base, "PYTHONPATH": str(REPO), **env}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return result, time.monotonic() - started


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_closed_emulator_ports_exit_4_at_once(args: tuple[str, ...], tmp_path: Path) -> None:
    port = closed_port()
    env = {"FIRESTORE_EMULATOR_HOST": f"127.0.0.1:{port}", "PUBSUB_EMULATOR_HOST": f"127.0.0.1:{port}"}
    result, took = run(args, env, tmp_path)
    assert result.returncode == EXIT_CLOUD, result.stderr
    assert took < BOUND_SECONDS
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"cdc: error: the Firestore emulator at 127.0.0.1:{port} (FIRESTORE_EMULATOR_HOST) refused")
    assert "`make up`" in line and "set -a; . .stack/env; set +a" in line


def test_pubsub_down_is_named(tmp_path: Path) -> None:
    """Firestore answers (a stand-in that says Ok like the emulator), Pub/Sub does not: the line names Pub/Sub."""
    server = subprocess.Popen(
        [sys.executable, "-c", "import http.server as h;h.test(h.SimpleHTTPRequestHandler,port=0,bind='127.0.0.1')"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline().split(" port ")[1].split()[0])
        env = {"FIRESTORE_EMULATOR_HOST": f"127.0.0.1:{port}", "PUBSUB_EMULATOR_HOST": f"127.0.0.1:{closed_port()}"}
        result, took = run(("retry", "--failed"), env, tmp_path)
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert result.returncode == EXIT_CLOUD and took < BOUND_SECONDS
    assert result.stderr.startswith("cdc: error: the Pub/Sub emulator at 127.0.0.1:")


def test_a_silent_port_times_out_within_the_bound(silent_port: int, tmp_path: Path) -> None:
    env = {"FIRESTORE_EMULATOR_HOST": f"127.0.0.1:{silent_port}", "PUBSUB_EMULATOR_HOST": f"127.0.0.1:{silent_port}"}
    result, took = run(("status",), env, tmp_path)
    assert result.returncode == EXIT_CLOUD and took < BOUND_SECONDS
    assert "did not answer in time" in result.stderr and "`make up`" in result.stderr


@pytest.mark.parametrize("args", [("status",), ("backfill", *SETTLED)], ids=" ".join)
def test_google_cloud_without_credentials_exits_4_naming_them(args: tuple[str, ...], tmp_path: Path) -> None:
    env = {"GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "none.json"), "NO_GCE_CHECK": "True",
           "CLOUDSDK_CONFIG": str(tmp_path)}  # fmt: skip
    result, took = run(args, env, tmp_path)
    assert result.returncode == EXIT_CLOUD and took < BOUND_SECONDS, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("cdc: error: Firestore at firestore.googleapis.com has no Application Default Credentials")
    assert "gcloud auth application-default login" in line and "`make up`" in line
