"""Crash-test failpoints: the crash points of shared/app/hooks.py, made to SIGKILL the process on purpose.

`CDC_FAILPOINTS="after_submit:0.1,mid_poll:0.05"` gives points a probability; `failpoint(name)` then, with
that probability, logs `failpoint fired` and SIGKILLs the current process, as an out-of-memory kill or a lost
instance would: no `finally`, no lease release, no reply to Pub/Sub. Under functions-framework the process is
a gunicorn worker, which the arbiter replaces at once, so the function keeps serving (like Cloud Functions
starting a new instance). The local stack serves local/functions_entry.py, which calls `install()`, when the
variable is set; the deployed functions never import this module.

`CDC_FAILPOINTS_KILLS="N:DIR"` caps the kills of a whole run, across every process, at N: each kill first takes
one of N token files in DIR (created exclusively, so two processes never take the same one), and a failpoint
reached once they are gone lets the process live. The fault suite's fast variant uses it: each kill can hold every
instance for over a minute (a killed process's open Firestore transactions stay locked), so uncapped kills made
the run's length unbounded too.
"""

from __future__ import annotations

import os
import random
import re
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from shared.app import hooks
from shared.core import logs
from shared.core.errors import ConfigError

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class FailpointSettings:
    """Crash-test failpoints: name -> probability of killing the process when it is reached."""

    rates: Mapping[str, float] = field(default_factory=dict)
    max_kills: int | None = None  # None: no cap
    tokens_dir: Path | None = None  # where the kills of a run take their tokens

    def take_kill_token(self) -> bool:
        """Whether this process may die now: always without a cap, else while one of the run's tokens is left."""
        if self.max_kills is None or self.tokens_dir is None:
            return True
        self.tokens_dir.mkdir(parents=True, exist_ok=True)
        for i in range(self.max_kills):
            try:
                os.close(os.open(self.tokens_dir / f"kill-{i}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                continue
            return True
        return False


def _kill_cap(raw: str) -> tuple[int | None, Path | None]:
    """Parse `CDC_FAILPOINTS_KILLS` ('N:DIR'; unset or empty: no cap)."""
    if not raw.strip():
        return None, None
    count, sep, directory = raw.strip().partition(":")
    if not sep or not count.isdigit() or not directory:
        raise ConfigError("CDC_FAILPOINTS_KILLS", raw, "is not 'N:DIR' (N kills at most, tokens kept in DIR)")
    return int(count), Path(directory)


def load_failpoints(environ: Mapping[str, str] = os.environ) -> FailpointSettings:
    """Parse `CDC_FAILPOINTS` (unset or empty: no failpoint fires) and `CDC_FAILPOINTS_KILLS`."""
    raw = environ.get("CDC_FAILPOINTS", "").strip()
    rates: dict[str, float] = {}
    for i, item in enumerate(part.strip() for part in raw.split(",") if part.strip()):
        name, _, value = item.partition(":")
        path = f"CDC_FAILPOINTS[{i}]"
        if not _NAME_RE.fullmatch(name.strip()):
            raise ConfigError(path, name, "is not a failpoint name")
        try:
            rate = float(value)
        except ValueError:
            raise ConfigError(path, item, "is not 'name:probability'") from None
        if not 0 <= rate <= 1:
            raise ConfigError(path, item, "has a probability outside [0, 1]")
        rates[name.strip()] = rate
    max_kills, tokens_dir = _kill_cap(environ.get("CDC_FAILPOINTS_KILLS", ""))
    return FailpointSettings(rates, max_kills, tokens_dir)


@cache
def settings() -> FailpointSettings:
    loaded = load_failpoints()
    for name in loaded.rates:
        if name not in hooks.CRASH_POINTS + hooks.PACK_CRASH_POINTS:
            known = ", ".join(hooks.CRASH_POINTS + hooks.PACK_CRASH_POINTS)
            raise ConfigError("CDC_FAILPOINTS", name, f"is not a failpoint (known: {known})")
    return loaded


def failpoint(name: str) -> None:
    """Kill this process with the probability configured for `name` (no-op when none is)."""
    loaded = settings()
    rate = loaded.rates.get(name, 0.0)
    if rate <= 0 or random.random() >= rate or not loaded.take_kill_token():
        return
    logs.warning("failpoint fired; killing the process", failpoint=name, pid=os.getpid())
    os.kill(os.getpid(), signal.SIGKILL)


def install() -> None:
    """Check CDC_FAILPOINTS now (a typo fails the process at start) and hook the failpoints into the chain."""
    settings()
    hooks.install(failpoint)
