"""Reading exported CSV exactly as PostgreSQL's COPY writes it, in any dialect, gzipped or not, streaming.

What Cloud SQL for PostgreSQL writes is `COPY (query) TO ... WITH (FORMAT csv, DELIMITER d, QUOTE q, ESCAPE e)`,
and COPY's CSV rules (PostgreSQL documentation, "COPY", section "CSV Format"; src/backend/commands/copyto.c,
CopyAttributeOutCSV) are:
- NULL is an unquoted empty field; the empty string is written quoted (`""`), so the two stay apart;
- a value is quoted when it contains the delimiter, the quote, a CR or a LF (or is exactly `\\.`);
- inside a quoted value, the quote and the escape character are each preceded by the escape character (with the
  default escape, which is the quote, a quote is doubled); outside quotes nothing is escaped, so a backslash in an
  unquoted value is data, not an escape — which is why Python's csv module with `escapechar` misreads it;
- rows end with LF; no header.
A `.gz` object is gzip: it is recognised by its magic bytes, so an object Cloud Storage served decompressed
(decompressive transcoding) reads the same.
"""

from __future__ import annotations

import codecs
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

Row = list[str | None]
GZIP_MAGIC = b"\x1f\x8b"


def decode_option(hex_value: str) -> str:
    """An export option such as "5C" -> the character it names."""
    return bytes.fromhex(hex_value).decode("ascii")


@dataclass(frozen=True)
class Dialect:
    """The CSV dialect of an export: single characters, as the Admin API's hex options name them."""

    delimiter: str = ","
    quote: str = '"'
    escape: str = '"'
    gzip: bool = False

    @classmethod
    def from_hex(cls, *, delimiter: str, quote: str, escape: str, gzip: bool) -> Dialect:
        return cls(decode_option(delimiter), decode_option(quote), decode_option(escape), gzip)

    def describe(self) -> dict[str, object]:
        """What a manifest tells a loader (BigQuery, DuckDB, pandas, Spark) to read the object right."""
        return {
            "type": "csv",
            "header": False,
            "delimiter": self.delimiter,
            "quote": self.quote,
            "escape": self.escape,
            "null": "unquoted empty field",
            "empty_string": f"{self.quote}{self.quote}",
            "newline": "\n",
            "encoding": "UTF-8",
            "compression": "gzip" if self.gzip else "none",
        }


