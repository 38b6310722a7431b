"""Per-run state of budget and rate rules, and how it survives chunking and resume.

A run is processed in chunks; each chunk's checkpoint stores only what that chunk added
(``delta_since``), and resume rebuilds the state as the sum of the stored contributions
(``merged``). So the state must be a commutative sum of parts:

* a budget is a running total: contributions add up;
* a rate window is a multiset of event timestamps, of which only the ``max`` latest can ever
  decide a verdict (if ``max`` of them are inside the window the next event is too many, and
  the latest ones are the ones inside). Keeping the ``max`` greatest timestamps of everything
  ever added is a function of that multiset alone, so the union of the chunks' contributions,
  cut to the ``max`` greatest, is exactly the state of an uninterrupted run, and its size is
  bounded by ``max``.

Keys are ``"<policy_id>/<rule_id>"`` (ids cannot contain ``/``).
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections import Counter as _Multiset
from collections.abc import Iterable, Mapping
from typing import Any

from governance_pipeline.contracts.errors import AuditIntegrityError

FORMAT_VERSION = 1
_SAFE_INT = 2**53


def counter_key(policy_id: str, rule_id: str) -> str:
    return f"{policy_id}/{rule_id}"


def _check_number(value: Any, what: str) -> int | float:
    if type(value) not in (int, float) or (type(value) is float and not math.isfinite(value)):
        raise AuditIntegrityError(f"policy counters: {what} is not a finite number: {value!r}")
    return value


class Counters:
    """Budget totals and rate windows of one run (or one chunk's contribution to it)."""

    __slots__ = ("_budgets", "_rates")

    def __init__(self) -> None:
        self._budgets: dict[str, int | float] = {}
        self._rates: dict[str, tuple[int, list[float]]] = {}  # key -> (max, sorted timestamps)

    # --- budgets ------------------------------------------------------------------------------
    def budget_total(self, key: str) -> int | float:
        return self._budgets.get(key, 0)

    def add_to_budget(self, key: str, amount: int | float) -> int | float:
        """Add ``amount`` and return the new running total."""
        total = self._budgets.get(key, 0) + amount
        if type(total) is int and total > _SAFE_INT:
            total = float(total)  # stays canonical JSON (RFC 8785 integers are doubles)
        self._budgets[key] = total
        return total

    # --- rates --------------------------------------------------------------------------------
    def in_window(self, key: str, since: float) -> int:
        """Events recorded after ``since`` (at most the window's ``max``)."""
        entry = self._rates.get(key)
        if entry is None:
            return 0
        times = entry[1]
        return len(times) - bisect.bisect_right(times, since)

    def record_events(self, key: str, limit: int, moment: float, count: int) -> None:
        """Add ``count`` events at ``moment``, keeping the ``limit`` latest timestamps."""
        _, times = self._rates.get(key, (limit, []))
        times = times + [moment] * min(count, limit)
        self._rates[key] = (limit, _latest(times, limit))

    # --- persistence --------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "budgets": dict(sorted(self._budgets.items())),
            "rates": {key: {"max": limit, "times": list(times)}
                      for key, (limit, times) in sorted(self._rates.items())},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Counters:
        """Read counters back from a checkpoint (Tier-1: anything malformed is an integrity
        error, never a silently reset budget)."""
        if not isinstance(data, Mapping) or data.get("version") != FORMAT_VERSION:
            raise AuditIntegrityError(f"policy counters: unknown format {str(data)[:80]!r}")
        counters = cls()
        budgets, rates = data.get("budgets", {}), data.get("rates", {})
        if not isinstance(budgets, Mapping) or not isinstance(rates, Mapping):
            raise AuditIntegrityError("policy counters: budgets and rates must be mappings")
        for key, total in budgets.items():
            counters._budgets[str(key)] = _check_number(total, f"budget {key}")
        for key, entry in rates.items():
            if not isinstance(entry, Mapping) or type(entry.get("max")) is not int \
                    or entry["max"] < 1 or not isinstance(entry.get("times"), list):
                raise AuditIntegrityError(f"policy counters: malformed rate window {key}")
            times = [float(_check_number(t, f"rate {key} timestamp")) for t in entry["times"]]
            counters._rates[str(key)] = (entry["max"], _latest(times, entry["max"]))
        return counters

    @classmethod
    def merged(cls, parts: Iterable[Mapping[str, Any]]) -> Counters:
        """The state made of several contributions (``to_json`` or ``delta_since`` documents):
        budgets summed, rate windows united and cut to their ``max`` latest timestamps."""
        result = cls()
        for part in parts:
            piece = cls.from_json(part)
            for key, total in piece._budgets.items():
                result.add_to_budget(key, total)
            for key, (limit, times) in piece._rates.items():
                _, mine = result._rates.get(key, (limit, []))
                result._rates[key] = (limit, _latest(mine + times, limit))
        return result

    def delta_since(self, base: Counters) -> dict[str, Any]:
        """What this state holds beyond ``base`` (a copy taken before the chunk), as a document
        ``merged`` accepts: budget differences, and the timestamps not in ``base``'s windows."""
        budgets = {key: total - base.budget_total(key)
                   for key, total in sorted(self._budgets.items())
                   if total != base.budget_total(key)}
        rates: dict[str, Any] = {}
        for key, (limit, times) in sorted(self._rates.items()):
            added = _Multiset(times)
            if key in base._rates:
                added.subtract(_Multiset(base._rates[key][1]))
            fresh = sorted(moment for moment, n in added.items() for _ in range(max(n, 0)))
            if fresh:
                rates[key] = {"max": limit, "times": fresh}
        return {"version": FORMAT_VERSION, "budgets": budgets, "rates": rates}

    def copy(self) -> Counters:
        twin = Counters()
        twin._budgets = dict(self._budgets)
        twin._rates = {key: (limit, list(times)) for key, (limit, times) in self._rates.items()}
        return twin

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Counters):
            return NotImplemented
        return self.to_json() == other.to_json()

    def __repr__(self) -> str:
        return f"Counters({self.to_json()!r})"


def _latest(times: list[float], limit: int) -> list[float]:
    if len(times) <= limit:
        return sorted(times)
    return sorted(heapq.nlargest(limit, times))
