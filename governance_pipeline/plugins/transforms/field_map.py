"""Row-shaping transforms: ``field_map`` (project through expressions), ``rename`` and
``compute`` (add or overwrite computed fields). None of them mutates its input row."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, field_validator

from governance_pipeline.engine.expressions import Expression, ExpressionEvalError
from governance_pipeline.engine.plugin_api import Row, Transform, TransformContext, TransformResult
from governance_pipeline.plugins.transforms._options import (
    StrictOptions, compile_option, parse_options)


def _check_names(names: Mapping[str, str] | list[str]) -> None:
    for name in names:
        if not name.strip():
            raise ValueError("field names must not be empty")


class ExpressionFields(StrictOptions):
    fields: dict[str, str] = Field(min_length=1)

    @field_validator("fields")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        _check_names(value)
        return value


class FieldMapOptions(ExpressionFields):
    keep_others: bool = False


class RenameOptions(StrictOptions):
    fields: dict[str, str] = Field(min_length=1)

    @field_validator("fields")
    @classmethod
    def _targets(cls, value: dict[str, str]) -> dict[str, str]:
        _check_names(value)
        _check_names(list(value.values()))
        targets = list(value.values())
        twice = sorted({t for t in targets if targets.count(t) > 1})
        if twice:
            raise ValueError(f"two fields renamed to the same name: {', '.join(twice)}")
        return value


def _compile_fields(plugin: str, fields: Mapping[str, str]) -> tuple[tuple[str, Expression], ...]:
    return tuple((name, compile_option(plugin, ("fields", name), text))
                 for name, text in fields.items())


def _eval_failure(name: str, exc: ExpressionEvalError) -> TransformResult:
    return TransformResult.fail("expression_error", f"fields.{name}: {exc.message}")


class _ExpressionFieldsTransform(Transform):
    """Shared by field_map and compute: named expressions compiled once, evaluated per row."""

    options_model: ClassVar[type[ExpressionFields]] = ExpressionFields

    def __init__(self, options: Mapping[str, Any], *, base_dir: Path) -> None:
        super().__init__(options, base_dir=base_dir)
        self.config = parse_options(self.options_model, options, self.name)
        self._fields = _compile_fields(self.name, self.config.fields)

    def _fill(self, out: Row, scope: Row) -> TransformResult:
        for name, expression in self._fields:
            try:
                out[name] = expression.evaluate(scope)
            except ExpressionEvalError as exc:
                return _eval_failure(name, exc)
        return TransformResult.ok(out)


class FieldMap(_ExpressionFieldsTransform):
    """Builds the output row from expressions over the input row (all see the *input* row)."""

    name: ClassVar[str] = "field_map"
    version: ClassVar[str] = "1"
    options_model = FieldMapOptions

    def process(self, row: Row, ctx: TransformContext) -> TransformResult:
        return self._fill(dict(row) if self.config.keep_others else {}, row)


class Compute(_ExpressionFieldsTransform):
    """Adds or overwrites computed fields, keeping the others. Fields are computed in the order
    written, and each expression sees the fields computed before it."""

    name: ClassVar[str] = "compute"
    version: ClassVar[str] = "1"

    def process(self, row: Row, ctx: TransformContext) -> TransformResult:
        out: Row = dict(row)
        return self._fill(out, out)


class Rename(Transform):
    """Renames fields in place (their position in the row is kept); swaps are allowed."""

    name: ClassVar[str] = "rename"
    version: ClassVar[str] = "1"

    def __init__(self, options: Mapping[str, Any], *, base_dir: Path) -> None:
        super().__init__(options, base_dir=base_dir)
        self.config = parse_options(RenameOptions, options, self.name)
        self._renames = dict(self.config.fields)

    def process(self, row: Row, ctx: TransformContext) -> TransformResult:
        renames = self._renames
        missing = [old for old in renames if old not in row]
        if missing:
            return TransformResult.fail(
                "missing_field", f"rename: field {', '.join(map(repr, missing))} not in the row")
        clash = [new for new in renames.values() if new in row and new not in renames]
        if clash:
            return TransformResult.fail(
                "field_collision",
                f"rename: the row already has a field {', '.join(map(repr, clash))}")
        return TransformResult.ok({renames.get(key, key): value for key, value in row.items()})
