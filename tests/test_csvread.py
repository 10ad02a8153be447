"""The reconciliation reader: PostgreSQL CSV back into rows, NULL kept apart from the empty string."""

from __future__ import annotations

import pytest

from local.csvread import decode_option, read_rows


def test_null_empty_quotes_commas_newlines_and_backslashes() -> None:
    text = '1,,"",plain\n2,"said \\"hi\\", then left","two\nlines","back\\\\slash"\n3,back\\slash,x,\n'
    assert list(read_rows(text)) == [
        ["1", None, "", "plain"],
        ["2", 'said "hi", then left', "two\nlines", "back\\slash"],
        ["3", "back\\slash", "x", None],
    ]


def test_quote_doubled_when_escape_is_the_quote() -> None:
    assert list(read_rows('"a ""b""",c\n', escape='"')) == [['a "b"', "c"]]


def test_other_delimiter_and_crlf() -> None:
    assert list(read_rows("a;b\r\n;c\r\n", delimiter=";")) == [["a", "b"], [None, "c"]]


def test_last_line_without_newline() -> None:
    assert list(read_rows("a,b")) == [["a", "b"]]


@pytest.mark.parametrize(("hex_value", "char"), [("5C", "\\"), ("22", '"'), ("2C", ","), ("09", "\t")])
def test_decode_option(hex_value: str, char: str) -> None:
    assert decode_option(hex_value) == char
