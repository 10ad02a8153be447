"""examples/*: roots that configure the providers and call the module with arguments it declares."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hcl2
import pytest

from tests.test_terraform import TERRAFORM, variables

EXAMPLES = sorted(p for p in (TERRAFORM / "examples").iterdir() if p.is_dir())


def parse(directory: Path) -> dict[str, list[Any]]:
    options = hcl2.SerializationOptions(strip_string_quotes=True, explicit_blocks=False, with_comments=False)
    merged: dict[str, list[Any]] = {}
    for path in sorted(directory.glob("*.tf")):
        with path.open() as handle:
            for key, value in hcl2.load(handle, serialization_options=options).items():
                merged.setdefault(key, []).extend(value)
    return merged


def test_the_two_documented_examples_exist() -> None:
    assert {p.name for p in EXAMPLES} == {"minimal", "multi-instance"}


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_configures_providers_and_calls_the_module_correctly(example: Path) -> None:
    doc = parse(example)
    providers = {name for block in doc.get("provider", []) for name in block}
    assert {"google", "google-beta"} <= providers
    (module,) = [body for block in doc["module"] for body in block.values()]
    assert module["source"] == "../.."
    arguments = set(module) - {"source", "version", "providers", "depends_on", "count", "for_each"}
    declared = variables()
    assert arguments <= set(declared), f"unknown module arguments: {sorted(arguments - set(declared))}"
    required = {name for name, body in declared.items() if "default" not in body}
    assert required <= arguments, f"missing required module arguments: {sorted(required - arguments)}"
    own = {name for block in doc.get("variable", []) for name in block}
    for body in [b for block in doc.get("variable", []) for b in block.values()]:
        assert body.get("description") and "type" in body
    used = {v for text in map(str, module.values()) for v in own if f"var.{v}" in text}
    assert own == used, f"unused example variables: {sorted(own - used)}"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_templates_exist(example: Path) -> None:
    text = "\n".join(p.read_text() for p in example.glob("*.tf"))
    for template in {part.split('"')[1] for part in text.split("template = ")[1:]}:
        assert (TERRAFORM.parent / "templates" / template).is_file(), template
