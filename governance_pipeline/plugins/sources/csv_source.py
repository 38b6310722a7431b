"""CSV source: the header row names the fields; every later record is one row or one error.

The file is read as bytes. ``csv.reader`` parses text fed to it line by line by ``_LineFeed``,
which decodes each line (invalid bytes become surrogate escapes and mark the record
``bad_encoding``) and keeps the bytes of the lines the current record spans, so an invalid
record is quarantined with exactly the bytes it has in the file. A record longer than
``max_record_bytes`` is never held whole: the feed stops at the limit and ``_skip_rest`` finds
where the record ends with the CSV quoting rules, keeping only the first ``max_record_bytes``.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import BinaryIO, ClassVar

from pydantic import Field, field_validator

from governance_pipeline.engine.plugin_api import RowError, SourceRecord
from governance_pipeline.engine.row_schema import RowErrorCode, preview, row_error
from governance_pipeline.plugins.sources._common import (
    SchemaSource,
    SourceReadError,
    TextFileOptions,
    invalid,
    open_binary,
    resolve_path,
    skip_utf8_bom,
)

_SKIP_CHUNK = 1 << 16


class CsvOptions(TextFileOptions):
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    quotechar: str = Field(default='"', min_length=1, max_length=1)

    @field_validator("delimiter", "quotechar")
    @classmethod
    def _plain_ascii(cls, value: str) -> str:
        if not value.isascii() or value in "\r\n":
            raise ValueError("must be one ASCII character other than a line break")
        return value


class _RecordTooLong(Exception):
    """Raised by the feed inside ``csv.reader`` when a record passes ``max_record_bytes``."""


class _LineFeed:
    """The line iterator ``csv.reader`` reads: decodes lines and keeps the current record's bytes."""

    __slots__ = ("_handle", "_encoding", "_limit", "lines", "size", "bad")

    def __init__(self, handle: BinaryIO, encoding: str, limit: int) -> None:
        self._handle = handle
        self._encoding = encoding
        self._limit = limit
        self.start()

    def start(self) -> None:
        self.lines: list[bytes] = []
        self.size = 0
        self.bad = False

    def raw(self) -> bytes:
        return b"".join(self.lines)

    def __iter__(self) -> _LineFeed:
        return self

    def __next__(self) -> str:
        line = self._handle.readline(self._limit - self.size + 1)
        if not line:
            raise StopIteration
        self.lines.append(line)
        self.size += len(line)
        if self.size > self._limit:
            raise _RecordTooLong
        try:
            return line.decode(self._encoding)
        except UnicodeDecodeError:
            self.bad = True
            return line.decode(self._encoding, "surrogateescape")


# States of the quoting automaton ``_skip_rest`` runs over an oversized record (as csv does).
_START, _FIELD, _QUOTED, _QUOTE_IN_QUOTED = range(4)


def _advance(data: bytes, state: int, delimiter: int, quote: int) -> int:
    """The quoting state after ``data`` (which holds no line break), starting in ``state``."""
    i, n = 0, len(data)
    while i < n:
        if state == _QUOTED:
            j = data.find(quote, i)
            if j < 0:
                return _QUOTED
            state, i = _QUOTE_IN_QUOTED, j + 1
            continue
        if state == _FIELD:
            j = data.find(delimiter, i)
            if j < 0:
                return _FIELD
            state, i = _START, j + 1
            continue
        c = data[i]
        i += 1
        if state == _QUOTE_IN_QUOTED:  # a doubled quote continues the field, a delimiter ends it
            state = _QUOTED if c == quote else (_START if c == delimiter else _FIELD)
        else:  # _START
            state = _QUOTED if c == quote else (_START if c == delimiter else _FIELD)
    return state


def _skip_rest(handle: BinaryIO, last: bytes, multiline: bool, delimiter: int,
               quote: int) -> None:
    """Consume the rest of a record whose bytes so far end with the chunk ``last``."""
    # A record spans lines only inside a quoted field; otherwise ``last`` starts the record.
    state = _QUOTED if multiline else _START
    chunk = last
    while True:
        ends_line = chunk.endswith(b"\n")
        state = _advance(chunk[:-1] if ends_line else chunk, state, delimiter, quote)
        if ends_line and state != _QUOTED:
            return
        chunk = handle.readline(_SKIP_CHUNK)
        if not chunk:
            return


