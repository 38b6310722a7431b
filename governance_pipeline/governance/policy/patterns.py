"""User-written patterns (the ``pattern`` rule), compiled with RE2.

A policy author's regex runs on every row of every run, on text we do not control. Python's
``re`` backtracks, so ``(a+)+$`` on 50,000 ``a``s followed by ``!`` would run for longer than the
universe has existed. RE2 (the ``google-re2`` package) guarantees time linear in the input for
every pattern it accepts; it refuses the constructs that cannot be matched that way
(backreferences, look-arounds), which is exactly the refusal we want, at compile time, with the
rule's path. The ``pattern`` rule refuses values over ``text.MAX_INSPECT_CHARS``, bounding memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from governance_pipeline.contracts.errors import ConfigError
from governance_pipeline.engine.user_patterns import UnsafePatternError, compile_user_regex
from governance_pipeline.governance.policy.model import PATTERN_UNSAFE


@dataclass(frozen=True, slots=True)
class UserPattern:
    source: str
    _compiled: Any

    def search(self, text: str) -> bool:
        """Whether the pattern occurs in ``text`` (callers bound its length)."""
        return self._compiled.search(text) is not None


def compile_user_pattern(pattern: str, *, where: str) -> UserPattern:
    """Compile ``pattern`` with RE2; ``ConfigError`` (GP-POLICY-011) names ``where`` and why."""
    try:
        compiled = compile_user_regex(pattern)
    except UnsafePatternError as exc:
        raise ConfigError(
            f"{where}: pattern {pattern!r} is not accepted: {exc}", code=PATTERN_UNSAFE,
            details={"path": where, "pattern": pattern, "reason": str(exc)}) from None
    return UserPattern(pattern, compiled)
