"""The package layout shows the architecture: imports go one way, and every module says its one job first."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parent.parent / "shared"
# What each part may import from shared (besides itself).
ALLOWED = {
    "core": set(),
    "app": {"core"},
    "adapters": {"core", "app"},
    "runtime": {"core", "app", "adapters"},
    "ops": {"core", "app", "adapters"},
    "testing": {"core", "app"},
}
MODULES = sorted(p for p in SHARED.rglob("*.py") if "__pycache__" not in p.parts)


def part_of(path: Path) -> str:
    relative = path.relative_to(SHARED)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def shared_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "shared":
                names.update(alias.name for alias in node.names)
            elif node.module.startswith("shared."):
                names.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            names.update(a.name.split(".")[1] for a in node.names if a.name.startswith("shared."))
    return names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SHARED)))
def test_imports_go_one_way(path: Path) -> None:
    part = part_of(path)
    if part == "__init__":
        return
    forbidden = shared_imports(path) - ALLOWED[part] - {part}
    assert not forbidden, f"{path.relative_to(SHARED)} ({part}) imports {sorted(forbidden)}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SHARED)))
def test_every_module_says_its_job_first(path: Path) -> None:
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    assert docstring and len(docstring.splitlines()[0]) > 10, f"{path} has no one-line docstring"