class CsvSource(SchemaSource):
    name: ClassVar[str] = "csv"
    options_model = CsvOptions

    def read(self, start_index: int = 0) -> Iterator[SourceRecord]:
        cfg: CsvOptions = self.config  # type: ignore[assignment]
        path = resolve_path(self.base_dir, cfg.path)
        limit = cfg.max_record_bytes
        with open_binary(path) as handle:
            skip_utf8_bom(handle, cfg.encoding)
            feed = _LineFeed(handle, cfg.encoding, limit)
            reader = csv.reader(feed, delimiter=cfg.delimiter, quotechar=cfg.quotechar,
                                doublequote=True, strict=True)
            # Fields are bounded by max_record_bytes already; csv's own (global) field limit
            # would otherwise fail fields above 128 KiB mid-record and lose the record boundary.
            if csv.field_size_limit() < limit:
                csv.field_size_limit(limit)
            header = self._header(reader, feed, str(path))
            if header is None:
                return
            width = len(header)
            delimiter, quote = ord(cfg.delimiter), ord(cfg.quotechar)
            index = 0
            while True:
                feed.start()
                try:
                    cells = next(reader)
                except StopIteration:
                    return
                except _RecordTooLong:
                    last = feed.lines[-1]
                    _skip_rest(handle, last, len(feed.lines) > 1, delimiter, quote)
                    if index >= start_index:
                        yield invalid(index, feed.raw()[:limit], row_error(
                            RowErrorCode.OVERSIZED_FIELD,
                            f"record longer than max_record_bytes ({limit} bytes); raw keeps "
                            f"its first {limit} bytes"))
                    index += 1
                    continue
                except csv.Error as exc:
                    if index >= start_index:
                        yield invalid(index, feed.raw(), row_error(
                            RowErrorCode.MALFORMED, f"CSV record cannot be parsed: {exc}"))
                    index += 1
                    continue
                if not cells:
                    continue  # a blank line is not a record
                if index >= start_index:
                    yield self._row(index, cells, header, width, feed)
                index += 1

    def _header(self, reader: csv.Reader, feed: _LineFeed, where: str) -> list[str] | None:
        try:
            header = next(reader)
        except StopIteration:
            return None  # an empty file holds no records
        except (_RecordTooLong, csv.Error) as exc:
            raise SourceReadError(f"{where}: the header row cannot be read: "
                                  f"{exc or 'longer than max_record_bytes'}") from None
        if feed.bad:
            raise SourceReadError(f"{where}: the header row is not valid "
                                  f"{self.config.encoding} text")  # type: ignore[attr-defined]
        if not header:
            raise SourceReadError(f"{where}: the first line must be the header row, not blank")
        seen: set[str] = set()
        for name in header:
            if name in seen:
                raise SourceReadError(f"{where}: duplicate column {name!r} in the header row")
            seen.add(name)
        return header

    def _row(self, index: int, cells: list[str], header: list[str], width: int,
             feed: _LineFeed) -> SourceRecord:
        if feed.bad:
            return invalid(index, feed.raw(), self._bad_encoding(cells, header))
        if len(cells) > width:
            return invalid(index, feed.raw(), row_error(
                RowErrorCode.TOO_MANY_FIELDS,
                f"{len(cells)} values for {width} columns; first extra value "
                f"{preview(cells[width])}"))
        if len(cells) < width:
            missing = header[len(cells)]
            return invalid(index, feed.raw(), row_error(
                RowErrorCode.MISSING_FIELD,
                f"field {missing!r} is missing: {len(cells)} values for {width} columns"))
        return self.record(index, dict(zip(header, cells)), feed.raw)

    def _bad_encoding(self, cells: list[str], header: list[str]) -> RowError:
        encoding = self.config.encoding  # type: ignore[attr-defined]
        for position, cell in enumerate(cells):
            try:
                cell.encode("utf-8")
            except UnicodeEncodeError:
                name = header[position] if position < len(header) else f"#{position + 1}"
                shown = cell.encode(encoding, "surrogateescape")  # the bytes as they are in the file
                return row_error(RowErrorCode.BAD_ENCODING,
                                 f"field {name!r}: not valid {encoding} text: {preview(shown)}")
        return row_error(RowErrorCode.BAD_ENCODING, f"record is not valid {encoding} text")
