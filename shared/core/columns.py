"""The columns of an export, exactly as they appear in its CSV: the query's output list, in order, with types.

An export's CSV has no header, and a template may reorder, subset, rename or compute columns, so the table's
definition does not describe it. The rendered query is parsed (sqlglot, PostgreSQL dialect) into one spec per
output column, named by PostgreSQL's own rules (an alias; else the column's name, also through a cast; else the
function's name; else `?column?`), and typed by:
- a column of a table: its type in the window's schema snapshot (information_schema.columns);
- an explicit cast (`expr::numeric`, `CAST(expr AS text)`): the cast's type;
- a literal: its type (text, integer, numeric, boolean).
`*` and `t.*` expand to the table's columns in their ordinal order. Anything else (a function or an expression
without a cast, a subquery in FROM that `*` would expand) cannot be known without running it: the template is
refused at config validation and by `cdc render`, naming the output column and the fix, and no manifest is
written for it — a manifest never guesses.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import sqlglot
from sqlglot import exp

UNKNOWN_NAME = "?column?"

# sqlglot's type names -> the names information_schema.columns.data_type uses (so a cast reads like a column).
_TYPE_NAMES = {
    "BIGINT": "bigint",
    "INT": "integer",
    "SMALLINT": "smallint",
    "DECIMAL": "numeric",
    "DOUBLE": "double precision",
    "FLOAT": "real",
    "BOOLEAN": "boolean",
    "TEXT": "text",
    "VARCHAR": "character varying",
    "CHAR": "character",
    "DATE": "date",
    "TIMESTAMP": "timestamp without time zone",
    "TIMESTAMPTZ": "timestamp with time zone",
    "TIME": "time without time zone",
    "TIMETZ": "time with time zone",
    "INTERVAL": "interval",
    "JSON": "json",
    "JSONB": "jsonb",
    "UUID": "uuid",
    "VARBINARY": "bytea",
    "ARRAY": "ARRAY",
}


@dataclass(frozen=True)
class Star:
    """`*` (table None: every table of FROM, in order) or `t.*`."""

    table: str | None


@dataclass(frozen=True)
class Ref:
    """A table's column, under an output name; `cast` overrides the column's type."""

    name: str
    table: str | None
    column: str
    cast: str | None = None


@dataclass(frozen=True)
class Typed:
    """A computed column whose type the query states."""

    name: str
    type: str


Spec = Star | Ref | Typed


@dataclass(frozen=True)
class QueryShape:
    """What the CSV of a query holds: its output specs and the tables of its FROM clause, in order."""

    specs: tuple[Spec, ...]
    tables: tuple[str, ...]


class UnknownColumns(ValueError):
    """The query's output columns cannot be known without running it; the message names the column and the fix."""


def _ident(node: exp.Identifier | None) -> str:
    """PostgreSQL folds unquoted identifiers to lower case."""
    if node is None:
        return ""
    return node.name if node.quoted else node.name.lower()


def _type_name(data_type: exp.DataType) -> str:
    if data_type.is_type(exp.DataType.Type.ARRAY) or (data_type.expressions and data_type.this.name == "ARRAY"):
        return "ARRAY"
    return _TYPE_NAMES.get(data_type.this.name, data_type.sql("postgres").lower())


def _literal_type(node: exp.Literal | exp.Boolean) -> str:
    if isinstance(node, exp.Boolean):
        return "boolean"
    if node.is_string:
        return "text"
    return "numeric" if any(c in node.this for c in ".eE") else "integer"


def _figure_name(node: exp.Expression) -> str:
    """The name PostgreSQL gives an unaliased output column (FigureColname)."""
    if isinstance(node, exp.Column):
        return _ident(node.this)
    if isinstance(node, exp.Cast):
        inner = _figure_name(node.this)
        return inner if inner != UNKNOWN_NAME else _type_name(node.to)
    if isinstance(node, exp.Func):
        return (node.sql_name() if not isinstance(node, exp.Anonymous) else node.name).lower()
    if isinstance(node, exp.Case):
        return "case"
    return UNKNOWN_NAME


@dataclass(frozen=True)
class _From:
    """The relations of a FROM clause: real tables by alias, and whether a subquery or CTE is among them."""

    tables: dict[str, str]
    opaque: bool

    def table_of(self, column: exp.Column) -> tuple[bool, str | None]:
        """(known, table) for a column reference: known when it can only come from a real table."""
        qualifier = _ident(column.args.get("table"))
        if qualifier:
            return qualifier in self.tables, self.tables.get(qualifier)
        return not self.opaque, None


