"""Crash points: named moments in the chain where a test harness may kill the process on purpose.

In production nothing is installed and `reached` is one comparison. The local stack installs the
failpoints of shared/testing/failpoints.py (driven by CDC_FAILPOINTS) through local/functions_entry.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, get_args

CrashPoint = Literal["with_lease", "after_submit", "mid_poll", "after_successor", "after_done"]
"""- `with_lease`   just after the instance lease was taken (the lease stays held by a dead holder);
- `after_submit` after instances.export answered, before the operation name is saved on the task;
- `mid_poll`     between two operations.get polls of the running export;
- `after_successor` an export is DONE and the next one was submitted (and marked running), before the finished
                 one is marked done;
- `after_done`   the task is marked done, before its watermark and manifest bookkeeping."""
CRASH_POINTS: tuple[str, ...] = get_args(CrashPoint)
PackCrashPoint = Literal["mid_split"]
"""Reached only when packing is on (shared/app/packs.py): `mid_split`, a pack's window object was written, before
the next one is."""
PACK_CRASH_POINTS: tuple[str, ...] = get_args(PackCrashPoint)

_hook: Callable[[str], None] | None = None


def install(hook: Callable[[str], None] | None) -> None:
    """Call `hook(point)` at every crash point from now on (None removes it)."""
    global _hook
    _hook = hook


def reached(point: CrashPoint | PackCrashPoint) -> None:
    if _hook is not None:
        _hook(point)
