"""Shared set-up for tests that run the whole pipeline on the local stack.

A test gets a `Pipeline`: the stack's functions restarted with the test's configuration, a `Driver`
to publish ticks and backfills, and direct access to the Admin API emulator's operation log.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pendulum
import requests

from local.driver import Driver
from shared.core.config import parse_config

REPO = Path(__file__).resolve().parent.parent
DEMO_CONFIG = REPO / "local" / "demo_config.json"

# Seeded once per session: six hours of rows from START.
START = pendulum.datetime(2026, 11, 20, 0, tz="UTC")
HOURS = 6
ROWS_PER_TABLE = 3_000

# Fast settings for tests: short lease, quick retries, a budget that forces continuations in long runs.
TEST_WORKER = {
    "budget_seconds": 60,
    "lease_seconds": 10,
    "max_attempts": 3,
    "poll_initial_seconds": 0.05,
    "poll_max_seconds": 0.5,
    "retry_base_seconds": 0.5,
    "retry_max_seconds": 2,
}


def demo_config(**overrides: Any) -> dict[str, Any]:
    doc = json.loads(DEMO_CONFIG.read_text())
    doc["worker"] = {**doc["worker"], **TEST_WORKER}
    for key, value in overrides.items():
        doc[key] = value
    return doc


def second_source(doc: dict[str, Any], name: str = "shop2", instance: str = "cdc-local:shop-pg-2") -> dict[str, Any]:
    """A copy of the first source on another instance (same database), with source-qualified keys."""
    extra = copy.deepcopy(doc["sources"][0])
    extra.update(name=name, instance=instance)
    doc["sources"].append(extra)
    doc["layout"] = {**doc.get("layout", {}), "table": "keys/table_by_source.j2"}
    return doc


class Pipeline:
    """The running pipeline of one test."""

    def __init__(self, stack: Any, doc: dict[str, Any], config_path: Path, extra_env: dict[str, str] | None) -> None:
        self.stack = stack
        self.doc = doc
        config_path.write_text(json.dumps(doc))
        stack.restart_functions(config_path=config_path, extra_env=extra_env)
        stack.reset()
        os.environ["CDC_CONFIG_FILE"] = str(config_path)
        self.config = parse_config(doc, sqladmin_endpoint=stack.env()["CDC_SQLADMIN_ENDPOINT"])
        self.driver = Driver(self.config)
        self.state = self.driver.clients.state
        self.dsn = stack.pg_dsn("postgres")
        self._admin = stack.env()["CDC_SQLADMIN_ENDPOINT"].rstrip("/") + "/_emulator"

    def faults(self, **knobs: Any) -> dict[str, Any]:
        response = requests.post(f"{self._admin}/faults", json=knobs, timeout=10)
        response.raise_for_status()
        return response.json()

    def foreign_operation(self, instance: str, seconds: float) -> None:
        project, name = instance.split(":", 1)
        body = {"project": project, "instance": name, "seconds": seconds}
        requests.post(f"{self._admin}/foreign-operation", json=body, timeout=10).raise_for_status()

    def operations(self) -> list[dict[str, Any]]:
        response = requests.get(f"{self._admin}/operations", timeout=10)
        response.raise_for_status()
        body = response.json()
        return body["operations"] if isinstance(body, dict) else body

    def objects(self) -> dict[str, int]:
        from google.cloud import storage

        client = storage.Client(project=self.config.project)
        return {b.name: b.size for b in client.list_blobs(self.config.bucket)}

    def tick_for(self, hour: int) -> str:
        """The tick that makes window `hour` (START + hour .. +1h) due: its end plus the settle delay."""
        source = self.config.sources[0]
        return self.driver.tick(START.add(hours=hour + 1).add(seconds=source.settle.total_seconds()))
