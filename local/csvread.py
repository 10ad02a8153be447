"""Read the exported CSV back, telling NULL from the empty string.

PostgreSQL's CSV output writes NULL as an empty unquoted field and an empty string as `""`; Python's
csv module maps both to ''. Reconciliation needs the difference, so this small reader keeps it:
unquoted empty fields become None. Quote, escape and delimiter are single characters (the export's
hex options decoded).
"""

from __future__ import annotations

from collections.abc import Iterator

Row = list[str | None]


def read_rows(text: str, *, delimiter: str = ",", quote: str = '"', escape: str = "\\") -> Iterator[Row]:
    """Yield the rows of `text`; a quoted field may hold delimiters, quotes (escaped) and newlines."""
    row: Row = []
    field: list[str] = []
    quoted = in_quotes = False
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if in_quotes:
            if ch == escape and i + 1 < n and text[i + 1] in (quote, escape) and escape != quote:
                field.append(text[i + 1])
                i += 2
                continue
            if ch == quote:
                if escape == quote and i + 1 < n and text[i + 1] == quote:
                    field.append(quote)
                    i += 2
                    continue
                in_quotes = False
            else:
                field.append(ch)
        elif ch == quote:
            in_quotes = quoted = True
        elif ch == delimiter:
            row.append("".join(field) if field or quoted else None)
            field, quoted = [], False
        elif ch == "\n" or (ch == "\r" and i + 1 < n and text[i + 1] == "\n"):
            row.append("".join(field) if field or quoted else None)
            yield row
            row, field, quoted = [], [], False
            i += 2 if ch == "\r" else 1
            continue
        else:
            field.append(ch)
        i += 1
    if field or quoted or row:
        row.append("".join(field) if field or quoted else None)
        yield row


def decode_option(hex_value: str) -> str:
    """An export option such as "5C" -> the character it names."""
    return bytes.fromhex(hex_value).decode("ascii")
