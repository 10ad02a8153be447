"""The function source archive: rebuilt from terraform/'s include/exclude globs, then imported as deployed.

Terraform zips `fileset(repo, include) - fileset(repo, exclude)` (locals.tf). Here the same globs
select the same files; the archive is unpacked into a temporary directory and a fresh interpreter,
with this repository hidden from its import system, loads both entry points the way the Cloud
Functions runtime does: functions-framework with `--source functions/main.py` (GOOGLE_FUNCTION_SOURCE)
and the HTTP signature type of a function deployed without an event trigger.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import hcl2

from shared.core.config import parse_config
from tests.test_terraform import REPO, TERRAFORM, block, locals_, resource, variables


def glob_regex(pattern: str) -> re.Pattern[str]:
    """Terraform fileset() glob (doublestar) as a regex over '/'-separated relative paths."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("/**", i) and i + 3 == len(pattern):
            out, i = out + "(?:/.*)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "{":
            end = pattern.index("}", i)
            out += "(?:" + "|".join(re.escape(alt) for alt in pattern[i + 1 : end].split(",")) + ")"
            i = end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def fileset(root: Path, pattern: str) -> set[str]:
    """Files (not directories) under root matching pattern, as Terraform's fileset() returns them."""
    literal = pattern.split("*")[0].split("?")[0].split("{")[0]
    start = root / literal.rsplit("/", 1)[0] if "/" in literal else root
    regex = glob_regex(pattern)
    found = set()
    for directory, _dirs, files in os.walk(start):
        for name in files:
            relative = (Path(directory) / name).relative_to(root).as_posix()
            if regex.match(relative):
                found.add(relative)
    return found


def source_files() -> list[str]:
    include, exclude = locals_()["source_include"], locals_()["source_exclude"]
    assert locals_()["source_root"] == '${abspath("${path.module}/..")}', "the archive is built from the repo root"
    selected = set().union(*(fileset(REPO, p) for p in include))
    return sorted(selected - set().union(*(fileset(REPO, p) for p in exclude)))


def test_glob_semantics_match_terraform_fileset() -> None:
    assert glob_regex("shared/**/*.py").match("shared/config.py")
    assert glob_regex("shared/**/*.py").match("shared/sub/x.py")
    assert not glob_regex("shared/*.py").match("shared/sub/x.py")
    assert glob_regex("templates/**").match("templates/keys/table.j2")
    assert glob_regex("**/__pycache__/**").match("shared/__pycache__/config.cpython-311.pyc")
    assert glob_regex("**/.*").match("templates/.gitkeep")
    assert not glob_regex("**/.*").match("templates/orders.sql")
    assert glob_regex("{a,b}/x").match("b/x")


def test_archive_holds_the_entry_module_the_packages_and_nothing_else() -> None:
    files = source_files()
    assert "requirements.txt" in files
    assert locals_()["function_entry_source"] in files
    assert {"functions/__init__.py", "shared/__init__.py"} <= set(files)
    templates = {p.relative_to(REPO).as_posix() for p in (REPO / "templates").rglob("*") if p.is_file()}
    assert {t for t in templates if "/." not in "/" + t} <= set(files)
    top_level = {f.split("/", 1)[0] for f in files}
    assert top_level == {"functions", "shared", "templates", "requirements.txt"}
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]
    requirements = (REPO / "requirements.txt").read_text()
    assert re.search(r"^functions-framework==", requirements, re.MULTILINE), "the buildpack needs it pinned"


def test_operator_tooling_and_test_fakes_do_not_ship() -> None:
    files = set(source_files())
    assert not [f for f in files if f.startswith(("shared/ops/", "shared/testing/"))]
    shipped_elsewhere = {
        p.relative_to(REPO).as_posix()
        for p in (REPO / "shared").rglob("*.py")
        if "__pycache__" not in p.parts and p.relative_to(REPO / "shared").parts[0] not in ("ops", "testing")
    }
    assert shipped_elsewhere, "shared/ has Python modules outside ops/ and testing/"
    assert shipped_elsewhere <= files, sorted(shipped_elsewhere - files)
    assert glob_regex("shared/ops/**").match("shared/ops/cli.py")
    assert glob_regex("shared/ops/**").match("shared/ops/sub/x.py")
    assert not glob_regex("shared/ops/**").match("shared/opsx.py")


