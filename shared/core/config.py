"""The configuration document and its validation (`parse_config`: pure, reads no files and no environment).

Where the document comes from is shared/core/environment.py (`load_config`), the only reader of the environment.

The document (defaults in brackets; `local/demo_config.json` is the documented example):

    project             GCP project id of the pipeline (6-30 lowercase letters, digits, hyphens)
    region              GCP region, e.g. europe-west1
    bucket              Cloud Storage bucket the exports go to
    root ["cdc"]        prefix of every object key, without leading or trailing '/'
    firestore           {"database" ["(default)"], "prefix" ["cdc_"], "writes_per_second" [500]}: database,
                        collection name prefix, and the pace of planning's document creates (Firestore allows
                        500 writes/s to a collection with sequential indexed values; an emulator has no limit)
    topics              {"ticks" ["cdc-ticks"], "work" ["cdc-work"]}: Pub/Sub topic names
    layout              {"table", "schema", "manifest", "verify"}: names of the object-key templates under templates/
                        [keys/table.j2, keys/schema.j2, keys/manifest.j2, keys/verify.j2]; see shared/core/templates.py
    backfill            {"max_windows" [2000]}: largest number of windows one backfill message may span
    worker              {"budget_seconds" [300] (at most 540, the function timeout), "lease_seconds" [60],
                         "max_attempts" [3], "poll_initial_seconds" [0.05], "poll_max_seconds" [5],
                         "poll_fraction" [0.05] (poll interval = this fraction of the export's age, within bounds,
                         while nothing predicts the export's end),
                         "poll_window_calls" [10] (operations.get calls spread over the window in which the export is
                         predicted to end, from its table's recent durations; 0: no forecast, the growing schedule
                         only; see shared/app/polling.py),
                         "poll_spread" [0.05] (that window's half-width as a fraction of the predicted duration, while
                         too few durations are known to measure their spread),
                         "poll_sparse_seconds" [60] (the longest wait between two polls before that window),
                         "api_calls_per_minute" [150] (Admin API calls per minute that all chains of the deployment
                         share; the API's default quota is about 180 per minute per user, so leave headroom;
                         see shared/app/budget.py),
                         "retry_base_seconds" [5], "retry_max_seconds" [300], "stuck_factor" [10],
                         "stuck_min_seconds" [600] (an export not DONE after stuck_factor times its table's last
                         duration, and at least stuck_min_seconds, is stuck: cancelled and retried),
                         "pack" {"max_windows" [1] (1: no packing, e.g. 48; at most 500), "target_bytes" [268435456],
                         "op_overhead_seconds" [30], "export_bytes_per_second" [20971520], "overhead_share" [0.1]}:
                         catch-up and backfill windows of a table exported together (shared/core/packing.py)}
    lag_alert_seconds [7200]  export lag beyond which monitoring alerts
    sources             one or more (non-empty list), each:
        name            identifier, unique; names the source in messages, keys and logs
        instance        Cloud SQL instance as "project:instance"
        database        database name (identifier)
        schema ["public"]  SQL schema of the tables (identifier)
        interval        a duration dividing a day ("15m", "1h", "1d"; grid aligned to the Unix epoch, UTC)
                        or a 5-field cron expression in UTC ("*/15 * * * *")
        settle ["5m"]   delay after a window closes before it is exported (lets late transactions commit)
        catchup_cap [48]  most windows one tick plans; the rest is logged as a gap and planned later
        start [none]    RFC 3339 timestamp on the grid: the first window when nothing was exported yet
                        (without it the first tick plans only the latest due window)
        offload [false] serverless export (no load on the instance, slower, billed)
        csv             {"escape" ["22"], "quote" ["22"], "fields_terminated_by" ["2C"], "gzip" [false]};
                        characters as two hex digits, as the Admin API wants them
        schema_template ["schema.sql"]  template of the schema query (information_schema.columns)
        verify [[]]     verification schedule: [{"every": "1h", "lookback": "6h"}, {"every": "1d", "lookback": "7d"}]
                        re-counts and checksums the last `lookback` of windows every `every` and re-exports windows
                        whose rows changed after they were exported (see README, "Completeness"); `cdc verify` runs
                        one on demand
        tables          non-empty list, each:
            name        table name (identifier), unique within the source
            template ["<name>.sql"]  SQL template path under templates/
            watermark_column ["event_timestamp"]  timestamptz column the windows filter on (identifier);
                        also passed to the template as params.watermark_column
            verify_template ["verify.sql"]  template of the table's verification query (per-window count and
                        checksum; see templates/verify.sql)
            params [{}] per-table template parameters (identifier strings, numbers or booleans only, so that
                        nothing from the config reaches the SQL except validated identifiers)

Rules beyond the field types: identifiers match ^[A-Za-z_][A-Za-z0-9_]*$ (at most 63 characters); two sources
cannot share one (instance, database) pair (their tasks would collide); two sources sharing a table name need
a table layout that uses `source` (else their objects collide). Unknown keys are rejected, naming the closest
known key. Every error is a ConfigError naming the field path, the value and what is allowed.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from pendulum import DateTime, Duration

from shared.core.csvformat import Dialect
from shared.core.errors import ConfigError, WindowError
from shared.core.packing import PackSettings
from shared.core.windows import Schedule, parse_duration, parse_timestamp

DEFAULT_TABLE_LAYOUT = "keys/table.j2"
DEFAULT_SCHEMA_LAYOUT = "keys/schema.j2"
DEFAULT_MANIFEST_LAYOUT = "keys/manifest.j2"
DEFAULT_VERIFY_LAYOUT = "keys/verify.j2"
MAX_FUNCTION_SECONDS = 540

IDENTIFIER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_PROJECT = r"[a-z][a-z0-9-]{4,28}[a-z0-9]"
PROJECT_RE = re.compile(_PROJECT)
INSTANCE_RE = re.compile(rf"({_PROJECT}):([a-z][a-z0-9-]{{0,97}})")
_IDENTIFIER_HELP = "is not a SQL identifier (^[A-Za-z_][A-Za-z0-9_]*$, at most 63 characters)"
_RULES: dict[str, tuple[re.Pattern[str], str]] = {
    "identifier": (IDENTIFIER_RE, _IDENTIFIER_HELP),
    "project": (PROJECT_RE, "is not a GCP project id (6-30 lowercase letters, digits and hyphens)"),
    "instance": (INSTANCE_RE, "is not 'project:instance' (lowercase letters, digits and hyphens)"),
    "region": (re.compile(r"[a-z]+-[a-z]+[0-9]+"), "is not a GCP region such as europe-west1"),
    "bucket": (
        re.compile(r"[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]"),
        "is not a bucket name (3-63 of a-z 0-9 . _ -)",
    ),
    "prefix": (
        re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*"),
        "is not a key prefix (segments of A-Z a-z 0-9 _ . - joined by '/')",
    ),
    "template": (
        re.compile(r"(?!.*(^|/)\.\.?(/|$))[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*"),
        "is not a relative template path under templates/",
    ),
    "topic": (re.compile(r"[A-Za-z][A-Za-z0-9._~+%-]{2,254}"), "is not a Pub/Sub topic name"),
    "firestore_database": (re.compile(r"\(default\)|[a-z][a-z0-9-]{2,62}"), "is not a Firestore database id"),
    "collection_prefix": (
        re.compile(r"[A-Za-z0-9_-]{0,40}"),
        "is not a collection prefix (A-Z a-z 0-9 _ -, at most 40)",
    ),
    "hex": (re.compile(r"[0-9A-Fa-f]{2}"), "is not a character as two hex digits (e.g. '5C', a backslash)"),
    "endpoint": (re.compile(r"https?://[^\s/]+(/\S*)?"), "is not an http(s) URL"),
}


@dataclass(frozen=True)
class CsvOptions:
    """The export's CSV dialect as the Admin API takes it (hex). The default is the API's own: quote `"`, a quote
    inside a value doubled (RFC 4180), which BigQuery, pandas, DuckDB and Spark read as they are; PostgreSQL's CSV
    already tells NULL (unquoted empty) from the empty string (`""`) without a backslash escape."""

    escape: str = "22"
    quote: str = "22"
    fields_terminated_by: str = "2C"
    gzip: bool = False

    @property
    def dialect(self) -> Dialect:
        return Dialect.from_hex(
            delimiter=self.fields_terminated_by, quote=self.quote, escape=self.escape, gzip=self.gzip
        )


@dataclass(frozen=True)
class TableConfig:
    name: str
    template: str
    watermark_column: str = "event_timestamp"
    params: Mapping[str, str | int | float | bool] = field(default_factory=dict, hash=False)
    verify_template: str = "verify.sql"


@dataclass(frozen=True)
class VerifyRule:
    """Verify the last `lookback` of windows every `every` (both whole multiples of the source's interval)."""

    every: Duration
    lookback: Duration


@dataclass(frozen=True)
class SourceConfig:
    name: str
    instance: str
    database: str
    schema: str
    interval: str
    settle: Duration
    catchup_cap: int
    start: DateTime | None
    offload: bool
    csv: CsvOptions
    tables: tuple[TableConfig, ...]
    schema_template: str = "schema.sql"
    verify: tuple[VerifyRule, ...] = ()

    @property
    def instance_project(self) -> str:
        return self.instance.split(":", 1)[0]

    @property
    def instance_name(self) -> str:
        return self.instance.split(":", 1)[1]

    @cached_property
    def schedule(self) -> Schedule:
        return Schedule.parse(self.interval)

    @property
    def table_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tables)

    def table(self, name: str) -> TableConfig:
        for table in self.tables:
            if table.name == name:
                return table
        raise ConfigError(
            f"source {self.name!r} tables",
            name,
            f"is not a configured table (known: {', '.join(self.table_names)})",
        )


