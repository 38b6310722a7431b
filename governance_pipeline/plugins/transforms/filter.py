"""``filter``: keeps the rows for which an expression is true and drops the others, with a reason."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from governance_pipeline.engine.expressions import ExpressionEvalError
from governance_pipeline.engine.plugin_api import Row, Transform, TransformContext, TransformResult
from governance_pipeline.plugins.transforms._options import (
    StrictOptions, compile_option, parse_options)


class FilterOptions(StrictOptions):
    when: str


class Filter(Transform):
    """The condition must evaluate to ``true`` or ``false``; anything else fails the row, so a
    null or a zero never drops a row by accident."""

    name: ClassVar[str] = "filter"
    version: ClassVar[str] = "1"

    def __init__(self, options: Mapping[str, Any], *, base_dir: Path) -> None:
        super().__init__(options, base_dir=base_dir)
        self.config = parse_options(FilterOptions, options, self.name)
        self.condition = compile_option(self.name, ("when",), self.config.when)
        self._reason = f"filter: {self.config.when!r} is false"

    def process(self, row: Row, ctx: TransformContext) -> TransformResult:
        try:
            keep = self.condition.holds(row)
        except ExpressionEvalError as exc:
            return TransformResult.fail("expression_error", f"when: {exc.message}")
        # The row passes unchanged; a shallow copy keeps the engine's input row ours alone.
        return TransformResult.ok(dict(row)) if keep else TransformResult.drop(self._reason)
