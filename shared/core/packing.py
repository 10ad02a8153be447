"""Window packing: one export covers consecutive windows of one table; its object is split into the per-window
objects that one export per window would have written.

Pure rules only (the chain's side is shared/app/packs.py):
- `PackSettings` and `pack_windows`: how many windows one pack covers, from a target object size and the fixed
  overhead of one Cloud SQL operation;
- `pack_query`: the windows' rendered queries, each behind a leading window-index column, joined by UNION ALL
  (PostgreSQL's Append runs its children one after the other, and each child keeps its own ORDER BY, because a
  subquery with ORDER BY is never pulled up into the outer query; see `split_records` for what happens otherwise);
- `split_records`: streams the pack's CSV and gives, per record, its window index and the exact bytes the window's
  own export would hold for that row (the record's text with the index field stripped).

Byte identity holds for COPY's CSV in any dialect: every value is written by the same output function whatever
query it came from, and quoting depends on the value and the dialect only, with one exception: COPY quotes the
value `\\.` when the row has a single column (copyto.c, CopyAttributeOutCSV's `single_attr`), so it would not be
end-of-data in a text stream; a pack row has one more column, so `split_records` quotes it again.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from shared.core.csvformat import Dialect, read_records

INDEX_COLUMN = "cdc_pack_window"
"""The pack query's leading column: the position of the row's window in the pack (0, 1, ...)."""
END_OF_DATA = "\\."
NO_PACK_KEY = "pack"
"""Set in a task's error by a pack that failed or could not be split: the window is exported on its own next."""


@dataclass(frozen=True)
class PackSettings:
    """How catch-up and backfill windows of a table are packed into one export (`worker.pack` in the config).

    A pack covers enough windows for the operation's fixed overhead to be at most `overhead_share` of the export's
    time (estimated from the bytes of the table's last window at `export_bytes_per_second`), never more windows
    than `max_windows` nor, by that estimate, more than `target_bytes`. `max_windows` 1 (the default) turns packing
    off; 48 (two days of hourly windows) is a good start.
    """

    max_windows: int = 1
    target_bytes: int = 256 * 1024 * 1024
    op_overhead_seconds: float = 30.0
    export_bytes_per_second: float = 20 * 1024 * 1024
    overhead_share: float = 0.1

    @property
    def enabled(self) -> bool:
        return self.max_windows > 1


def pack_windows(settings: PackSettings, bytes_per_window: float | None) -> int:
    """How many windows one pack should cover, given the table's bytes per window (None: not known yet).

    Unknown size: `max_windows` (the first pack measures it). Otherwise the fewest windows whose export time makes
    the overhead at most `overhead_share` of the total, capped by `target_bytes` and `max_windows`; at least 1.
    """
    if not settings.enabled:
        return 1
    if bytes_per_window is None:
        return settings.max_windows
    if bytes_per_window <= 0:
        return settings.max_windows
    seconds_per_window = bytes_per_window / settings.export_bytes_per_second
    share = settings.overhead_share
    needed = math.ceil(settings.op_overhead_seconds * (1 - share) / (share * seconds_per_window))
    by_size = int(settings.target_bytes // bytes_per_window)
    return max(1, min(settings.max_windows, by_size, needed))


def pack_query(queries: Sequence[str]) -> str:
    """One query that returns each window's rows, in window order, behind the window's index."""
    if not queries:
        raise ValueError("a pack needs at least one window's query")
    return " UNION ALL ".join(
        f"(SELECT {i} AS {INDEX_COLUMN}, w.* FROM ({query}) AS w)" for i, query in enumerate(queries)
    )


class PackSplitError(Exception):
    """A pack object that cannot be split exactly (never written by `pack_query`'s export, or rows out of window
    order, as a parallel plan could give): the pack's windows are exported one by one instead."""

    def __init__(self, problem: str) -> None:
        super().__init__(f"pack object cannot be split: {problem}; its windows are exported one by one instead")
        self.problem = problem


def _quoted(value: str, dialect: Dialect) -> str:
    """A value as COPY writes it quoted: the quote and the escape character each preceded by the escape."""
    body = "".join(dialect.escape + c if c in (dialect.quote, dialect.escape) else c for c in value)
    return f"{dialect.quote}{body}{dialect.quote}"


def split_records(chunks: Iterable[bytes], dialect: Dialect, windows: int) -> Iterator[tuple[int, bytes]]:
    """(window index, the row's bytes as the window's own export writes it), in the pack's order. Streaming.

    Raises PackSplitError on a row without a valid index, an index outside [0, windows), or an index lower than the
    previous row's (the windows' rows are not one after the other).
    """
    last = 0
    for number, record in enumerate(read_records(chunks, dialect), start=1):
        if record.first_end is None:
            raise PackSplitError(f"row {number} has no window index column")
        try:
            index = int(record.row[0] or "")
        except ValueError:
            raise PackSplitError(f"row {number} has window index {record.row[0]!r}, not an integer") from None
        if not 0 <= index < windows:
            raise PackSplitError(f"row {number} has window index {index}, outside the pack's 0..{windows - 1}")
        if index < last:
            raise PackSplitError(f"row {number} of window {index} follows rows of window {last}")
        last = index
        rest = record.raw[record.first_end :]
        if len(record.row) == 2 and record.row[1] == END_OF_DATA and not rest.startswith(dialect.quote):
            rest = _quoted(END_OF_DATA, dialect) + rest[len(END_OF_DATA) :]
        yield index, rest.encode("utf-8")
