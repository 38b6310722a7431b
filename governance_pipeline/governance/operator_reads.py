"""Reading the operator audit log: filters of ``governance-pipeline audit-log`` and the SOC 2
populations (every row through the Tier-1 read of ``OperatorEvent``).

Times given by an operator are parsed here: an ISO-8601 date or date-time (``2026-12-01``,
``2026-12-01T08:00:00Z``, an offset), or a span back from now by the Landscape's clock
(``30m``, ``24h``, ``7d``, ``2w``). Anything else is ``GP-OPS-001`` with the forms that work.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Select, select

from governance_pipeline.contracts.clock import to_iso
from governance_pipeline.contracts.errors import ConfigError, ExitCode, register
from governance_pipeline.contracts.operator_records import (
    OperatorAction,
    OperatorEvent,
    OperatorResult,
)
from governance_pipeline.landscape.queries import reading
from governance_pipeline.landscape.schema import operator_events
from governance_pipeline.landscape.store import Landscape

OPS_TIME_INVALID = register(
    "GP-OPS-001", "A time filter of the operator audit log cannot be read",
    "Give an ISO-8601 date or date-time (2026-12-01, 2026-12-01T08:00:00Z, "
    "2026-12-01T09:00:00+01:00) or a span back from now: 30m, 24h, 7d, 2w.",
    ExitCode.INVALID_INPUT)
OPS_ACTION_UNKNOWN = register(
    "GP-OPS-002", "Unknown operator action",
    "Name an action (run.start, approval.approve, export, …) or a family (run, approval, "
    "token, export, incident, retention, erasure, keys): `governance-pipeline audit-log "
    "--help` lists them.",
    ExitCode.INVALID_INPUT)

_SPAN = re.compile(r"^(\d{1,6})([mhdw])$")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_time(text: str, *, now: datetime, option: str = "--since") -> str:
    """The stored (fixed-width ISO UTC) form of an operator-given time."""
    value = text.strip()
    span = _SPAN.match(value)
    if span:
        return to_iso(now - timedelta(seconds=int(span.group(1)) * _UNIT_SECONDS[span.group(2)]))
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z")
                                        else value)
    except ValueError:
        raise ConfigError(f"{option} {text!r} is neither an ISO-8601 date/time nor a span "
                          "such as 24h", code=OPS_TIME_INVALID,
                          details={"option": option, "value": text}) from None
    if moment.tzinfo is None:  # a bare date or local-looking time: read as UTC, say so in docs
        moment = moment.replace(tzinfo=UTC)
    return to_iso(moment)


def actions_matching(name: str) -> list[OperatorAction]:
    """An action by its value, or every action of a family (``approval`` → approval.*)."""
    exact = [a for a in OperatorAction if a.value == name]
    family = [a for a in OperatorAction if a.value.split(".")[0] == name]
    found = exact or family
    if not found:
        raise ConfigError(f"no operator action or family {name!r}", code=OPS_ACTION_UNKNOWN,
                          details={"action": name,
                                   "actions": [a.value for a in OperatorAction]})
    return found


@dataclass(frozen=True, slots=True)
class OperatorFilter:
    actor: str | None = None
    since: str | None = None      # stored form, inclusive
    until: str | None = None      # stored form, exclusive
    actions: tuple[OperatorAction, ...] = ()
    result: OperatorResult | None = None
    scope: str | None = None

    def apply(self, query: Select[Any]) -> Select[Any]:
        t = operator_events.c
        if self.actor is not None:
            query = query.where(t.actor == self.actor)
        if self.since is not None:
            query = query.where(t.occurred_at >= self.since)
        if self.until is not None:
            query = query.where(t.occurred_at < self.until)
        if self.actions:
            query = query.where(t.action.in_([a.value for a in self.actions]))
        if self.result is not None:
            query = query.where(t.result == self.result.value)
        if self.scope is not None:
            query = query.where(t.scope == self.scope)
        return query


def operator_query(flt: OperatorFilter) -> Select[Any]:
    """Oldest first (the log reads as it happened); ties broken by id for a stable order."""
    return flt.apply(select(operator_events)).order_by(operator_events.c.occurred_at,
                                                       operator_events.c.event_id)


def list_operator_events(landscape: Landscape, flt: OperatorFilter = OperatorFilter(), *,
                         limit: int | None = None) -> list[OperatorEvent]:
    query = operator_query(flt)
    with reading(landscape) as conn:
        found = [OperatorEvent.from_row(r) for r in conn.execute(query).mappings()]
    return found[-limit:] if limit else found


def event_view(e: OperatorEvent) -> dict[str, Any]:
    return {"event_id": e.event_id, "occurred_at": e.occurred_at, "actor": e.actor,
            "action": e.action.value, "surface": e.surface.value, "subject": e.subject,
            "result": e.result.value, "code": e.code, "detail": e.detail,
            "inputs": orjson.loads(e.inputs_json), "inputs_hash": e.inputs_hash,
            "scope": e.scope}
