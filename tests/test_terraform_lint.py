"""terraform fmt and checkov over terraform/ (both offline); checkov runs from its own virtualenv
(tests/checkov_env.py)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests import checkov_env

REPO = Path(__file__).resolve().parent.parent
TERRAFORM = REPO / "terraform"


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


@pytest.mark.timeout(900)
def test_checkov_passes_and_every_skip_has_a_reason() -> None:
    env = {**os.environ, "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true", "CKV_PARSE_ERROR_FAIL": "true"}
    args = ["-d", str(TERRAFORM), "--framework", "terraform", "--skip-download", "-o", "json"]
    result = subprocess.run(
        [str(checkov_env.executable()), *args],
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
