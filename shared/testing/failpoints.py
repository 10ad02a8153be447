"""Crash-test failpoints: the crash points of shared/app/hooks.py, made to SIGKILL the process on purpose.

`CDC_FAILPOINTS="after_submit:0.1,mid_poll:0.05"` gives points a probability; `failpoint(name)` then, with
that probability, logs `failpoint fired` and SIGKILLs the current process, as an out-of-memory kill or a lost
instance would: no `finally`, no lease release, no reply to Pub/Sub. Under functions-framework the process is
a gunicorn worker, which the arbiter replaces at once, so the function keeps serving (like Cloud Functions
starting a new instance). The local stack serves local/functions_entry.py, which calls `install()`, when the
variable is set; the deployed functions never import this module.
"""

from __future__ import annotations

import os
import random
import re
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache

from shared.app import hooks
from shared.core import logs
from shared.core.errors import ConfigError

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class FailpointSettings:
    """Crash-test failpoints: name -> probability of killing the process when it is reached."""

    rates: Mapping[str, float] = field(default_factory=dict)


def load_failpoints(environ: Mapping[str, str] = os.environ) -> FailpointSettings:
    """Parse `CDC_FAILPOINTS` (unset or empty: no failpoint fires)."""
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
    return FailpointSettings(rates)


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
    rate = settings().rates.get(name, 0.0)
    if rate <= 0 or random.random() >= rate:
        return
    logs.warning("failpoint fired; killing the process", failpoint=name, pid=os.getpid())
    os.kill(os.getpid(), signal.SIGKILL)


def install() -> None:
    """Check CDC_FAILPOINTS now (a typo fails the process at start) and hook the failpoints into the chain."""
    settings()
    hooks.install(failpoint)
