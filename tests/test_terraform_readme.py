"""terraform/README.md's Inputs and Outputs tables are generated from variables.tf / outputs.tf.

Regenerate after changing a variable or an output:  .venv/bin/python -m tests.test_terraform_readme
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from tests.test_terraform import TERRAFORM, terraform_files, variables

README = TERRAFORM / "README.md"
BEGIN, END = "<!-- BEGIN_TF_DOCS -->", "<!-- END_TF_DOCS -->"


def outputs() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for doc in terraform_files().values():
        for entry in doc.get("output", []):
            found.update(entry)
    return found


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _type(body: dict[str, Any]) -> str:
    text = re.sub(r"^\$\{(.*)\}$", r"\1", " ".join(str(body["type"]).split()), flags=re.S)
    return text if len(text) <= 40 else text.split("(", 1)[0] + "(...)"


def _default(body: dict[str, Any]) -> str:
    if "default" not in body:
        return "n/a"
    return "`" + json.dumps(body["default"]) + "`"


def render() -> str:
    lines = [BEGIN, "## Inputs", "", "| Name | Description | Type | Default | Required |", "|---|---|---|---|:---:|"]
    for name, body in sorted(variables().items()):
        required = "yes" if "default" not in body else "no"
        lines.append(
            f"| `{name}` | {_cell(body['description'])} | `{_type(body)}` | {_cell(_default(body))} | {required} |"
        )
    lines += ["", "## Outputs", "", "| Name | Description |", "|---|---|"]
    for name, body in sorted(outputs().items()):
        lines.append(f"| `{name}` | {_cell(body['description'])} |")
    lines.append(END)
    return "\n".join(lines)


def current() -> str:
    text = README.read_text()
    assert BEGIN in text and END in text, f"{README.name} lacks the {BEGIN} ... {END} section"
    return text[text.index(BEGIN) : text.index(END) + len(END)]


def test_readme_inputs_and_outputs_match_variables_and_outputs() -> None:
    assert current() == render(), (
        "terraform/README.md tables are stale: run .venv/bin/python -m tests.test_terraform_readme"
    )


def test_every_output_is_documented() -> None:
    for name, body in outputs().items():
        assert body.get("description"), f"output {name} has no description"


if __name__ == "__main__":
    text = README.read_text()
    if BEGIN in text:
        text = text[: text.index(BEGIN)] + render() + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip() + "\n\n" + render() + "\n"
    README.write_text(text)
    sys.exit(0)
