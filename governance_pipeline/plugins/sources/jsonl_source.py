"""JSON Lines source: one JSON object per line; every non-blank line is one row or one error.

An invalid line is quarantined with its exact bytes (line break included). Lines longer than
``max_record_bytes`` are never read whole: the first ``max_record_bytes`` are kept as evidence
and the rest of the line is skipped in bounded chunks. Duplicate keys are refused (which value
was meant is unknowable) and so are the non-standard ``NaN``/``Infinity`` literals.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, BinaryIO, ClassVar

from governance_pipeline.engine.plugin_api import SourceRecord
from governance_pipeline.engine.row_schema import RowErrorCode, preview, row_error
from governance_pipeline.plugins.sources._common import (
    SchemaSource,
    TextFileOptions,
    invalid,
    open_binary,
    resolve_path,
    skip_utf8_bom,
)

_SKIP_CHUNK = 1 << 16


class JsonlOptions(TextFileOptions):
    pass


class _DuplicateKey(Exception):
    pass


class _NonFinite(Exception):
    pass


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return obj


def _refuse_constant(name: str) -> Any:
    raise _NonFinite(name)


_JSON_KINDS = {list: "an array", str: "a string", int: "a number", float: "a number",
               bool: "a boolean", type(None): "null"}

# One decoder for the whole process: json.loads(**hooks) would build a new one per line.
_DECODER = json.JSONDecoder(object_pairs_hook=_unique_pairs, parse_constant=_refuse_constant)


def _lines(handle: BinaryIO, limit: int) -> Iterator[tuple[bytes, bool]]:
    """Non-blank physical lines as ``(bytes, oversized)``; an oversized line is cut to ``limit``."""
    while True:
        line = handle.readline(limit + 1)
        if not line:
            return
        if len(line) > limit:
            if not line.endswith(b"\n"):
                while True:
                    rest = handle.readline(_SKIP_CHUNK)
                    if not rest or rest.endswith(b"\n"):
                        break
            yield line[:limit], True
        elif not line.isspace():
            yield line, False


class JsonlSource(SchemaSource):
    name: ClassVar[str] = "jsonl"
    options_model = JsonlOptions

    def read(self, start_index: int = 0) -> Iterator[SourceRecord]:
        cfg: JsonlOptions = self.config  # type: ignore[assignment]
        path = resolve_path(self.base_dir, cfg.path)
        limit = cfg.max_record_bytes
        with open_binary(path) as handle:
            skip_utf8_bom(handle, cfg.encoding)
            for index, (line, oversized) in enumerate(_lines(handle, limit)):
                if index < start_index:
                    continue  # resume: lines before the checkpoint are counted, never parsed
                if oversized:
                    yield invalid(index, line, row_error(
                        RowErrorCode.OVERSIZED_FIELD,
                        f"line longer than max_record_bytes ({limit} bytes); raw keeps its "
                        f"first {limit} bytes"))
                else:
                    yield self._parse(index, line, cfg.encoding)

    def _parse(self, index: int, line: bytes, encoding: str) -> SourceRecord:
        try:
            text = line.decode(encoding)
        except UnicodeDecodeError as exc:
            bad = line[exc.start:exc.end]
            return invalid(index, line, row_error(
                RowErrorCode.BAD_ENCODING,
                f"line is not valid {encoding} text at byte {exc.start}: {preview(bad)}"))
        try:
            obj = _DECODER.decode(text)
        except json.JSONDecodeError as exc:
            return invalid(index, line, row_error(
                RowErrorCode.MALFORMED, f"invalid JSON: {exc.msg} at character {exc.pos}"))
        except _DuplicateKey as exc:
            return invalid(index, line, row_error(
                RowErrorCode.MALFORMED, f"duplicate key {preview(exc.args[0])}"))
        except _NonFinite as exc:
            return invalid(index, line, row_error(
                RowErrorCode.NOT_FINITE, f"{exc.args[0]} is not a JSON number and cannot be hashed"))
        except ValueError as exc:  # e.g. an integer literal beyond the interpreter's digit limit
            return invalid(index, line, row_error(RowErrorCode.MALFORMED, f"invalid JSON: {exc}"))
        except RecursionError:
            return invalid(index, line, row_error(RowErrorCode.MALFORMED, "JSON nested too deeply"))
        if type(obj) is not dict:
            kind = _JSON_KINDS.get(type(obj), type(obj).__name__)
            return invalid(index, line, row_error(
                RowErrorCode.MALFORMED,
                f"a JSON Lines record must be an object, got {kind}: {preview(obj)}"))
        return self.record(index, obj, lambda: line)
