"""What the benchmark runs: its configuration, and the scenarios as windows x tables.

s1 and s2 run on the `bench` source; the realistic case (s3) on its own source and instance, so that it starts with
no history, as a new deployment would; the multi-instance case on five more (`m0`..`m4`). The extra sources start in
the future: ticks plan nothing for them, only their scenario's backfill does."""

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
REALISTIC_INSTANCE = "bench-real"
MULTI_INSTANCES = tuple(f"bench-m{i}" for i in range(5))
BASELINE_INSTANCE = "bench-baseline"
FUTURE = pendulum.datetime(2036, 1, 1, tz="UTC")  # the start of the sources that only backfills feed
HOURS = 11  # 10 backfill windows, then the live window of scenario 1
SETTLE_SECONDS = 60


def _start() -> pendulum.DateTime:
    """HOURS before the end of the latest settled hour: s1's window is then the live one, as a tick's is in production
    (the chain ranks tasks at claim time against the wall clock: a window in the past would be catch-up, and every
    completion would re-read the queue for a live task instead of submitting the one prepared while polling)."""
    settled = pendulum.now("UTC").subtract(seconds=SETTLE_SECONDS).start_of("hour")
    return settled.subtract(hours=HOURS)


START = _start()

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
    "poll_window_calls": 10,
    "poll_spread": 0.05,
    "poll_sparse_seconds": 60,
    "api_calls_per_minute": 150,
}


def _source(name: str, instance: str, tables: tuple[str, ...], start: pendulum.DateTime | None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": name,
        "instance": f"{PROJECT}:{instance}",
        "database": DATABASE,
        "schema": "public",
        "interval": "1h",
        "settle": f"{SETTLE_SECONDS}s",
        "catchup_cap": 48,
        "offload": False,
        "csv": {"escape": "5C", "quote": "22", "fields_terminated_by": "2C", "gzip": False},
        "tables": [{"name": t, "template": "bench/event.sql", "watermark_column": "event_timestamp"} for t in tables],
    }
    if start is not None:
        doc["start"] = start.isoformat()
    return doc


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
        "layout": {"table": "keys/table_by_source.j2"},  # the sources share table names
        "sources": [
            _source("bench", INSTANCE, TABLES, None),
            _source("real", REALISTIC_INSTANCE, TABLES[:2], FUTURE),
            *(_source(f"m{i}", instance, TABLES[:1], FUTURE) for i, instance in enumerate(MULTI_INSTANCES)),
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
    jitter: float = 0.0  # emulator duration_jitter: each export holds seconds x uniform(1 -/+ jitter)
    source: str = "bench"
    instance: str = INSTANCE

    @property
    def exports(self) -> int:
        return len(self.windows) * (1 + len(self.tables))

    def requests(self, config: Config, templates: Templates) -> list[dict[str, Any]]:
        """The export bodies the pipeline submits, in queue order, under a separate prefix (for the baseline)."""
        source: SourceConfig = config.source(self.source)
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

REALISTIC = Scenario(
    "s3",
    "realistic: 2 windows x (schema + 2 tables) = 6, 20 s +/- 5 % each (backfill, no history at first)",
    20.0,
    (_hour(0), _hour(1)),
    TABLES[:2],
    True,
    jitter=0.05,
    source="real",
    instance=REALISTIC_INSTANCE,
)
MULTI_SECONDS = 5.0
MULTI_JITTER = 0.05
MULTI_WINDOWS = (_hour(0), _hour(1))
"""The multi-instance case: each of MULTI_INSTANCES backfills these windows x (schema + 1 table), all at once."""
