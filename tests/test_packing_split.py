"""Splitting a pack object (shared/core/packing.py): split(pack) == what one export per window writes, byte for byte.

`copy_csv` writes rows by PostgreSQL's rules (copyto.c, CopyAttributeOutCSV), including the one rule that depends on
the row's width: a lone `\\.` is quoted only when the row has a single column. The emulator-stack test
(tests/test_packing_e2e.py) checks the same against PostgreSQL's real output.
"""

from __future__ import annotations

import gzip
from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.core.csvformat import Dialect, read_records
from shared.core.packing import PackSettings, PackSplitError, pack_query, pack_windows, split_records

Row = list[str | None]


def copy_csv(rows: list[Row], d: Dialect) -> bytes:
    """Rows as PostgreSQL's COPY ... (FORMAT csv) writes them."""
    lines = []
    for row in rows:
        fields = []
        for value in row:
            if value is None:
                fields.append("")
            elif (
                value == ""
                or (len(row) == 1 and value == "\\.")
                or any(c in value for c in (d.delimiter, d.quote, "\n", "\r"))
            ):
                body = "".join(d.escape + c if c in (d.quote, d.escape) else c for c in value)
                fields.append(d.quote + body + d.quote)
            else:
                fields.append(value)
        lines.append(d.delimiter.join(fields) + "\n")
    return "".join(lines).encode()


def split(chunks: list[bytes], dialect: Dialect, windows: int) -> list[bytes]:
    out: dict[int, bytes] = defaultdict(bytes)
    for index, data in split_records(chunks, dialect, windows):
        out[index] += data
    return [out[i] for i in range(windows)]


@st.composite
def dialects(draw: st.DrawFn) -> Dialect:
    """Any dialect PostgreSQL's COPY accepts: single characters, no CR/LF, delimiter and quote apart (the config's
    hex options name them)."""
    chars = st.sampled_from(list(",;\t|'\"\\#~ 1x"))
    delimiter = draw(chars)
    quote = draw(chars.filter(lambda c: c != delimiter))
    escape = draw(st.one_of(st.just(quote), chars.filter(lambda c: c not in (delimiter,))))
    return Dialect(delimiter=delimiter, quote=quote, escape=escape, gzip=draw(st.booleans()))


VALUES = st.one_of(
    st.none(),
    st.just("\\."),
    st.just(""),
    st.text(alphabet=st.sampled_from(list(",;\t|'\"\\\n\r #~1x.\u00e9\u4e2d")), max_size=8),
)


@st.composite
def packs(draw: st.DrawFn) -> list[list[Row]]:
    """Windows of one table: every row of every window has the same number of columns."""
    width = draw(st.integers(min_value=1, max_value=3))
    row = st.lists(VALUES, min_size=width, max_size=width)
    return draw(st.lists(st.lists(row, max_size=4), min_size=1, max_size=5))


@settings(max_examples=400, deadline=None)
@given(packs(), dialects(), st.integers(min_value=1, max_value=9))
def test_split_of_a_pack_is_each_windows_own_export(windows: list[list[Row]], dialect: Dialect, chunk: int) -> None:
    expected = [copy_csv(rows, dialect) for rows in windows]
    pack = copy_csv([[str(i), *row] for i, rows in enumerate(windows) for row in rows], dialect)
    data = gzip.compress(pack, mtime=0) if dialect.gzip else pack
    chunks = [data[i : i + chunk] for i in range(0, len(data), chunk)]
    assert split(chunks, dialect, len(windows)) == expected


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(VALUES, min_size=1, max_size=3), max_size=5), dialects(), st.integers(1, 7))
def test_records_carry_their_exact_text(rows: list[Row], dialect: Dialect, chunk: int) -> None:
    data = copy_csv(rows, dialect)
    records = list(read_records([data[i : i + chunk] for i in range(0, len(data), chunk)], dialect))
    assert "".join(r.raw for r in records).encode() == data
    assert [r.row for r in records] == rows


def test_end_of_data_value_quoted_again_when_its_window_has_one_column() -> None:
    pack = b"0,\\.\n0,x\n1,\n"
    assert split([pack], Dialect(), 2) == [b'"\\."\nx\n', b"\n"]
    backslash = Dialect(escape="\\")
    assert split([pack], backslash, 2) == [b'"\\\\."\nx\n', b"\n"]


@pytest.mark.parametrize(
    ("pack", "problem"),
    [
        (b"x\n", "has no window index column"),
        (b"a,1\n", "not an integer"),
        (b"2,1\n", "outside the pack's 0..1"),
        (b"1,a\n0,b\n", "row 2 of window 0 follows rows of window 1"),
    ],
)
def test_a_pack_that_cannot_be_split_says_why(pack: bytes, problem: str) -> None:
    with pytest.raises(PackSplitError) as caught:
        split([pack], Dialect(), 2)
    assert problem in caught.value.problem


def test_pack_query_puts_each_window_behind_its_index() -> None:
    query = pack_query(["SELECT a FROM t ORDER BY a", "WITH x AS (SELECT 1) SELECT * FROM x"])
    assert query == (
        "(SELECT 0 AS cdc_pack_window, w.* FROM (SELECT a FROM t ORDER BY a) AS w) UNION ALL "
        "(SELECT 1 AS cdc_pack_window, w.* FROM (WITH x AS (SELECT 1) SELECT * FROM x) AS w)"
    )


@pytest.mark.parametrize(
    ("bytes_per_window", "expected"),
    [
        (None, 48),  # unknown: the most allowed; the first pack measures the table
        (0, 48),
        (1024, 48),  # tiny windows: the overhead needs every window it can get
        (200 * 1024 * 1024, 1),  # a window near the target size: packing buys nothing
        (20 * 1024 * 1024, 12),  # the target size caps it (256 MiB / 20 MiB)
        (100 * 1024 * 1024, 2),
    ],
)
def test_pack_windows_from_target_size_and_overhead(bytes_per_window: float | None, expected: int) -> None:
    assert pack_windows(PackSettings(max_windows=48), bytes_per_window) == expected


def test_pack_windows_stops_once_the_overhead_is_amortised() -> None:
    # 1 s per window at 20 MiB/s; overhead 30 s at most 10 % of the pack: 270 windows of time needed, capped at 48;
    # with a 2 s overhead, 18 windows are enough.
    settings_ = PackSettings(op_overhead_seconds=2.0, target_bytes=10**12, max_windows=100)
    assert pack_windows(settings_, 20 * 1024 * 1024) == 18
    assert pack_windows(PackSettings(), None) == 1  # off unless configured