@dataclass(frozen=True)
class KeyLayout:
    table: str = DEFAULT_TABLE_LAYOUT
    schema: str = DEFAULT_SCHEMA_LAYOUT
    manifest: str = DEFAULT_MANIFEST_LAYOUT
    verify: str = DEFAULT_VERIFY_LAYOUT


@dataclass(frozen=True)
class WorkerSettings:
    budget_seconds: float = 300
    lease_seconds: float = 60
    max_attempts: int = 3
    poll_initial_seconds: float = 0.05
    poll_max_seconds: float = 5
    poll_fraction: float = 0.05
    retry_base_seconds: float = 5
    retry_max_seconds: float = 300
    stuck_factor: float = 10
    stuck_min_seconds: float = 600
    pack: PackSettings = field(default_factory=PackSettings)
    poll_window_calls: int = 10
    poll_spread: float = 0.05
    poll_sparse_seconds: float = 60
    api_calls_per_minute: float = 150


DEFAULT_FIRESTORE_WRITES_PER_SECOND = 500
"""Firestore's documented limit for a collection whose documents carry sequential indexed values ("Sharded
timestamps"): the task queue's windows and order keys are."""


@dataclass(frozen=True)
class Config:
    project: str
    region: str
    bucket: str
    root: str
    firestore_database: str
    firestore_prefix: str
    ticks_topic: str
    work_topic: str
    layout: KeyLayout
    backfill_max_windows: int
    worker: WorkerSettings
    lag_alert_seconds: float
    sqladmin_endpoint: str | None
    sources: tuple[SourceConfig, ...]
    firestore_writes_per_second: float = DEFAULT_FIRESTORE_WRITES_PER_SECOND

    def source(self, name: str) -> SourceConfig:
        for source in self.sources:
            if source.name == name:
                return source
        known = ", ".join(s.name for s in self.sources)
        raise ConfigError("sources", name, f"is not a configured source (known: {known})")

    def sources_for_instance(self, instance: str) -> tuple[SourceConfig, ...]:
        return tuple(s for s in self.sources if s.instance == instance)

    def instances(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.instance for s in self.sources))


