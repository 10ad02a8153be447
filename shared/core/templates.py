"""Jinja2 templates under `templates/`: the export queries, the schema query and the object-key layouts.

SQL context (exactly DESIGN.md's): `low_watermark`, `high_watermark` (UTC pendulum DateTimes; write them as
`TIMESTAMPTZ '{{ low_watermark.isoformat() }}'`), `execution_date` (= low), `ts_nodash`, `ds`, `table` (not
defined for the schema query), `database`, `schema`, `tables` (the source's table names) and `params`
(`watermark_column`, then the table's config params, then the caller's). Undefined names fail the render
(StrictUndefined) with the template's name. A rendered query becomes one SELECT (or WITH) statement on one
line: comments dropped, whitespace outside string literals collapsed, one trailing ';' removed.

Key layouts get the same window variables plus `root`, `source`, `database`, `schema` and, for table keys,
`table`. A layout renders the key *without* its extension: the code appends `.csv` / `.csv.gz` / `.json`,
and for generation > 1 inserts `.g<N>` before it, so a retried or forced re-export never hits an existing
object (the export API refuses to overwrite).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import pendulum

from shared.core.columns import QueryShape, UnknownColumns, query_shape
from shared.core.errors import ConfigError, TemplateError
from shared.core.windows import Window

if TYPE_CHECKING:
    from shared.core.config import Config, SourceConfig, TableConfig

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates"
MAX_KEY_BYTES = 1024
_KEY_RE = re.compile(r"[A-Za-z0-9_.=+-]+(/[A-Za-z0-9_.=+-]+)*")
_FIRST_WORD_RE = re.compile(r"(?i)(select|with)\b")
_SAMPLE_LOW = pendulum.datetime(2026, 1, 1, tz="UTC")


def _word_char(sql: str, i: int) -> bool:
    return i >= 0 and (sql[i].isalnum() or sql[i] in "_$")


def _one_line(sql: str) -> str:
    """One statement on one line. Raises ValueError(reason).

    A small scanner rather than regexes, so a ';', '--' or newline inside a string literal ('...', E'...'
    with backslash escapes, "quoted identifiers", $tag$dollar quotes$tag$) is not mistaken for syntax.
    """
    out: list[str] = []
    i, n = 0, len(sql)
    pending_space = False
    statement_ended = False

    def emit(text: str) -> None:
        nonlocal pending_space
        if statement_ended:
            raise ValueError("renders a second statement after ';'")
        if pending_space and out:
            out.append(" ")
        pending_space = False
        out.append(text)

    while i < n:
        ch = sql[i]
        if ch.isspace():
            pending_space = True
            i += 1
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end
            pending_space = True
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            if end < 0:
                raise ValueError("has an unterminated /* comment")
            i = end + 2
            pending_space = True
        elif ch == ";":
            statement_ended = True
            i += 1
        elif ch in "'\"" or (ch in "eE" and sql.startswith("'", i + 1) and not _word_char(sql, i - 1)):
            start = i
            backslash = ch in "eE"
            if backslash:
                i += 1
            quote = sql[i]
            i += 1
            while True:
                if i >= n:
                    raise ValueError(f"has an unterminated {quote} literal starting {sql[start : start + 20]!r}")
                if backslash and sql[i] == "\\":
                    i += 2
                    continue
                if sql[i] == quote:
                    if sql.startswith(quote, i + 1):
                        i += 2
                        continue
                    i += 1
                    break
                i += 1
            literal = sql[start:i]
            if "\n" in literal or "\r" in literal:
                raise ValueError(f"has a string literal spanning lines: {literal[:30]!r}")
            emit(literal)
        elif ch == "$" and (m := re.match(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$", sql[i:])):
            tag = m.group(0)
            end = sql.find(tag, i + len(tag))
            if end < 0:
                raise ValueError(f"has an unterminated {tag} literal")
            literal = sql[i : end + len(tag)]
            if "\n" in literal or "\r" in literal:
                raise ValueError(f"has a string literal spanning lines: {literal[:30]!r}")
            emit(literal)
            i = end + len(tag)
        else:
            j = i + 1
            while j < n and not sql[j].isspace() and sql[j] not in "'\";$" and not sql.startswith(("--", "/*"), j):
                j += 1
            emit(sql[i:j])
            i = j
    query = "".join(out)
    if not query:
        raise ValueError("renders an empty query")
    if not _FIRST_WORD_RE.match(query):
        raise ValueError(f"does not start with SELECT or WITH: {query[:40]!r}")
    return query


def export_uri(config: Config, key: str) -> str:
    return f"gs://{config.bucket}/{key}"


class Templates:
    """The loader over one template root; one per process is enough (Jinja caches compiled templates)."""

    def __init__(self, root: Path = TEMPLATES_DIR) -> None:
        self.root = Path(root)
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(self.root),
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            keep_trailing_newline=False,
        )

    export_uri = staticmethod(export_uri)  # also reachable as Templates.export_uri / templates.export_uri

    def _render(self, name: str, context: Mapping[str, Any]) -> str:
        try:
            return self.env.get_template(name).render(context)
        except jinja2.TemplateNotFound as e:
            raise TemplateError(name, f"does not exist under {self.root}") from e
        except jinja2.UndefinedError as e:
            raise TemplateError(name, f"uses an undefined variable: {e.message}") from e
        except jinja2.TemplateSyntaxError as e:
            raise TemplateError(name, f"has a syntax error at line {e.lineno}: {e.message}") from e
        except Exception as e:  # anything a template expression can raise (e.g. a method on a None)
            raise TemplateError(name, f"failed to render: {type(e).__name__}: {e}") from e

    @staticmethod
    def _window_context(window: Window) -> dict[str, Any]:
        return {
            "low_watermark": window.low,
            "high_watermark": window.high,
            "execution_date": window.logical_date,
            "ts_nodash": window.ts_nodash,
            "ds": window.ds,
        }

    def _query(self, name: str, context: Mapping[str, Any]) -> str:
        try:
            return _one_line(self._render(name, context))
        except ValueError as e:
            raise TemplateError(name, str(e), hint="a template must render exactly one SELECT statement") from e

    def render_query(
        self,
        source: SourceConfig,
        table: TableConfig | str,
        window: Window,
        params: Mapping[str, Any] | None = None,
    ) -> str:
        """The export query of one table for one window: one SELECT on one line, no trailing ';'."""
        table_config = source.table(table) if isinstance(table, str) else table
        context = {
            **self._window_context(window),
            "table": table_config.name,
            "database": source.database,
            "schema": source.schema,
            "tables": source.table_names,
            "params": {
                "watermark_column": table_config.watermark_column,
                **table_config.params,
                **(params or {}),
            },
        }
        return self._query(table_config.template, context)

    def render_verify_query(self, source: SourceConfig, table: TableConfig | str, windows: Sequence[Window]) -> str:
        """The verification query of a table over consecutive windows (templates/verify.sql, or the table's
        `verify_template`): per window, the source's row count and checksum. Context: the range's window variables
        (low = the first window's low, high = the last's high), `table`, `database`, `schema`, `tables`, `params`,
        and `windows` (each with `low` and `high`)."""
        table_config = source.table(table) if isinstance(table, str) else table
        context = {
            **self._window_context(Window(windows[0].low, windows[-1].high)),
            "table": table_config.name,
            "database": source.database,
            "schema": source.schema,
            "tables": source.table_names,
            "windows": list(windows),
            "params": {"watermark_column": table_config.watermark_column, **table_config.params},
        }
        return self._query(table_config.verify_template, context)

    def output_shape(self, source: SourceConfig, table: TableConfig | str, window: Window) -> QueryShape:
        """The output columns of a table's export query (shared/core/columns.py); TemplateError, naming the
        template and the column, when they cannot be known without running the query."""
        table_config = source.table(table) if isinstance(table, str) else table
        try:
            return query_shape(self.render_query(source, table_config, window))
        except UnknownColumns as e:
            raise TemplateError(
                table_config.template, str(e), hint="the manifest must name every column of the CSV exactly"
            ) from e

    def snapshot_tables(self, source: SourceConfig, window: Window) -> tuple[str, ...]:
        """The tables the window's schema snapshot describes: the source's, then any other table a template reads."""
        names = list(source.table_names)
        for table in source.tables:
            try:
                read = self.output_shape(source, table, window).tables
            except TemplateError:
                continue  # that table's tasks fail with the template's error; the snapshot serves the others
            names.extend(t for t in read if t not in names)
        return tuple(names)

    def render_schema_query(self, source: SourceConfig, window: Window, params: Mapping[str, Any] | None = None) -> str:
        """The information_schema.columns query for the tables the exports read (its CSV types the columns)."""
        context = {
            **self._window_context(window),
            "database": source.database,
            "schema": source.schema,
            "tables": self.snapshot_tables(source, window),
            "params": dict(params or {}),
        }
        return self._query(source.schema_template, context)

    def _key(self, name: str, context: Mapping[str, Any], extension: str, generation: int, marker: str = "g") -> str:
        """The rendered stem plus `.<marker><N>` for N > 1 (an object's generation, a manifest's version)."""
        if not isinstance(generation, int) or isinstance(generation, bool) or generation < 1:
            raise TemplateError(
                name, f"{'generation' if marker == 'g' else 'version'} {generation!r} is not a positive integer"
            )
        stem = self._render(name, context).strip()
        encoded = stem.encode()
        if not _KEY_RE.fullmatch(stem) or len(encoded) > MAX_KEY_BYTES - 32:
            raise TemplateError(
                name,
                f"renders {stem[:80]!r}, not an object key (segments of A-Z a-z 0-9 _ . = + - joined by '/', "
                "no leading, trailing or double '/', no spaces)",
            )
        if any(part in (".", "..") for part in stem.split("/")):
            raise TemplateError(name, f"renders {stem[:80]!r}, which has a '.' or '..' segment")
        return f"{stem}.{marker}{generation}{extension}" if generation > 1 else f"{stem}{extension}"

    def _key_context(self, config: Config, source: SourceConfig, window: Window) -> dict[str, Any]:
        return {
            **self._window_context(window),
            "root": config.root,
            "source": source.name,
            "database": source.database,
            "schema": source.schema,
        }

    def object_key(
        self,
        config: Config,
        source: SourceConfig,
        table_name: str | None,
        window: Window,
        generation: int = 1,
    ) -> str:
        """Key of a table's export (table_name given) or of the window's schema export (table_name None)."""
        extension = ".csv.gz" if source.csv.gzip else ".csv"
        context = self._key_context(config, source, window)
        if table_name is None:
            return self._key(config.layout.schema, context, extension, generation)
        context["table"] = source.table(table_name).name
        return self._key(config.layout.table, context, extension, generation)

    def verify_key(self, config: Config, source: SourceConfig, table: str, window: Window, generation: int = 1) -> str:
        """Key of a table's verification export over `window` (a range of the source's windows)."""
        context = {**self._key_context(config, source, window), "table": source.table(table).name}
        extension = ".csv.gz" if source.csv.gzip else ".csv"
        return self._key(config.layout.verify, context, extension, generation)

    def manifest_key(self, config: Config, source: SourceConfig, window: Window, version: int = 1) -> str:
        """Key of a window's manifest; version N > 1 (after re-exports) inserts `.v<N>`: a manifest is never
        replaced, so writing one needs `storage.objects.create` only."""
        return self._key(config.layout.manifest, self._key_context(config, source, window), ".json", version, "v")

    def validate(self, config: Config) -> None:
        """Render every template of the config once, for a sample window, so that a missing template, an
        undefined variable or two sources writing to the same keys fail at cold start, not at first export."""
        window = Window(_SAMPLE_LOW, _SAMPLE_LOW.add(hours=1))
        owners: dict[str, tuple[str, str]] = {}

        def claim(key: str, owner: str, layout_field: str) -> None:
            if key in owners and owners[key][0] != owner:
                raise ConfigError(
                    f"layout.{layout_field}",
                    getattr(config.layout, layout_field),
                    f"renders the same key {key!r} for {owners[key][0]} and {owner}",
                    hint="use {{ source }} in the layout, e.g. {{ root }}/raw/{{ source }}/{{ table }}/...",
                )
            owners[key] = (owner, layout_field)

        for source in config.sources:
            self.render_schema_query(source, window)
            claim(self.object_key(config, source, None, window), f"source {source.name!r} schema", "schema")
            claim(self.manifest_key(config, source, window), f"source {source.name!r} manifest", "manifest")
            for table in source.tables:
                self.output_shape(source, table, window)
                claim(
                    self.object_key(config, source, table.name, window),
                    f"{source.name}.{table.name}",
                    "table",
                )


def export_request_body(source: SourceConfig, query: str, uri: str, offload: bool) -> dict[str, Any]:
    """The body of `instances.export` (Cloud SQL Admin API v1 / v1beta4) for one CSV export.

    The CSV characters are hex strings as the API wants them.
    """
    return {
        "exportContext": {
            "fileType": "CSV",
            "uri": uri,
            "databases": [source.database],
            "offload": offload,
            "csvExportOptions": {
                "selectQuery": query,
                "escapeCharacter": source.csv.escape,
                "quoteCharacter": source.csv.quote,
                "fieldsTerminatedBy": source.csv.fields_terminated_by,
            },
        }
    }
