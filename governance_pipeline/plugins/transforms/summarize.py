"""``summarize``: the batch function of an aggregation's ``transform`` output mode.

One output row per group, groups in first-seen order; aggregates ``count``, ``count:f``,
``sum:f``, ``min:f``, ``max:f``, ``mean:f``. Nulls (and absent fields) are skipped by every
aggregate but ``count``, as in SQL; an aggregate over only nulls is null. Sums of integers stay
exact integers; sums involving floats use ``math.fsum``, so the result does not depend on
rounding order. A value an aggregate cannot use raises ``BatchFunctionError``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, Field

from governance_pipeline.contracts.errors import BATCH_FUNCTION_FAILED, GovernanceError
from governance_pipeline.engine.plugin_api import BatchFunction, Row
from governance_pipeline.plugins.transforms._options import (
    StrictOptions, fail_option, parse_options)

_KINDS = ("count", "sum", "min", "max", "mean")


class BatchFunctionError(GovernanceError):
    default_code = BATCH_FUNCTION_FAILED


@dataclass(frozen=True, slots=True)
class Aggregate:
    out: str
    kind: str
    field: str | None

    @staticmethod
    def parse(out: str, spec: str) -> Aggregate:
        kind, _, name = spec.partition(":")
        kind, name = kind.strip(), name.strip()
        if kind not in _KINDS:
            raise ValueError(f"{spec!r}: unknown aggregate (use count, sum:FIELD, min:FIELD, "
                             "max:FIELD or mean:FIELD)")
        if kind != "count" and not name:
            raise ValueError(f"{spec!r}: {kind} needs a field, as in {kind}:amount")
        return Aggregate(out, kind, name or None)


def _check_spec(spec: str) -> str:
    Aggregate.parse("", spec)
    return spec


class SummarizeOptions(StrictOptions):
    group_by: list[str] = Field(default_factory=list)
    # Validated per value, so an error names its key: options.aggregates.total: ...
    aggregates: dict[str, Annotated[str, AfterValidator(_check_spec)]] = Field(min_length=1)


def _group_key(values: tuple[Any, ...]) -> tuple[Any, ...]:
    # Tag each value with its type so 1, 1.0 and True stay three groups.
    return tuple((type(v).__name__, json.dumps(v, sort_keys=True, default=repr)
                  if isinstance(v, (list, dict)) else v) for v in values)


class Summarize(BatchFunction):
    name: ClassVar[str] = "summarize"
    version: ClassVar[str] = "1"

    def __init__(self, options: Mapping[str, Any], *, base_dir: Path) -> None:
        super().__init__(options, base_dir=base_dir)
        self.config = parse_options(SummarizeOptions, options, self.name)
        overlap = set(self.config.group_by) & set(self.config.aggregates)
        if overlap:
            raise fail_option(self.name, ("aggregates", sorted(overlap)[0]),
                              "an aggregate cannot have the name of a group_by field")
        self.aggregates = tuple(Aggregate.parse(o, s) for o, s in self.config.aggregates.items())

    def process_batch(self, rows: Sequence[Row]) -> list[Row]:
        groups: dict[tuple[Any, ...], tuple[tuple[Any, ...], list[Row]]] = {}
        for row in rows:
            values = tuple(row.get(f) for f in self.config.group_by)
            groups.setdefault(_group_key(values), (values, []))[1].append(row)
        out: list[Row] = []
        for values, members in groups.values():
            result: Row = dict(zip(self.config.group_by, values))
            for agg in self.aggregates:
                result[agg.out] = self._aggregate(agg, members)
            out.append(result)
        return out

    def _aggregate(self, agg: Aggregate, rows: list[Row]) -> Any:
        if agg.field is None:
            return len(rows)
        values = [v for v in (r.get(agg.field) for r in rows) if v is not None]
        if agg.kind == "count":
            return len(values)
        if not values:
            return None
        if agg.kind in ("sum", "mean"):
            bad = next((v for v in values if type(v) not in (int, float)), None)
            if bad is not None:
                raise BatchFunctionError(f"summarize: {agg.kind}:{agg.field} needs numbers, got "
                                         f"{type(bad).__name__} {bad!r:.40}")
            exact = all(type(v) is int for v in values)
            try:
                total = sum(values) if exact else math.fsum(values)
            except OverflowError:
                raise BatchFunctionError(f"summarize: {agg.kind}:{agg.field} overflows") from None
            return total if agg.kind == "sum" else total / len(values)
        try:
            return min(values) if agg.kind == "min" else max(values)
        except TypeError:
            kinds = sorted({type(v).__name__ for v in values})
            raise BatchFunctionError(f"summarize: {agg.kind}:{agg.field} cannot compare "
                                     f"{' and '.join(kinds)}") from None