class _Object:
    """One JSON object being read at a field path: typed getters, and rejection of keys nobody read."""

    def __init__(self, doc: object, path: str, known: tuple[str, ...]) -> None:
        if not isinstance(doc, dict):
            raise ConfigError(path or "(config)", doc, "is not a JSON object")
        self.doc = doc
        self.path = path
        for key in doc:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                advice = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"
                raise ConfigError(path or "(config)", key, f"is not a known key; {advice}")

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ..., rule: str | None = None) -> Any:
        if key not in self.doc:
            if default is ...:
                raise ConfigError(self.at(key), None, "is missing (required)")
            return default
        return _check(self.doc[key], self.at(key), kind, rule)

    def obj(self, key: str, known: tuple[str, ...]) -> _Object:
        return _Object(self.doc.get(key, {}), self.at(key), known)


_KIND_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    list: "a list",
    dict: "an object",
}


def _check(value: object, path: str, kind: type | tuple[type, ...], rule: str | None = None) -> Any:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
    if not ok:
        raise ConfigError(path, value, f"is not {' or '.join(_KIND_NAMES[k] for k in kinds)}")
    if rule is not None:
        pattern, problem = _RULES[rule]
        if not pattern.fullmatch(value):  # type: ignore[arg-type]
            raise ConfigError(path, value, problem)
    return value


