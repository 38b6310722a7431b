"""The one compile path for regular expressions that users write (expressions, policy rules).

Python's ``re`` backtracks: ``(a|aa)+$`` on forty ``a``s and a ``b`` takes longer than anyone
waits, and no syntactic guard catches every such pattern. RE2 (``google-re2``) matches in time
linear in the input for every pattern it accepts and refuses the constructs that cannot be
matched that way (backreferences, look-arounds) at compile time, which is where we want the
refusal: at ``validate``, with the pattern's location.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import re2

#: Longest pattern accepted: a pattern is configuration, not data.
MAX_PATTERN_LENGTH = 1_000
#: RE2's memory budget for one compiled pattern; a pattern whose automaton needs more is refused.
MAX_PATTERN_MEMORY = 8 << 20


class UnsafePatternError(ValueError):
    """The pattern is too long, or RE2 refuses it; the message says which and why."""


def _options() -> Any:
    options = re2.Options()
    options.log_errors = False  # the error is ours to report, not absl's to print on stderr
    options.max_mem = MAX_PATTERN_MEMORY
    return options


@lru_cache(maxsize=512)
def compile_user_regex(pattern: str) -> Any:
    """An RE2-compiled ``pattern`` (``.search(text)`` as in ``re``); ``UnsafePatternError`` if
    it is too long or RE2 refuses it (backreferences, look-arounds, too large)."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise UnsafePatternError(f"pattern is {len(pattern)} characters long; at most "
                                 f"{MAX_PATTERN_LENGTH} are allowed")
    try:
        return re2.compile(pattern, _options())
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise UnsafePatternError(f"{reason} (RE2 syntax: no backreferences or "
                                 "look-arounds)") from None
