"""``python`` (a transform) and ``pandas`` (an aggregation's batch function): your own code.

``python`` with ``mode: row`` (the default) calls ``f(row: dict) -> dict`` once per row: a raise
sends that row down the node's ``on_error`` route with the exception's type and message recorded;
``None`` drops it (recorded as filtered). ``mode: dataframe`` calls ``f(df) -> df`` once per
chunk, the frame indexed by token id: rows missing from the result are recorded as filtered,
rows added or an index changed fail the chunk's rows with GP-TRANSFORM-006 naming the node,
unless ``expands: true`` (each output row keeps the index value of the row it came from; a row
with several output rows is expanded into child tokens).

``pandas`` calls ``f(df) -> df`` once per batch of an aggregation (``output: transform``).
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import pandas as pd
from pydantic import Field

from governance_pipeline.contracts.errors import (
    BATCH_FUNCTION_FAILED,
    PYTHON_FUNCTION_RAISED,
    PYTHON_ROW_IDENTITY,
    PYTHON_VALUE_UNREPRESENTABLE,
    GovernanceError,
)
from governance_pipeline.engine.plugin_api import (
    BatchFunction,
    ChunkTransform,
    FunctionIdentity,
    Row,
    TransformContext,
    TransformResult,
)
from governance_pipeline.plugins.transforms._frames import (
    Unrepresentable,
    frame_from_rows,
    plain_row,
    rows_from_frame,
)
from governance_pipeline.plugins.transforms._options import StrictOptions, fail_option, parse_options
from governance_pipeline.plugins.transforms._user_code import check_signature, load_function

_MESSAGE_LIMIT = 500


class PythonOptions(StrictOptions):
    function: str = Field(min_length=3)
    mode: Literal["row", "dataframe"] = "row"
    expands: bool = False
    #: Directories searched for the function's module before the pipeline's own directory,
    #: relative to the pipeline file.
    path: list[str] = Field(default_factory=list)


class PandasOptions(StrictOptions):
    function: str = Field(min_length=3)
    path: list[str] = Field(default_factory=list)


def exception_context(exc: BaseException, function: str) -> dict[str, Any]:
    """What the audit trail keeps of an exception: type, message, the frame that raised it."""
    message = str(exc)
    if len(message) > _MESSAGE_LIMIT:
        message = message[:_MESSAGE_LIMIT] + "…"
    frames = traceback.extract_tb(exc.__traceback__)
    last = frames[-1] if frames else None
    where = f"{Path(last.filename).name}:{last.lineno} in {last.name}" if last else None
    return {"function": function, "exception": {"type": type(exc).__qualname__,
                                                "message": message, "raised_at": where}}


class PythonTransform(ChunkTransform):
    name: ClassVar[str] = "python"
    version: ClassVar[str] = "1"

    def __init__(self, options: Mapping[str, Any], *, base_dir: Path) -> None:
        super().__init__(options, base_dir=base_dir)
        self.config = parse_options(PythonOptions, options, self.name)
        if self.config.expands and self.config.mode != "dataframe":
            raise fail_option(self.name, ("expands",), "expands: true needs mode: dataframe "
                              "(a row-wise function returns one row)")
        self.loaded = load_function(self.name, self.config.function, base_dir=base_dir,
                                    extra_dirs=self.config.path)
        check_signature(self.name, self.loaded, takes_frame=self.config.mode == "dataframe")
        self.fn = self.loaded.function
        self.qualname = self.loaded.identity.qualified_name

    def user_function(self) -> FunctionIdentity:
        return self.loaded.identity

    @property
    def takes_chunks(self) -> bool:
        return self.config.mode == "dataframe"

    # -- row-wise ---------------------------------------------------------------------------------
    def process(self, row: Row, ctx: TransformContext) -> TransformResult:
        try:
            out = self.fn(dict(row))  # a copy: the function may change it, the engine's row stays
        except Exception as exc:  # the user's code refused the row: recorded, row → on_error
            context = exception_context(exc, self.qualname)
            return TransformResult.fail(
                PYTHON_FUNCTION_RAISED.code,
                f"{self.qualname} raised {context['exception']['type']}: "
                f"{context['exception']['message']}", context)
        if out is None:
            return TransformResult.drop(f"{self.qualname} returned None")
        if not isinstance(out, Mapping):
            return TransformResult.fail(PYTHON_VALUE_UNREPRESENTABLE.code,
                                        f"{self.qualname} returned a {type(out).__name__}, "
                                        "not a dict", {"function": self.qualname})
        try:
            return TransformResult.ok(plain_row(out))
        except Unrepresentable as exc:
            return TransformResult.fail(PYTHON_VALUE_UNREPRESENTABLE.code,
                                        f"{self.qualname} returned {exc}",
                                        {"function": self.qualname, "field": exc.where})

    # -- one DataFrame per chunk ------------------------------------------------------------------
    def _all(self, n: int, code: str, reason: str,
             context: Mapping[str, Any] | None = None) -> list[TransformResult | Row]:
        result = TransformResult.fail(code, reason, {"function": self.qualname, **(context or {})})
        return [result] * n

    def process_chunk(self, rows: Sequence[Row],
                      keys: Sequence[str]) -> list[TransformResult | Row]:
        frame = frame_from_rows(rows, keys)
        try:
            out = self.fn(frame)
        except Exception as exc:  # the whole chunk's call failed: every row of it records why
            context = exception_context(exc, self.qualname)
            return self._all(len(rows), PYTHON_FUNCTION_RAISED.code,
                             f"{self.qualname} raised {context['exception']['type']}: "
                             f"{context['exception']['message']}", context)
        if not isinstance(out, pd.DataFrame):
            return self._all(len(rows), PYTHON_VALUE_UNREPRESENTABLE.code,
                             f"{self.qualname} returned a {type(out).__name__}, not a DataFrame")
        broken = self._identity_problem(frame.index, out.index)
        if broken is not None:
            return self._all(len(rows), PYTHON_ROW_IDENTITY.code, broken)
        try:
            values, bad = rows_from_frame(out)
        except Unrepresentable as exc:
            return self._all(len(rows), PYTHON_VALUE_UNREPRESENTABLE.code,
                             f"{self.qualname} returned {exc}")
        return self._results(frame.index.get_indexer(out.index).tolist(), values, bad, len(rows))

    def _identity_problem(self, before: pd.Index, after: pd.Index) -> str | None:
        unknown = ~after.isin(before)
        if unknown.any():
            sample = ", ".join(repr(v) for v in after[unknown][:3].tolist())
            return (f"{self.qualname} changed the index: {int(unknown.sum())} output row(s) "
                    f"carry index values that are no input row's ({sample}); keep the input "
                    "index (no reset_index / set_index / concat)")
        if not self.config.expands and not after.is_unique:
            dup = after[after.duplicated()][:3].tolist()
            return (f"{self.qualname} returned {len(after)} rows for {len(before)}, index values "
                    f"repeated ({', '.join(map(repr, dup))}): rows were added; declare "
                    "expands: true for one-to-many output")
        return None

    def _results(self, positions: list[int], values: list[Row], bad: dict[int, str],
                 n: int) -> list[TransformResult | Row]:
        if len(positions) == n and not bad and positions == list(range(n)):
            return list(values)  # every row kept, in order, unchanged in number: no grouping
        if not self.config.expands or len(set(positions)) == len(positions):
            return self._one_to_one(positions, values, bad, n)
        produced: list[list[int]] = [[] for _ in range(n)]
        for out_pos, in_pos in enumerate(positions):
            produced[in_pos].append(out_pos)
        results: list[TransformResult | Row] = []
        for outs in produced:
            if not outs:
                results.append(TransformResult.drop(
                    f"{self.qualname}: row not in the returned DataFrame"))
                continue
            refused = next((bad[o] for o in outs if o in bad), None)
            if refused is not None:
                results.append(TransformResult.fail(
                    PYTHON_VALUE_UNREPRESENTABLE.code, f"{self.qualname} returned {refused}",
                    {"function": self.qualname}))
            elif len(outs) == 1:
                results.append(values[outs[0]])
            else:
                results.append(TransformResult(expanded=tuple(values[o] for o in outs)))
        return results


    def _one_to_one(self, positions: list[int], values: list[Row], bad: dict[int, str],
                    n: int) -> list[TransformResult | Row]:
        """At most one output row per input row: a slot per input, dropped unless filled."""
        results: list[TransformResult | Row] = [TransformResult.drop(
            f"{self.qualname}: row not in the returned DataFrame")] * n
        for out_pos, in_pos in enumerate(positions):
            results[in_pos] = values[out_pos]
        for out_pos, why in bad.items():
            results[positions[out_pos]] = TransformResult.fail(
                PYTHON_VALUE_UNREPRESENTABLE.code, f"{self.qualname} returned {why}",
                {"function": self.qualname})
        return results


class PandasBatchError(GovernanceError):
    default_code = BATCH_FUNCTION_FAILED


class PandasBatch(BatchFunction):
    """An aggregation's batch as one DataFrame in, any DataFrame out (one output row per row)."""

    name: ClassVar[str] = "pandas"
    version: ClassVar[str] = "1"

    def __init__(self, options: Mapping[str, Any], *, base_dir: Path) -> None:
        super().__init__(options, base_dir=base_dir)
        self.config = parse_options(PandasOptions, options, self.name)
        self.loaded = load_function(self.name, self.config.function, base_dir=base_dir,
                                    extra_dirs=self.config.path)
        check_signature(self.name, self.loaded, takes_frame=True)
        self.qualname = self.loaded.identity.qualified_name

    def user_function(self) -> FunctionIdentity:
        return self.loaded.identity

    def process_batch(self, rows: Sequence[Row]) -> list[Row]:
        # Exceptions of the function propagate: the engine fails the batch with their message.
        out = self.loaded.function(frame_from_rows(rows))
        if not isinstance(out, pd.DataFrame):
            raise PandasBatchError(f"{self.qualname} returned a {type(out).__name__}, "
                                   "not a DataFrame")
        try:
            values, bad = rows_from_frame(out)
        except Unrepresentable as exc:
            raise PandasBatchError(f"{self.qualname} returned {exc}") from None
        if bad:
            position, why = min(bad.items())
            raise PandasBatchError(f"{self.qualname} returned, in output row {position}, {why}",
                                   code=PYTHON_VALUE_UNREPRESENTABLE)
        return values
