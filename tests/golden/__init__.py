"""Golden files: expected outputs checked in beside the tests. `UPDATE_GOLDEN=1 pytest ...` rewrites them."""

from __future__ import annotations

import os
from pathlib import Path

GOLDEN_DIR = Path(__file__).resolve().parent


def assert_golden(relative: str, actual: str) -> None:
    path = GOLDEN_DIR / relative
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
    assert path.exists(), f"golden file {relative} is missing; run with UPDATE_GOLDEN=1 to create it"
    assert actual == path.read_text(encoding="utf-8"), f"output differs from golden file {relative}"