def _positive(obj: _Object, key: str, default: float, *, integer: bool = False, maximum: float | None = None) -> Any:
    value = obj.get(key, int if integer else (int, float), default)
    if value <= 0 or (maximum is not None and value > maximum):
        bound = f" and at most {maximum}" if maximum is not None else ""
        raise ConfigError(obj.at(key), value, f"is not a positive {'integer' if integer else 'number'}{bound}")
    return value


def _via(path: str, value: object, parse: Callable[[Any], Any]) -> Any:
    """Run a windows parser and re-raise its WindowError under the config path."""
    try:
        return parse(value)
    except WindowError as e:
        raise ConfigError(path, value, e.problem, hint=e.hint or None) from e


def _csv(obj: _Object) -> CsvOptions:
    return CsvOptions(
        escape=obj.get("escape", str, "22", "hex").upper(),
        quote=obj.get("quote", str, "22", "hex").upper(),
        fields_terminated_by=obj.get("fields_terminated_by", str, "2C", "hex").upper(),
        gzip=obj.get("gzip", bool, False),
    )


_PACK_KEYS = ("max_windows", "target_bytes", "op_overhead_seconds", "export_bytes_per_second", "overhead_share")
MAX_PACK_WINDOWS = 500
"""Most windows one pack may cover: each adds its query to one selectQuery, and its done mark to the one Firestore
commit that marks the pack's windows done (at most 500 writes)."""


def _pack(obj: _Object) -> PackSettings:
    """`worker.pack` (shared/core/packing.py): how catch-up and backfill windows are packed into one export."""
    default = PackSettings()
    settings = PackSettings(
        max_windows=_positive(obj, "max_windows", default.max_windows, integer=True, maximum=MAX_PACK_WINDOWS),
        target_bytes=_positive(obj, "target_bytes", default.target_bytes, integer=True),
        op_overhead_seconds=_positive(obj, "op_overhead_seconds", default.op_overhead_seconds),
        export_bytes_per_second=_positive(obj, "export_bytes_per_second", default.export_bytes_per_second),
        overhead_share=_positive(obj, "overhead_share", default.overhead_share, maximum=1),
    )
    if settings.overhead_share >= 1:
        raise ConfigError(
            obj.at("overhead_share"),
            settings.overhead_share,
            "is not below 1 (the share of a pack's time its fixed overhead may take)",
            hint="e.g. 0.1; set worker.pack.max_windows to 1 to turn packing off",
        )
    return settings


def _table(obj: _Object) -> TableConfig:
    name = obj.get("name", str, rule="identifier")
    params_obj = obj.get("params", dict, {})
    for key, value in params_obj.items():
        path = f"{obj.at('params')}.{key}"
        _check(key, obj.at("params"), str, "identifier")
        if isinstance(value, str):
            _check(value, path, str, "identifier")
        elif not isinstance(value, int | float | bool):
            raise ConfigError(path, value, "is not an identifier string, a number or true or false")
    return TableConfig(
        name=name,
        template=obj.get("template", str, f"{name}.sql", "template"),
        watermark_column=obj.get("watermark_column", str, "event_timestamp", "identifier"),
        params=dict(params_obj),
        verify_template=obj.get("verify_template", str, "verify.sql", "template"),
    )


def _verify_rules(obj: _Object, schedule: Schedule) -> tuple[VerifyRule, ...]:
    rules_doc = obj.get("verify", list, [])
    rules = []
    for i, rule_doc in enumerate(rules_doc):
        rule = _Object(rule_doc, f"{obj.at('verify')}[{i}]", ("every", "lookback"))
        every = _via(rule.at("every"), rule.get("every", str), parse_duration)
        lookback = _via(rule.at("lookback"), rule.get("lookback", str), parse_duration)
        step = schedule.step_seconds
        for key, value in (("every", every), ("lookback", lookback)):
            seconds = int(value.total_seconds())
            if seconds <= 0 or (step is not None and seconds % step):
                raise ConfigError(
                    rule.at(key),
                    rule.doc[key],
                    f"is not a positive whole number of the source's {schedule.text!r} windows",
                    hint='e.g. {"every": "1h", "lookback": "6h"} for an hourly source',
                )
        rules.append(VerifyRule(every, lookback))
    return tuple(rules)


_TABLE_KEYS = ("name", "template", "watermark_column", "params", "verify_template")
_SOURCE_KEYS = (
    "name", "instance", "database", "schema", "interval", "settle", "catchup_cap", "start", "offload", "csv",
    "schema_template", "tables", "verify",
)  # fmt: skip


def _source(obj: _Object) -> SourceConfig:
    interval = obj.get("interval", str)
    schedule = _via(obj.at("interval"), interval, Schedule.parse)
    start_text = obj.get("start", str, None)
    start = None
    if start_text is not None:
        start = _via(obj.at("start"), start_text, lambda v: parse_timestamp(v, "start"))
        if not schedule.is_boundary(start):
            raise ConfigError(
                obj.at("start"),
                start_text,
                f"is not on the {interval!r} grid (nearest grid points {schedule.floor(start).isoformat()} "
                f"and {schedule.next_boundary(start).isoformat()})",
            )
    tables_doc = obj.get("tables", list)
    if not tables_doc:
        raise ConfigError(obj.at("tables"), tables_doc, "is empty; list at least one table")
    tables = tuple(_table(_Object(t, f"{obj.at('tables')}[{i}]", _TABLE_KEYS)) for i, t in enumerate(tables_doc))
    seen: set[str] = set()
    for i, table in enumerate(tables):
        if table.name in seen:
            raise ConfigError(f"{obj.at('tables')}[{i}].name", table.name, "is listed twice in this source")
        seen.add(table.name)
    return SourceConfig(
        name=obj.get("name", str, rule="identifier"),
        instance=obj.get("instance", str, rule="instance"),
        database=obj.get("database", str, rule="identifier"),
        schema=obj.get("schema", str, "public", "identifier"),
        interval=schedule.text,
        settle=_via(obj.at("settle"), obj.get("settle", str, "5m"), parse_duration),
        catchup_cap=_positive(obj, "catchup_cap", 48, integer=True),
        start=start,
        offload=obj.get("offload", bool, False),
        csv=_csv(obj.obj("csv", ("escape", "quote", "fields_terminated_by", "gzip"))),
        tables=tables,
        schema_template=obj.get("schema_template", str, "schema.sql", "template"),
        verify=_verify_rules(obj, schedule),
    )


def _check_sources(sources: tuple[SourceConfig, ...], layout: KeyLayout) -> None:
    by_name: dict[str, int] = {}
    by_database: dict[tuple[str, str], str] = {}
    by_table: dict[str, str] = {}
    for i, source in enumerate(sources):
        if source.name in by_name:
            raise ConfigError(
                f"sources[{i}].name", source.name, f"is already the name of sources[{by_name[source.name]}]"
            )
        by_name[source.name] = i
        pair = (source.instance, source.database)
        if pair in by_database:
            raise ConfigError(
                f"sources[{i}]",
                f"{source.instance}/{source.database}",
                f"is the same instance and database as source {by_database[pair]!r}",
                hint="list all of that database's tables in one source",
            )
        by_database[pair] = source.name
        for table in source.tables:
            other = by_table.setdefault(table.name, source.name)
            if other != source.name and layout.table == DEFAULT_TABLE_LAYOUT:
                raise ConfigError(
                    "layout.table",
                    layout.table,
                    f"puts table {table.name!r} of sources {other!r} and {source.name!r} under the same keys",
                    hint="set layout.table to a template that uses {{ source }}, "
                    "e.g. {{ root }}/raw/{{ source }}/{{ table }}/... (see templates/keys/table.j2)",
                )


_POLL_BUDGET_KEYS = ("poll_window_calls", "poll_spread", "poll_sparse_seconds", "api_calls_per_minute")
MAX_POLL_WINDOW_CALLS = 100
MIN_API_CALLS_PER_MINUTE = 6
"""Below this a chain could not even submit and poll one export a minute."""


def _poll_budget(obj: _Object) -> dict[str, Any]:
    """The predictive polling and call budget settings of `worker` (shared/app/polling.py, shared/app/budget.py)."""
    calls = obj.get("poll_window_calls", int, 10)
    if not 0 <= calls <= MAX_POLL_WINDOW_CALLS:
        raise ConfigError(
            obj.at("poll_window_calls"),
            calls,
            f"is not an integer from 0 to {MAX_POLL_WINDOW_CALLS}",
            hint="0 turns the forecast off (polls then follow the growing schedule only)",
        )
    budget = _positive(obj, "api_calls_per_minute", 150)
    if budget < MIN_API_CALLS_PER_MINUTE:
        raise ConfigError(
            obj.at("api_calls_per_minute"),
            budget,
            f"is below {MIN_API_CALLS_PER_MINUTE}: a chain could not submit and poll one export a minute",
            hint="set the Admin API calls per minute all chains may spend, e.g. 150 under the default quota of 180",
        )
    return {
        "poll_window_calls": calls,
        "poll_spread": _positive(obj, "poll_spread", 0.05, maximum=1),
        "poll_sparse_seconds": _positive(obj, "poll_sparse_seconds", 60),
        "api_calls_per_minute": budget,
    }


