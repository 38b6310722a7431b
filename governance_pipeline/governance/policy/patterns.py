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

import re2

from governance_pipeline.contracts.errors import ConfigError
from governance_pipeline.governance.policy.model import PATTERN_UNSAFE

#: RE2's memory budget for one compiled pattern; a pattern whose automaton needs more is refused.
MAX_PATTERN_MEMORY = 8 << 20


def _options() -> Any:
    options = re2.Options()
    options.log_errors = False  # the error is ours to report, not absl's to print on stderr
    options.max_mem = MAX_PATTERN_MEMORY
    return options


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
        compiled = re2.compile(pattern, _options())
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise ConfigError(
            f"{where}: pattern {pattern!r} is not accepted: {reason} (RE2 syntax: no "
            "backreferences or look-arounds)", code=PATTERN_UNSAFE,
            details={"path": where, "pattern": pattern, "reason": str(reason)}) from None
    return UserPattern(pattern, compiled)
