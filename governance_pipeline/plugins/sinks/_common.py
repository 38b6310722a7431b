"""What every built-in sink shares: its error type, option parsing and part-key checks."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence, Set as AbstractSet
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from governance_pipeline.contracts.errors import (
    SINK_OPTIONS_INVALID,
    SINK_ROW_UNFIT,
    SINK_WRITE_FAILED,
    ConfigError,
    GovernanceError,
)
from governance_pipeline.engine.plugin_api import Row

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

# Part keys become file names, so they are restricted to a portable, traversal-free alphabet;
# a leading "_" or "." is reserved for the sink's own files (schema, temporaries).
_PART_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


class SinkError(GovernanceError):
    """A sink could not make its output durable (I/O, database) or was handed an unfit row."""

    default_code = SINK_WRITE_FAILED


def parse_options(model: type[M], options: Mapping[str, Any], *, sink_name: str,
                  plugin: str) -> M:
    """Validate plugin options; a failure names every offending field as ``options.<path>``."""
    try:
        return model.model_validate(dict(options))
    except ValidationError as exc:
        problems = "; ".join(
            f"options.{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors())
        raise ConfigError(f"sink {sink_name!r} ({plugin}): {problems}",
                          code=SINK_OPTIONS_INVALID,
                          details={"sink": sink_name, "plugin": plugin,
                                   "errors": [{"loc": ["options", *err["loc"]], "msg": err["msg"]}
                                              for err in exc.errors()]}) from exc


def resolve_path(base_dir: Path, path: str) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else Path(base_dir) / candidate


def check_part_key(part_key: str) -> str:
    if not isinstance(part_key, str) or not _PART_KEY.fullmatch(part_key) or ".." in part_key:
        raise ValueError(f"invalid part key {part_key!r}: use letters, digits, '.', '_' and '-', "
                         "starting with a letter or digit")
    return part_key


def unfit_row(sink_name: str, part_key: str, token_id: str, reason: str) -> SinkError:
    return SinkError(f"sink {sink_name!r}: part {part_key}: row of token {token_id} does not fit "
                     f"the sink: {reason}", code=SINK_ROW_UNFIT,
                     details={"sink": sink_name, "part_key": part_key, "token_id": token_id})


def key_mismatch(columns: Sequence[str], row: Row,
                 column_set: AbstractSet[str] | None = None) -> str | None:
    """Which fields are missing from or unexpected in ``row``, or None when the keys match."""
    expected = column_set if column_set is not None else frozenset(columns)
    if row.keys() == expected:
        return None
    problems = []
    missing = [c for c in columns if c not in row]
    if missing:
        problems.append("missing fields: " + ", ".join(missing))
    extra = [str(k) for k in row if k not in expected]
    if extra:
        problems.append("unexpected fields: " + ", ".join(extra))
    return "; ".join(problems)


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch
