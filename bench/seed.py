"""The benchmark's source database: eight small event tables with an index on the event time.

The exports only have to be realistic in shape (an indexed range query, a few rows with a quote and a
comma): the emulator holds each operation for a fixed time, so the row count does not matter.
"""

from __future__ import annotations

import pendulum
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

DATABASE = "bench"
TABLES = ("clicks", "views", "signups", "logins", "searches", "carts", "checkouts", "refunds")
ROWS_PER_HOUR = 6


def seed(dsn: str, start: pendulum.DateTime, hours: int) -> int:
    """(Re)create the database with every table holding ROWS_PER_HOUR rows per hour from `start`; rows per table."""
    with psycopg.connect(make_conninfo(dsn, dbname="postgres"), autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    rows = hours * ROWS_PER_HOUR
    step_seconds = 3600 // ROWS_PER_HOUR
    with psycopg.connect(make_conninfo(dsn, dbname=DATABASE), autocommit=True) as conn:
        for table in TABLES:
            name = sql.Identifier(table)
            conn.execute(
                sql.SQL(
                    "CREATE TABLE {} (id bigint PRIMARY KEY, event_timestamp timestamptz NOT NULL, "
                    "kind text, payload text)"
                ).format(name)
            )
            conn.execute(sql.SQL("CREATE INDEX ON {} (event_timestamp)").format(name))
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} SELECT g, %s::timestamptz + (g - 1) * %s * interval '1 second', "
                    "%s, 'row ' || g || ', \"quoted\"' FROM generate_series(1, %s) g"
                ).format(name),
                (start, step_seconds, table, rows),
            )
    return rows
