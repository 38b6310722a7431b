"""``governance-pipeline audit-log``: the operator audit log (who ran, approved, exported…).

Every entry is a ledgered record (``verify`` detects an edited or deleted one); see
``governance/operator_log.py`` for what is recorded and ``docs/operations.md`` for the format.
"""

from __future__ import annotations

import click

from governance_pipeline.cli.access import open_landscape
from governance_pipeline.cli.output import CliState, reporting, table
from governance_pipeline.contracts.operator_records import OperatorAction, OperatorResult
from governance_pipeline.governance.operator_reads import (
    OperatorFilter,
    actions_matching,
    event_view,
    list_operator_events,
    parse_time,
)

_FAMILIES = sorted({a.value.split(".")[0] for a in OperatorAction})


@click.command("audit-log")
@reporting
@click.option("--actor", default=None, help="Only this actor's actions (exact name).")
@click.option("--since", default=None,
              help="From this time on: ISO-8601 (2026-12-01, 2026-12-01T08:00:00Z) or a span "
                   "back from now (30m, 24h, 7d, 2w).")
@click.option("--until", default=None, help="Before this time (same forms as --since).")
@click.option("--action", "action", default=None,
              help="An action or a family: " + ", ".join([a.value for a in OperatorAction]
                                                         + _FAMILIES) + ".")
@click.option("--result", type=click.Choice([r.value for r in OperatorResult]), default=None)
@click.option("--run", "run_id", default=None, help="Only entries in this run's ledger scope.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="The newest N only.")
def audit_log_cmd(state: CliState, actor: str | None, since: str | None, until: str | None,
                  action: str | None, result: str | None, run_id: str | None,
                  limit: int | None) -> int:
    """List operator actions, oldest first: time, actor, action, result and GP code, subject,
    and the hashes of the inputs (never a token)."""
    with open_landscape(state.settings()) as landscape:
        now = landscape.clock.now()
        flt = OperatorFilter(
            actor=actor, since=parse_time(since, now=now) if since else None,
            until=parse_time(until, now=now, option="--until") if until else None,
            actions=tuple(actions_matching(action)) if action else (),
            result=OperatorResult(result) if result else None, scope=run_id)
        found = list_operator_events(landscape, flt, limit=limit)
    if state.json:
        state.emit({"command": "audit-log", "filter": {
            "actor": actor, "since": flt.since, "until": flt.until,
            "actions": [a.value for a in flt.actions], "result": result, "run": run_id},
            "events": [event_view(e) for e in found]})
        return 0
    if not found:
        state.say("no operator actions match")
        return 0
    rows = [(e.occurred_at, e.actor, e.action.value, e.result.value + (f" {e.code}" if e.code
                                                                       else ""),
             e.surface.value, e.subject or "-", e.inputs_hash[:12] + "…") for e in found]
    for line in table(("TIME", "ACTOR", "ACTION", "RESULT", "VIA", "SUBJECT", "INPUTS"), rows):
        state.say(line)
    state.note("inputs and details: governance-pipeline audit-log --json")
    return 0