def decompressed(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The bytes of `chunks`, gunzipped if they start with the gzip magic (several members allowed)."""
    iterator = iter(chunks)
    head = b""
    for chunk in iterator:
        head += chunk
        if len(head) >= 2:
            break
    if not head.startswith(GZIP_MAGIC):
        if head:
            yield head
        yield from iterator
        return
    inflater = zlib.decompressobj(wbits=31)
    for chunk in _chain(head, iterator):
        data = chunk
        while data:
            out = inflater.decompress(data)
            if out:
                yield out
            if inflater.eof:  # another gzip member may follow
                data = inflater.unused_data
                inflater = zlib.decompressobj(wbits=31)
            else:
                data = b""
    tail = inflater.flush()
    if tail:
        yield tail


def _chain(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


def text_chunks(chunks: Iterable[bytes]) -> Iterator[str]:
    """UTF-8 text of the (possibly gzipped) bytes, decoded incrementally (a character may span chunks)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    for chunk in decompressed(chunks):
        text = decoder.decode(chunk)
        if text:
            yield text
    tail = decoder.decode(b"", final=True)
    if tail:
        yield tail


class _Parser:
    """COPY's CSV as a state machine fed text in chunks; jumps from one special character to the next."""

    def __init__(self, dialect: Dialect, *, keep_raw: bool = False) -> None:
        self.q, self.e, self.d = dialect.quote, dialect.escape, dialect.delimiter
        self._outside = re.compile("[" + re.escape(self.d + self.q) + "\r\n]")
        self._inside = re.compile("[" + re.escape(self.q + (self.e if self.e != self.q else "")) + "]")
        self.field: list[str] = []
        self.row: Row = []
        self.quoted = self.in_quotes = False
        self.hold = ""
        # With keep_raw, each finished row's text exactly as written, and where its first field ended.
        self.keep_raw = keep_raw
        self.raws: list[tuple[str, int | None]] = []
        self._raw: list[str] = []  # the current row's text from earlier chunks
        self._raw_len = 0
        self._start = 0  # where the current row starts in the text being fed
        self._first_end: int | None = None

    def _take(self, text: str) -> None:
        if text:  # an empty piece must not turn a NULL field into an empty string
            self.field.append(text)

    def _end_field(self) -> None:
        self.row.append("".join(self.field) if self.field or self.quoted else None)
        self.field, self.quoted = [], False

    def _end_row(self, rows: list[Row], text: str, end: int) -> None:
        """The row ends at `end` in `text` (just after its line end)."""
        self._end_field()
        rows.append(self.row)
        self.row = []
        if self.keep_raw:
            self.raws.append(("".join(self._raw) + text[self._start : end], self._first_end))
            self._raw, self._raw_len, self._start, self._first_end = [], 0, end, None

    def _delimiter_at(self, j: int) -> None:
        if self.keep_raw and not self.row:  # the first field ends: remember where, counting the delimiter
            self._first_end = self._raw_len + j + 1 - self._start
        self._end_field()

    def feed(self, text: str, *, final: bool = False) -> list[Row]:
        text, self.hold = self.hold + text, ""
        rows: list[Row] = []
        i, n = 0, len(text)
        self._start = 0
        while i < n:
            if self.in_quotes:
                m = self._inside.search(text, i)
                if m is None:
                    self._take(text[i:])
                    break
                j = m.start()
                self._take(text[i:j])
                if j + 1 >= n and not final:  # the next character decides what this one means
                    self.hold = text[j:]
                    break
                follower = text[j + 1] if j + 1 < n else ""
                if text[j] == self.e and self.e != self.q:
                    if follower in (self.q, self.e) and follower:
                        self.field.append(follower)
                        i = j + 2
                    else:  # COPY never writes a lone escape; keep it as data
                        self.field.append(text[j])
                        i = j + 1
                elif self.e == self.q and follower == self.q:
                    self.field.append(self.q)
                    i = j + 2
                else:
                    self.in_quotes = False
                    i = j + 1
            else:
                m = self._outside.search(text, i)
                if m is None:
                    self._take(text[i:])
                    break
                j = m.start()
                self._take(text[i:j])
                ch = text[j]
                i = j + 1
                if ch == self.q:
                    self.in_quotes = self.quoted = True
                elif ch == self.d:
                    self._delimiter_at(j)
                elif ch == "\n":
                    self._end_row(rows, text, i)
                elif j + 1 >= n and not final:  # "\r": a CRLF may be split across chunks
                    self.hold = text[j:]
                    break
                elif j + 1 < n and text[j + 1] == "\n":
                    i = j + 2
                    self._end_row(rows, text, i)
                else:
                    self.field.append(ch)
        if final and (self.field or self.quoted or self.row):
            self._end_row(rows, text, n)
        elif self.keep_raw:
            consumed = n - len(self.hold)
            self._raw.append(text[self._start : consumed])
            self._raw_len += consumed - self._start
        return rows


def read_rows(data: bytes | Iterable[bytes], dialect: Dialect) -> Iterator[Row]:
    """The rows of an exported object (bytes, or an iterable of byte chunks); NULL is None, '' is ''."""
    parser = _Parser(dialect)
    for text in text_chunks([data] if isinstance(data, bytes) else data):
        yield from parser.feed(text)
    yield from parser.feed("", final=True)


@dataclass(frozen=True)
class Record:
    """One row with its text exactly as the object holds it (decoded, line end included), and where its first field
    ends in that text (just past the delimiter; None for a row of one field)."""

    row: Row
    raw: str
    first_end: int | None


def read_records(data: bytes | Iterable[bytes], dialect: Dialect) -> Iterator[Record]:
    """The rows of an exported object with their raw text, streaming: what splitting an object needs (the raw
    text is written out again verbatim, so the split output is byte-identical to the input's rows)."""
    parser = _Parser(dialect, keep_raw=True)

    def drain(rows: list[Row]) -> Iterator[Record]:
        for row, (raw, first_end) in zip(rows, parser.raws, strict=True):
            yield Record(row, raw, first_end)
        parser.raws.clear()

    for text in text_chunks([data] if isinstance(data, bytes) else data):
        yield from drain(parser.feed(text))
    yield from drain(parser.feed("", final=True))


def count_rows(data: bytes | Iterable[bytes], dialect: Dialect) -> int:
    """How many rows an exported object holds, streaming (a quoted value may hold newlines)."""
    return sum(1 for _ in read_rows(data, dialect))
