"""Start services in their own process groups, check them, stop them by group, and measure their memory.

Everything here works from PIDs and /proc, so a later `python -m local.stack down` can stop what an
earlier `up` started. Processes started by this Python process are also kept in a registry so they
are reaped (a dead child left unreaped would otherwise look alive to `kill(pid, 0)`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class Spawned:
    pid: int
    pgid: int


def spawn(
    cmd: Sequence[str],
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
) -> Spawned:
    """Start `cmd` detached in a new session (so its process group id is its PID), output to log_path."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
            user=user,
            group=user,
            extra_groups=[] if user else None,
        )
    _CHILDREN[proc.pid] = proc
    return Spawned(pid=proc.pid, pgid=proc.pid)


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, pgrp) of a process from /proc, or None when it does not exist."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[2])


def _reap(pid: int) -> None:
    proc = _CHILDREN.get(pid)
    if proc is not None and proc.poll() is not None:
        del _CHILDREN[pid]


def alive(pid: int) -> bool:
    """True for a running process (zombies count as dead)."""
    _reap(pid)
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in a process group."""
    _reap(pgid)
    members = []
    for pid in _all_pids():
        stat = _stat(pid)
        if stat is not None and stat[2] == pgid and stat[0] not in ("Z", "X"):
            members.append(pid)
    return members


def stop_group(pgid: int, sig: int = signal.SIGTERM, timeout: float = 5.0) -> bool:
    """Signal a process group, wait for it to exit, then SIGKILL what is left. True if it had to kill."""
    if not group_members(pgid):
        return False
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not group_members(pgid):
            return False
        time.sleep(0.03)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + 5.0
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.03)
    return True


def descendants(root: int) -> list[int]:
    """root and every process below it (by parent PID), alive only."""
    children: dict[int, list[int]] = {}
    for pid in _all_pids():
        stat = _stat(pid)
        if stat is not None and stat[0] not in ("Z", "X"):
            children.setdefault(stat[1], []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if alive(pid):
            found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def pss_bytes(pid: int) -> int:
    """Proportional set size: shared pages (a forked gunicorn worker's) split between their users."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def _tree(roots: Sequence[int]) -> set[int]:
    seen: set[int] = set()
    for root in roots:
        seen.update(descendants(root))
    return seen


def tree_rss_bytes(roots: Sequence[int]) -> int:
    """Sum of RSS over the process trees below roots (shared pages are counted once per process)."""
    return sum(rss_bytes(pid) for pid in _tree(roots))


def tree_pss_bytes(roots: Sequence[int]) -> int:
    """Sum of PSS over the process trees below roots (shared pages counted once overall)."""
    return sum(pss_bytes(pid) for pid in _tree(roots))
