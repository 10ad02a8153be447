"""checkov's own virtualenv, .venv-checkov, created from requirements-checkov.txt on first use.

checkov ships a module named `hcl2` that would shadow python-hcl2 in .venv, hence a virtualenv of its own. Creating
it takes over a minute on a clean clone, mostly waiting on pip: `start_installing` (called by conftest.py when the
checkov test is collected) does it in a thread from the start of the session, so that it overlaps the other tests
instead of adding to the suite's length; `executable` waits for it.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
from concurrent.futures import Future
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHECKOV_VENV = REPO / ".venv-checkov"
CHECKOV_REQUIREMENTS = REPO / "requirements-checkov.txt"

_lock = threading.Lock()
_installing: Future[Path] | None = None


def _install() -> Path:
    """The checkov executable of .venv-checkov, (re)installed when requirements-checkov.txt changed."""
    executable = CHECKOV_VENV / "bin" / "checkov"
    stamp = CHECKOV_VENV / ".installed"
    wanted = hashlib.sha256(CHECKOV_REQUIREMENTS.read_bytes()).hexdigest()
    if executable.exists() and stamp.exists() and stamp.read_text() == wanted:
        return executable
    python = CHECKOV_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(CHECKOV_VENV)], check=True, timeout=120)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(CHECKOV_REQUIREMENTS)], check=True, timeout=600)
    stamp.write_text(wanted)
    return executable


def _run(future: Future[Path]) -> None:
    try:
        future.set_result(_install())
    except BaseException as exc:  # handed to the test that waits, which fails with it
        future.set_exception(exc)


def start_installing() -> Future[Path]:
    """Start (once per process) creating the virtualenv in a background thread."""
    global _installing
    with _lock:
        if _installing is None:
            _installing = Future()
            threading.Thread(target=_run, args=(_installing,), name="checkov-venv", daemon=True).start()
        return _installing


def executable(timeout: float = 900) -> Path:
    """The checkov executable, once its virtualenv is ready."""
    return start_installing().result(timeout=timeout)
