"""What the benchmark runs: its configuration, and the two scenarios as windows x tables."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pendulum

from bench.seed import DATABASE, TABLES
from shared.core.config import Config, SourceConfig
from shared.core.templates import Templates, export_request_body, export_uri
from shared.core.windows import Window

PROJECT = "cdc-local"
INSTANCE = "bench-pg"
BASELINE_INSTANCE = "bench-baseline"
START = pendulum.datetime(2026, 1, 5, tz="UTC")
HOURS = 11  # 10 backfill windows, then the live window of scenario 1
SETTLE_SECONDS = 60

# The worker's own defaults (shared/core/config.py, local/demo_config.json): the benchmark measures them as shipped.
WORKER = {
    "budget_seconds": 300,
    "lease_seconds": 60,
    "max_attempts": 3,
    "poll_initial_seconds": 0.05,
    "poll_max_seconds": 5,
    "poll_fraction": 0.05,
    "retry_base_seconds": 5,
    "retry_max_seconds": 300,
}


def config_doc() -> dict[str, Any]:
    return {
        "project": PROJECT,
        "region": "europe-west1",
        "bucket": "cdc-bench",
        "root": "bench",
        "firestore": {"database": "(default)", "prefix": "cdc_"},
        "topics": {"ticks": "cdc-ticks", "work": "cdc-work"},
        "backfill": {"max_windows": 2000},
        "worker": WORKER,
        "lag_alert_seconds": 7200,
        "sources": [
            {
                "name": "bench",
                "instance": f"{PROJECT}:{INSTANCE}",
                "database": DATABASE,
                "schema": "public",
                "interval": "1h",
                "settle": f"{SETTLE_SECONDS}s",
                "catchup_cap": 48,
                "offload": False,
                "csv": {"escape": "5C", "quote": "22", "fields_terminated_by": "2C", "gzip": False},
                "tables": [
                    {"name": t, "template": "bench/event.sql", "watermark_column": "event_timestamp"} for t in TABLES
                ],
            }
        ],
    }


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    seconds: float  # emulator min_duration: how long each export holds the instance
    windows: tuple[Window, ...]
    tables: tuple[str, ...]
    backfill: bool  # True: one backfill message; False: one tick making the (single) window due

    @property
    def exports(self) -> int:
        return len(self.windows) * (1 + len(self.tables))

    def requests(self, config: Config, templates: Templates) -> list[dict[str, Any]]:
        """The export bodies the pipeline submits, in queue order, under a separate prefix (for the baseline)."""
        source: SourceConfig = config.sources[0]
        bodies = []
        for window in self.windows:
            for table in (None, *self.tables):
                if table is None:
                    query = templates.render_schema_query(source, window)
                else:
                    query = templates.render_query(source, source.table(table), window)
                uri = export_uri(config, f"baseline/{self.key}/{len(bodies):03d}.csv")
                bodies.append(export_request_body(source, query, uri, source.offload))
        return bodies


def _hour(n: int) -> Window:
    return Window(START.add(hours=n), START.add(hours=n + 1))


SCENARIOS = (
    Scenario("s1", "1 window: schema + 8 tables, 2 s each (tick)", 2.0, (_hour(HOURS - 1),), TABLES, False),
    Scenario(
        "s2",
        "10 windows x (schema + 4 tables) = 50, 0.5 s each (backfill)",
        0.5,
        tuple(_hour(n) for n in range(10)),
        TABLES[:4],
        True,
    ),
)