def parse_config(doc: dict[str, Any], *, sqladmin_endpoint: str | None = None) -> Config:
    """Validate a config document (see the module docstring). Pure: reads no files and no environment."""
    top = _Object(
        doc,
        "",
        ("project", "region", "bucket", "root", "firestore", "topics", "layout", "backfill", "worker",
         "lag_alert_seconds", "sources"),
    )  # fmt: skip
    firestore = top.obj("firestore", ("database", "prefix", "writes_per_second"))
    topics = top.obj("topics", ("ticks", "work"))
    layout_obj = top.obj("layout", ("table", "schema", "manifest", "verify"))
    layout = KeyLayout(
        table=layout_obj.get("table", str, DEFAULT_TABLE_LAYOUT, "template"),
        schema=layout_obj.get("schema", str, DEFAULT_SCHEMA_LAYOUT, "template"),
        manifest=layout_obj.get("manifest", str, DEFAULT_MANIFEST_LAYOUT, "template"),
        verify=layout_obj.get("verify", str, DEFAULT_VERIFY_LAYOUT, "template"),
    )
    worker_obj = top.obj(
        "worker",
        ("budget_seconds", "lease_seconds", "max_attempts", "poll_initial_seconds", "poll_max_seconds",
         "poll_fraction", "retry_base_seconds", "retry_max_seconds", "stuck_factor", "stuck_min_seconds",
         "pack", *_POLL_BUDGET_KEYS),
    )  # fmt: skip
    worker = WorkerSettings(
        budget_seconds=_positive(worker_obj, "budget_seconds", 300, maximum=MAX_FUNCTION_SECONDS),
        lease_seconds=_positive(worker_obj, "lease_seconds", 60),
        max_attempts=_positive(worker_obj, "max_attempts", 3, integer=True),
        poll_initial_seconds=_positive(worker_obj, "poll_initial_seconds", 0.05),
        poll_max_seconds=_positive(worker_obj, "poll_max_seconds", 5),
        poll_fraction=_positive(worker_obj, "poll_fraction", 0.05, maximum=1),
        retry_base_seconds=_positive(worker_obj, "retry_base_seconds", 5),
        retry_max_seconds=_positive(worker_obj, "retry_max_seconds", 300),
        stuck_factor=_positive(worker_obj, "stuck_factor", 10),
        stuck_min_seconds=_positive(worker_obj, "stuck_min_seconds", 600),
        pack=_pack(worker_obj.obj("pack", _PACK_KEYS)),
        **_poll_budget(worker_obj),
    )
    for low, high in (
        ("poll_initial_seconds", "poll_max_seconds"),
        ("retry_base_seconds", "retry_max_seconds"),
    ):
        if getattr(worker, low) > getattr(worker, high):
            raise ConfigError(worker_obj.at(low), getattr(worker, low), f"is larger than worker.{high}")
    sources_doc = top.get("sources", list)
    if not sources_doc:
        raise ConfigError("sources", sources_doc, "is empty; list at least one source")
    sources = tuple(_source(_Object(s, f"sources[{i}]", _SOURCE_KEYS)) for i, s in enumerate(sources_doc))
    _check_sources(sources, layout)
    if sqladmin_endpoint is not None:
        _check(sqladmin_endpoint, "CDC_SQLADMIN_ENDPOINT", str, "endpoint")
    return Config(
        project=top.get("project", str, rule="project"),
        region=top.get("region", str, rule="region"),
        bucket=top.get("bucket", str, rule="bucket"),
        root=top.get("root", str, "cdc", "prefix"),
        firestore_database=firestore.get("database", str, "(default)", "firestore_database"),
        firestore_prefix=firestore.get("prefix", str, "cdc_", "collection_prefix"),
        ticks_topic=topics.get("ticks", str, "cdc-ticks", "topic"),
        work_topic=topics.get("work", str, "cdc-work", "topic"),
        layout=layout,
        backfill_max_windows=_positive(top.obj("backfill", ("max_windows",)), "max_windows", 2000, integer=True),
        worker=worker,
        lag_alert_seconds=_positive(top, "lag_alert_seconds", 7200),
        sqladmin_endpoint=sqladmin_endpoint,
        sources=sources,
        firestore_writes_per_second=_positive(firestore, "writes_per_second", DEFAULT_FIRESTORE_WRITES_PER_SECOND),
    )
