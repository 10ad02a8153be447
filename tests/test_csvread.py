"""The one reader of exported objects (shared/core/csvformat.py): COPY's CSV in any dialect, gzip or not, streaming.

`copy_csv` below writes rows by PostgreSQL's rules (copyto.c, CopyAttributeOutCSV) so that properties can be checked
for any value; the emulator-stack tests check the reader against PostgreSQL's real output, and DuckDB.
"""

from __future__ import annotations

import gzip

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.core.csvformat import Dialect, count_rows, decode_option, read_rows

BACKSLASH = Dialect(delimiter=",", quote='"', escape="\\")
DIALECTS = [
    Dialect(),
    BACKSLASH,
    Dialect(delimiter="\t", quote="'", escape="'"),
    Dialect(delimiter="|", quote="'", escape="\\"),
]


def rows(text: str, dialect: Dialect = BACKSLASH) -> list[list[str | None]]:
    return list(read_rows(text.encode(), dialect))


def test_null_empty_quotes_commas_newlines_and_backslashes() -> None:
    text = '1,,"",plain\n2,"said \\"hi\\", then left","two\nlines","back\\\\slash"\n3,back\\slash,x,\n'
    assert rows(text) == [
        ["1", None, "", "plain"],
        ["2", 'said "hi", then left', "two\nlines", "back\\slash"],
        ["3", "back\\slash", "x", None],
    ]


def test_quote_doubled_when_escape_is_the_quote() -> None:
    assert rows('"a ""b""",c\n', Dialect()) == [['a "b"', "c"]]


def test_other_delimiter_and_crlf() -> None:
    assert rows("a;b\r\n;c\r\n", Dialect(delimiter=";")) == [["a", "b"], [None, "c"]]


def test_last_line_without_newline() -> None:
    assert rows("a,b") == [["a", "b"]]


@pytest.mark.parametrize(("hex_value", "char"), [("5C", "\\"), ("22", '"'), ("2C", ","), ("09", "\t")])
def test_decode_option(hex_value: str, char: str) -> None:
    assert decode_option(hex_value) == char


def copy_csv(table: list[list[str | None]], d: Dialect) -> bytes:
    """Rows as PostgreSQL's COPY ... (FORMAT csv) writes them."""
    lines = []
    for row in table:
        fields = []
        for value in row:
            if value is None:
                fields.append("")
            elif value == "" or value == "\\." or any(c in value for c in (d.delimiter, d.quote, "\n", "\r")):
                body = "".join(d.escape + c if c in (d.quote, d.escape) else c for c in value)
                fields.append(d.quote + body + d.quote)
            else:
                fields.append(value)
        lines.append(d.delimiter.join(fields) + "\n")
    return "".join(lines).encode()


VALUES = st.one_of(
    st.none(),
    st.just("NULL"),
    st.text(alphabet=st.sampled_from(list(",;\t|'\"\\\n\r ab\u00e9\u4e2d")), max_size=12),
)
TABLES = st.lists(st.lists(VALUES, min_size=1, max_size=4), min_size=1, max_size=6)


@settings(max_examples=300, deadline=None)
@given(TABLES, st.sampled_from(DIALECTS), st.integers(min_value=1, max_value=7), st.booleans())
def test_any_values_round_trip_in_any_dialect_chunking_and_compression(
    table: list[list[str | None]], dialect: Dialect, chunk: int, zipped: bool
) -> None:
    # A row of one NULL is an empty line, which COPY writes too: it reads back as one NULL field.
    data = copy_csv(table, dialect)
    if zipped:
        data = gzip.compress(data, mtime=0)
    chunks = [data[i : i + chunk] for i in range(0, len(data), chunk)]
    assert list(read_rows(chunks, dialect)) == table
    assert count_rows(chunks, dialect) == len(table)


def test_gzip_with_several_members_and_bytes_split_inside_a_character() -> None:
    text = 'é,中\n"a\nb",\n'.encode()
    data = gzip.compress(text[:5], mtime=0) + gzip.compress(text[5:], mtime=0)
    assert list(read_rows([data[i : i + 1] for i in range(len(data))], Dialect())) == [["é", "中"], ["a\nb", None]]


def test_a_backslash_outside_quotes_is_data_even_with_a_backslash_escape() -> None:
    """COPY escapes only inside quotes; Python's csv module with escapechar='\\\\' would drop this backslash."""
    assert rows("C:\\dir,x\n") == [["C:\\dir", "x"]]