def example_cdc_config() -> dict[str, Any]:
    """CDC_CONFIG as locals.tf builds it from terraform.tfvars.example (nulls dropped, Terraform's parts added)."""
    options = hcl2.SerializationOptions(strip_string_quotes=True, explicit_blocks=False, with_comments=False)
    with (TERRAFORM / "terraform.tfvars.example").open() as handle:
        tfvars = hcl2.load(handle, serialization_options=options)
    pipeline = tfvars["pipeline"]
    prefix = variables()["name_prefix"]["default"]

    def present(doc: dict[str, Any], skip: tuple[str, ...] = ()) -> dict[str, Any]:
        return {k: v for k, v in doc.items() if v is not None and k not in skip}

    sources = []
    for source in pipeline["sources"]:
        doc = present(source, ("csv", "tables"))
        if source.get("csv") is not None:
            doc["csv"] = present(source["csv"])
        doc["tables"] = [present(t) for t in source["tables"]]
        sources.append(doc)
    optional = present({k: pipeline.get(k) for k in ("layout", "backfill", "worker", "lag_alert_seconds")})
    return {
        **optional,
        "project": tfvars["project_id"],
        "region": tfvars["region"],
        "bucket": f"{tfvars['project_id']}-{prefix}-exports",
        "root": pipeline.get("root", "cdc"),
        "firestore": {
            "database": variables()["firestore_database"]["default"],
            "prefix": pipeline.get("firestore_prefix", "cdc_"),
        },
        "topics": {"ticks": f"{prefix}-ticks", "work": f"{prefix}-work"},
        "sources": sources,
    }


def test_example_tfvars_give_a_config_the_functions_accept() -> None:
    config = parse_config(example_cdc_config())
    assert config.ticks_topic == "cdc-ticks"
    assert config.work_topic == "cdc-work"
    assert config.instances() == ("my-project:shop-pg",)


_IMPORT_AS_DEPLOYED = """
import os, sys
root = os.getcwd()
# Hide the repository (editable install finders, path entries) so only the unpacked archive can serve imports.
sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")
                    and "__editable__" not in getattr(type(f), "__module__", "")]
sys.path[:] = [p for p in sys.path if p and os.path.realpath(p) != os.path.realpath(sys.argv[1])]
from functions_framework import create_app, _function_registry
for target in ("planner", "worker"):
    create_app(target=target, source=sys.argv[2], signature_type="http")
    assert _function_registry.get_func_signature_type(target, "http") == "cloudevent", target
stray = {name: m.__file__ for name, m in list(sys.modules.items())
         if (name in ("functions", "shared") or name.startswith(("functions.", "shared.")))
         and getattr(m, "__file__", None) and not os.path.realpath(m.__file__).startswith(os.path.realpath(root))}
assert not stray, stray
print("ok", sorted(n for n in sys.modules if n == "shared" or n.startswith("shared.")))
"""


def test_both_entry_points_import_from_the_unpacked_archive(tmp_path: Path) -> None:
    archive = tmp_path / "function-source.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name in source_files():
            zf.write(REPO / name, name)
    unpacked = tmp_path / "workspace"
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(unpacked)

    entry = block(resource("google_cloudfunctions2_function", "function"), "build_config")
    assert entry["environment_variables"]["GOOGLE_FUNCTION_SOURCE"] == "${local.function_entry_source}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CDC_", "PYTHON"))}
    env["CDC_CONFIG"] = json.dumps(example_cdc_config())
    env["GOOGLE_CLOUD_PROJECT"] = "my-project"
    result = subprocess.run(
        [sys.executable, "-I", "-c", _IMPORT_AS_DEPLOYED, str(REPO), locals_()["function_entry_source"]],
        cwd=unpacked,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # The functions' own structured logs share stdout; the script's verdict is its last line.
    assert result.stdout.splitlines()[-1].startswith("ok"), result.stdout[-3000:]
