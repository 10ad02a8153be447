"""The demo source database: four event tables with awkward values and rows on window boundaries.

`seed()` (re)creates the database and fills about `rows_per_table` rows per table, spread over `hours`
hours from `start`, deterministic (no randomness), including NULLs, quotes, commas, backslashes,
embedded newlines, unicode, empty strings, and rows exactly on, just before and just after each hour.
`source_rows()` reads a window back as text, the way the export writes it, for reconciliation.
"""

from __future__ import annotations

import pendulum
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

TABLES: dict[str, list[str]] = {
    "orders": ["id", "event_timestamp", "customer_id", "amount", "currency", "note"],
    "payments": ["id", "event_timestamp", "order_id", "method", "amount", "status"],
    "shipments": ["id", "event_timestamp", "order_id", "carrier", "address", "delivered_at"],
    "page_views": ["id", "event_timestamp", "session_id", "url", "referrer", "user_agent"],
}

_DDL = """
CREATE TABLE orders (id bigint PRIMARY KEY, event_timestamp timestamptz NOT NULL, customer_id bigint,
    amount numeric(12,2), currency text, note text);
CREATE TABLE payments (id bigint PRIMARY KEY, event_timestamp timestamptz NOT NULL, order_id bigint,
    method text, amount numeric(12,2), status text);
CREATE TABLE shipments (id bigint PRIMARY KEY, event_timestamp timestamptz NOT NULL, order_id bigint,
    carrier text, address text, delivered_at timestamptz);
CREATE TABLE page_views (id bigint PRIMARY KEY, event_timestamp timestamptz NOT NULL, session_id uuid,
    url text, referrer text, user_agent text);
CREATE INDEX ON orders (event_timestamp);
CREATE INDEX ON payments (event_timestamp);
CREATE INDEX ON shipments (event_timestamp);
CREATE INDEX ON page_views (event_timestamp);
"""

# One awkward text per residue: every export must carry these through byte for byte.
_AWKWARD = """CASE {g} % 9
    WHEN 0 THEN NULL
    WHEN 1 THEN 'said "hi", then left'
    WHEN 2 THEN E'two\\nlines'
    WHEN 3 THEN 'crème brûlée ☕ 東京'
    WHEN 4 THEN E'back\\\\slash \\\\N'
    WHEN 5 THEN ''
    WHEN 6 THEN 'comma, separated, value'
    WHEN 7 THEN E'tab\\there; semi'
    ELSE 'plain ' || {g} END"""

_FILL = {
    "orders": """INSERT INTO orders SELECT g, {ts}, CASE WHEN g % 11 = 0 THEN NULL ELSE g % 977 END,
        round((g % 100000) / 7.0, 2), (ARRAY['EUR','USD','GBP'])[1 + g % 3], {awk} FROM {series}""",
    "payments": """INSERT INTO payments SELECT g, {ts}, g / 2, (ARRAY['card','iban',NULL,'cash'])[1 + g % 4],
        round((g % 50000) / 3.0, 2), {awk} FROM {series}""",
    "shipments": """INSERT INTO shipments SELECT g, {ts}, g / 3, (ARRAY['DHL','UPS','La Poste'])[1 + g % 3],
        {awk}, CASE WHEN g % 5 = 0 THEN NULL ELSE {ts} + interval '2 days' END FROM {series}""",
    "page_views": """INSERT INTO page_views SELECT g, {ts}, md5(g::text)::uuid,
        'https://shop.example/p/' || g || '?q=a,b&c="d"', CASE WHEN g % 3 = 0 THEN NULL ELSE {awk} END,
        {awk} FROM {series}""",
}


def _connect(dsn: str, database: str) -> psycopg.Connection:
    """Connect to `database` on the server that `dsn` names (any dbname in `dsn` is replaced)."""
    return psycopg.connect(make_conninfo(dsn, dbname=database), autocommit=True)


def seed(
    dsn: str,
    start: pendulum.DateTime,
    *,
    hours: int = 6,
    rows_per_table: int = 25_000,
    database: str = "shop",
) -> dict[str, int]:
    """(Re)create `database` and fill it; returns rows per table."""
    with _connect(dsn, "postgres") as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    seconds = hours * 3600
    base = f"TIMESTAMPTZ '{start.isoformat()}'"
    # Spread rows evenly, each shifted by a deterministic jitter of less than half a step (so the last
    # row stays inside the range).
    step = seconds / rows_per_table
    ts = (
        f"({base} + ((g - 1) * {step!r}) * interval '1 second' "
        f"+ (((g * 7919) % 997) / 997.0 * {step / 2!r}) * interval '1 second')"
    )
    series = f"generate_series(1, {rows_per_table}) g"
    counts = {}
    with _connect(dsn, database) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        conn.execute(_DDL)
        for table, statement in _FILL.items():
            conn.execute(statement.format(ts=ts, awk=_AWKWARD.format(g="g"), series=series))
            _add_boundary_rows(conn, table, start, hours, first_id=rows_per_table + 1)
            counts[table] = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()[0]
    return counts


def _add_boundary_rows(
    conn: psycopg.Connection, table: str, start: pendulum.DateTime, hours: int, first_id: int
) -> None:
    """Rows exactly on each hour, one microsecond before and after it (inside the seeded range)."""
    columns = TABLES[table]
    next_id = first_id
    for hour in range(hours + 1):
        edge = start.add(hours=hour)
        for offset_us in (-1, 0, 1):
            moment = edge.add(microseconds=offset_us)
            if not (start <= moment < start.add(hours=hours)):
                continue
            values = [next_id, moment] + [None] * (len(columns) - 2)
            statement = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                sql.Identifier(table),
                sql.SQL(", ").join(map(sql.Identifier, columns)),
                sql.SQL(", ").join(sql.Placeholder() * len(columns)),
            )
            conn.execute(statement, values)
            next_id += 1


def insert_row(dsn: str, table: str, row_id: int, at: pendulum.DateTime, database: str = "shop") -> None:
    """One more row (e.g. a late commit during the settle delay)."""
    with _connect(dsn, database) as conn:
        conn.execute(
            sql.SQL("INSERT INTO {} (id, event_timestamp) VALUES (%s, %s)").format(sql.Identifier(table)),
            (row_id, at),
        )


def delete_one(dsn: str, table: str, low: pendulum.DateTime, high: pendulum.DateTime, database: str = "shop") -> int:
    """Delete the first row of `[low, high)` (a delete after export); returns how many rows went (0 or 1)."""
    with _connect(dsn, database) as conn:
        cur = conn.execute(
            sql.SQL(
                "DELETE FROM {t} WHERE id = (SELECT id FROM {t} WHERE event_timestamp >= %s AND event_timestamp < %s "
                "ORDER BY id LIMIT 1)"
            ).format(t=sql.Identifier(table)),
            (low, high),
        )
        return cur.rowcount


def source_rows(
    dsn: str, table: str, low: pendulum.DateTime, high: pendulum.DateTime, database: str = "shop"
) -> list[tuple[str | None, ...]]:
    """The rows of `[low, high)` with every column as PostgreSQL's text output (what COPY writes)."""
    columns = TABLES[table]
    query = sql.SQL(
        "SELECT {} FROM {} WHERE event_timestamp >= %s AND event_timestamp < %s ORDER BY event_timestamp, id"
    ).format(
        sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in columns),
        sql.Identifier(table),
    )
    with _connect(dsn, database) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        return [tuple(r) for r in conn.execute(query, (low, high)).fetchall()]
