"""Crash-test failpoints: named points in the worker where the process may be killed on purpose.

`failpoint("after_submit")` does nothing unless `CDC_FAILPOINTS` (read by shared.config.load_failpoints)
gives that name a probability; then, with that probability, it logs `failpoint fired` and SIGKILLs the
current process, as an out-of-memory kill or a lost instance would: no `finally`, no lease release, no
reply to Pub/Sub. Under functions-framework the process is a gunicorn worker, which the arbiter replaces
at once, so the function keeps serving (like Cloud Functions starting a new instance).

Points placed in shared/worker.py:
- `with_lease`     just after the instance lease was taken (the lease stays held by a dead holder);
- `after_submit`   after instances.export answered, before the operation name is saved on the task;
- `mid_poll`       between two operations.get polls of the running export;
- `after_done`     the task is marked done, before its watermark and manifest bookkeeping.
"""

from __future__ import annotations

import os
import random
import signal
from functools import cache

from shared import logs
from shared.config import FailpointSettings, load_failpoints
from shared.errors import ConfigError

POINTS = ("with_lease", "after_submit", "mid_poll", "after_done")


@cache
def settings() -> FailpointSettings:
    loaded = load_failpoints()
    for name in loaded.rates:
        if name not in POINTS:
            raise ConfigError("CDC_FAILPOINTS", name, f"is not a failpoint (known: {', '.join(POINTS)})")
    return loaded


def failpoint(name: str) -> None:
    """Kill this process with the probability configured for `name` (no-op when none is)."""
    rate = settings().rates.get(name, 0.0)
    if rate <= 0 or random.random() >= rate:
        return
    logs.warning("failpoint fired; killing the process", failpoint=name, pid=os.getpid())
    os.kill(os.getpid(), signal.SIGKILL)
