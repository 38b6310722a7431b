"""Option validation shared by the built-in transforms: pydantic errors become ``ConfigError``s
whose message names the option path (``options.fields.total: ...``)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from governance_pipeline.contracts.errors import TRANSFORM_OPTIONS_INVALID, ConfigError
from governance_pipeline.engine.expressions import (
    Expression, ExpressionSyntaxError, compile_expression)

M = TypeVar("M", bound=BaseModel)


class TransformOptionsError(ConfigError):
    default_code = TRANSFORM_OPTIONS_INVALID


class StrictOptions(BaseModel):
    """Options as written in YAML: unknown keys and silent coercions ("yes" → True) are errors."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def option_path(loc: Iterable[Any]) -> str:
    path = "options"
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _problem(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    if kind == "missing":
        message = "field required"
    elif kind == "extra_forbidden":
        message = "unknown option"
    else:
        message = str(error["msg"])
        message = message.removeprefix("Value error, ")
        message = message[:1].lower() + message[1:]
        message = re.sub(r" or instance of \w+$", "", message)
    return f"{option_path(error['loc'])}: {message}"


def parse_options(model: type[M], options: Any, plugin: str) -> M:
    """Validate ``options`` with ``model``; raise ``TransformOptionsError`` naming each bad path."""
    try:
        return model.model_validate(dict(options) if isinstance(options, Mapping) else options)
    except ValidationError as exc:
        problems = [_problem(e) for e in exc.errors()]
        raise TransformOptionsError(f"{plugin}: " + "; ".join(problems),
                                    details={"plugin": plugin, "problems": problems}) from None


def fail_option(plugin: str, loc: Iterable[Any], message: str) -> TransformOptionsError:
    path = option_path(loc)
    return TransformOptionsError(f"{plugin}: {path}: {message}",
                                 details={"plugin": plugin, "problems": [f"{path}: {message}"]})


def compile_option(plugin: str, loc: Iterable[Any], text: str) -> Expression:
    """Compile an expression option; a syntax error names the option it came from."""
    try:
        return compile_expression(text)
    except ExpressionSyntaxError as exc:
        raise exc.with_context(f"{plugin}: {option_path(loc)}") from None
