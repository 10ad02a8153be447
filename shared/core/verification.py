"""Completeness beyond the settle delay: what a verification export says, and which windows it proves changed.

A window's rows can change after it was exported (a transaction that commits after high + settle, a back-dated
row, a delete). A verification export returns, per window of a range, the source's row count and an order-free
checksum of its rows (templates/verify.sql). A window is changed when its count differs from the rows its manifest
counted in the exported object, or when its checksum differs from the previous verification's. What it cannot see:
a change that leaves both the count and the checksum equal (a 60-bit sum of md5s: vanishingly unlikely by chance),
and rows a template filters out (verification counts every row of the window; override `verify_template` for a
template that exports a subset of rows).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pendulum

from shared.core.csvformat import Dialect, read_rows
from shared.core.windows import Window, parse_timestamp


@dataclass(frozen=True)
class WindowCount:
    """The source's state of one window at verification time."""

    low: pendulum.DateTime
    rows: int
    checksum: str


@dataclass(frozen=True)
class Finding:
    """A window whose rows changed since it was exported: it is re-exported as a new generation."""

    table: str
    window: Window
    rows_exported: int | None
    rows_now: int
    checksum_before: str | None
    checksum_now: str
    reason: str

    def as_record(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "window_low": self.window.low.isoformat(),
            "rows_exported": self.rows_exported,
            "rows_now": self.rows_now,
            "reason": self.reason,
        }


def parse_counts(data: bytes | Iterable[bytes], dialect: Dialect) -> dict[pendulum.DateTime, WindowCount]:
    """The rows of a verification export (window_low, row_count, checksum), by window low."""
    counts = {}
    for row in read_rows(data, dialect):
        if len(row) != 3 or None in row:
            raise ValueError(f"a verification row must be (window_low, row_count, checksum), got {row!r}")
        low = parse_timestamp(row[0], "window_low")
        counts[low] = WindowCount(low, int(row[1] or 0), str(row[2]))
    return counts


def compare(
    table: str,
    windows: Iterable[Window],
    counts: dict[pendulum.DateTime, WindowCount],
    exported_rows: dict[pendulum.DateTime, int],
    previous: dict[pendulum.DateTime, str],
) -> list[Finding]:
    """The changed windows. A window never exported (no manifest yet) is not compared: it will be exported whole."""
    findings = []
    for window in windows:
        now = counts.get(window.low)
        if now is None or window.low not in exported_rows:
            continue
        exported, before = exported_rows[window.low], previous.get(window.low)
        if now.rows != exported:
            kind = "more" if now.rows > exported else "fewer"
            reason = f"the source has {kind} rows than were exported ({exported} exported, {now.rows} now)"
        elif before is not None and before != now.checksum:
            reason = "rows changed in place since the last verification (same count, different checksum)"
        else:
            continue
        findings.append(Finding(table, window, exported, now.rows, before, now.checksum, reason))
    return findings


def schema_drift(
    previous: dict[str, list[dict[str, Any]]] | None,
    current: dict[str, list[dict[str, Any]]],
    selected: dict[str, set[str]],
) -> list[dict[str, Any]]:
    """Columns added, removed or retyped between two consecutive schema snapshots, per table. `severity` is ERROR
    for a removed or retyped column the table's export selects (its CSV changes shape), WARNING otherwise."""
    if previous is None:
        return []
    changes = []
    for table in sorted(set(previous) | set(current)):
        before = {c["name"]: c["type"] for c in previous.get(table, [])}
        after = {c["name"]: c["type"] for c in current.get(table, [])}
        used = selected.get(table, set())
        for name in sorted(set(before) | set(after)):
            if name not in before:
                change, severity = "added", "WARNING"
            elif name not in after:
                change, severity = "removed", "ERROR" if name in used else "WARNING"
            elif before[name] != after[name]:
                change, severity = "retyped", "ERROR" if name in used else "WARNING"
            else:
                continue
            changes.append(
                {
                    "table": table,
                    "column": name,
                    "change": change,
                    "type_before": before.get(name),
                    "type_after": after.get(name),
                    "severity": severity,
                }
            )
    return changes
