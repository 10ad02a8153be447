"""terraform fmt and checkov over terraform/ (both offline).

checkov lives in its own virtualenv, .venv-checkov, created here on first use from
requirements-checkov.txt: it ships a module named `hcl2` that would shadow python-hcl2 in .venv.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TERRAFORM = REPO / "terraform"
CHECKOV_VENV = REPO / ".venv-checkov"
CHECKOV_REQUIREMENTS = REPO / "requirements-checkov.txt"


def test_terraform_fmt() -> None:
    binary = shutil.which("terraform")
    if binary is None:
        pytest.skip("terraform binary not installed")
    result = subprocess.run(
        [binary, "fmt", "-check", "-recursive", "-diff", str(TERRAFORM)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"terraform fmt -recursive terraform/ would change:\n{result.stdout}"


def checkov() -> Path:
    """The checkov executable of .venv-checkov, (re)installed when requirements-checkov.txt changed."""
    executable = CHECKOV_VENV / "bin" / "checkov"
    stamp = CHECKOV_VENV / ".installed"
    wanted = hashlib.sha256(CHECKOV_REQUIREMENTS.read_bytes()).hexdigest()
    if executable.exists() and stamp.exists() and stamp.read_text() == wanted:
        return executable
    python = CHECKOV_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(CHECKOV_VENV)], check=True, timeout=120)
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            str(CHECKOV_REQUIREMENTS),
        ],
        check=True,
        timeout=600,
    )
    stamp.write_text(wanted)
    return executable


@pytest.mark.timeout(900)
def test_checkov_passes_and_every_skip_has_a_reason() -> None:
    env = {**os.environ, "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true", "CKV_PARSE_ERROR_FAIL": "true"}
    result = subprocess.run(
        [str(checkov()), "-d", str(TERRAFORM), "--framework", "terraform", "--skip-download", "-o", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    report = json.loads(result.stdout)
    failed = [(c["check_id"], c["resource"], c["check_name"]) for c in report["results"]["failed_checks"]]
    assert not failed, failed
    assert not report["results"]["parsing_errors"]
    assert result.returncode == 0, result.stderr[-2000:]
    for check in report["results"]["skipped_checks"]:
        assert check["check_result"].get("suppress_comment", "").strip(), f"{check['check_id']} skipped without reason"
    for path in TERRAFORM.glob("*.tf"):
        for line in path.read_text().splitlines():
            if "checkov:skip" in line:
                assert re.search(r"#checkov:skip=CKV2?_[A-Z]+_\d+:\S.{10,}", line), f"{path.name}: {line.strip()}"
