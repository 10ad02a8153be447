"""The functions as the local stack serves them when CDC_FAILPOINTS is set: functions/main.py, plus the
crash-test failpoints hooked into the chain. Without the variable the stack serves functions/main.py itself."""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from functions.main import planner, worker  # noqa: E402
from shared.testing import failpoints  # noqa: E402

failpoints.install()

__all__ = ["planner", "worker"]