def _unknown(index: int, value: exp.Expression, name: str) -> UnknownColumns:
    text = value.sql("postgres")
    alias = name if name != UNKNOWN_NAME else f"c{index}"
    return UnknownColumns(
        f"output column {index} ({text[:60]}) has no type the project can know without running the query; "
        f"cast it and name it, e.g. ({text[:40]})::text AS {alias}"
    )


def _spec(index: int, node: exp.Expression, relations: _From) -> Spec:
    alias = _ident(node.args.get("alias")) if isinstance(node, exp.Alias) else None
    value = node.this if isinstance(node, exp.Alias) else node
    if isinstance(value, exp.Star) or (isinstance(value, exp.Column) and isinstance(value.this, exp.Star)):
        known, table = relations.table_of(value) if isinstance(value, exp.Column) else (not relations.opaque, None)
        if not known:
            raise UnknownColumns(f"output column {index} expands * over a subquery or CTE; list its columns instead")
        return Star(table)
    name = alias or _figure_name(value)
    if isinstance(value, exp.Column):
        known, table = relations.table_of(value)
        if not known:
            raise _unknown(index, value, name)
        return Ref(name, table, _ident(value.this))
    if isinstance(value, exp.Cast):
        if isinstance(value.this, exp.Column) and relations.table_of(value.this)[0]:
            return Ref(name, relations.table_of(value.this)[1], _ident(value.this.this), _type_name(value.to))
        return Typed(name, _type_name(value.to))
    if isinstance(value, exp.Literal | exp.Boolean):
        return Typed(name, _literal_type(value))
    raise _unknown(index, value, name)


QUERY_SHAPES_CACHED = 4096
"""Rendered queries whose shape a process keeps: each window renders its own text (its bounds), and a window's
bookkeeping asks for each table's shape several times (the schema query's tables, the manifest's columns, schema
drift), so a pack's windows stay cached from one step to the next."""


@functools.lru_cache(maxsize=QUERY_SHAPES_CACHED)
def query_shape(sql: str) -> QueryShape:
    """Parse a rendered export query; raises UnknownColumns (a ValueError) when its columns cannot be known.

    Cached by the query's exact text: the shape is a function of the text alone and is immutable, so a cached shape
    is the one a new parse gives (a query that cannot be known is parsed again each time, and raises again)."""
    try:
        tree = sqlglot.parse_one(sql, read="postgres")
    except sqlglot.errors.ParseError as e:
        raise UnknownColumns(f"cannot be parsed to find its output columns: {str(e).splitlines()[0]}") from e
    select = tree if isinstance(tree, exp.Select) else tree.find(exp.Select)
    if select is None or isinstance(tree, exp.Union):
        raise UnknownColumns("is not a single SELECT whose output columns can be read (a UNION, or no SELECT)")
    ctes = {_ident(cte.args["alias"].this) for cte in tree.find_all(exp.CTE)}
    clause = select.args.get("from_")
    relations = [clause.this] if clause is not None else []
    relations += [join.this for join in select.args.get("joins") or []]
    tables: list[str] = []
    by_alias: dict[str, str] = {}
    opaque = False
    for relation in relations:
        name = _ident(relation.this) if isinstance(relation, exp.Table) else ""
        if not name or name in ctes:
            opaque = True
            continue
        tables.append(name)
        by_alias[name] = name
        if relation.args.get("alias") is not None:
            by_alias[_ident(relation.args["alias"].this)] = name
    from_ = _From(by_alias, opaque)
    specs = tuple(_spec(i, node, from_) for i, node in enumerate(select.expressions, start=1))
    return QueryShape(specs, tuple(tables))


def resolve(shape: QueryShape, snapshot: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The CSV's columns (name, type, nullable) from the window's schema snapshot; raises UnknownColumns when a
    table or column the query names is not in it."""

    def table_columns(table: str) -> list[dict[str, Any]]:
        if table not in snapshot:
            raise UnknownColumns(f"reads table {table!r}, which the window's schema snapshot does not describe")
        return snapshot[table]

    def find(table: str | None, column: str) -> dict[str, Any]:
        candidates = [table] if table else list(shape.tables)
        for name in candidates:
            for col in table_columns(name):
                if col["name"] == column:
                    return col
        raise UnknownColumns(f"selects column {column!r}, which is not in {', '.join(candidates) or 'its FROM'}")

    columns: list[dict[str, Any]] = []
    for spec in shape.specs:
        if isinstance(spec, Star):
            for table in [spec.table] if spec.table else shape.tables:
                columns.extend(
                    {"name": c["name"], "type": c["type"], "nullable": c["nullable"]} for c in table_columns(table)
                )
        elif isinstance(spec, Ref):
            col = find(spec.table, spec.column)
            columns.append({"name": spec.name, "type": spec.cast or col["type"], "nullable": col["nullable"]})
        else:
            columns.append({"name": spec.name, "type": spec.type, "nullable": True})
    return columns
