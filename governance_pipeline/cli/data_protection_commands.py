"""``purge``, ``hold`` and ``erase``: retention, legal holds and erasure by subject.

Each refusal (unknown run, field or value; retention under the floor; a run under legal hold or
failing verify) is an error with its code and fix, raised before anything is written.
"""

from __future__ import annotations

import click

from governance_pipeline.cli.access import open_landscape
from governance_pipeline.cli.approval_commands import default_actor
from governance_pipeline.cli.output import CliState, reporting, table
from governance_pipeline.contracts.data_protection import HoldTarget
from governance_pipeline.contracts.errors import ERASE_SELECTOR_INVALID, ConfigError
from governance_pipeline.governance.data_protection.erase import erase
from governance_pipeline.governance.data_protection.holds import (
    list_holds,
    place_hold,
    release_hold,
)
from governance_pipeline.governance.data_protection.purge import PurgePlan, plan_purge, purge

_ACTOR = click.option("--actor", default=None,
                      help="Who acts (default $GOVERNANCE_ACTOR, else the OS user).")


@click.command("purge")
@reporting
@click.option("--dry-run", is_flag=True, help="List what would be purged; change nothing.")
@click.option("--run", "run_id", help="Only this run (refused if it is under legal hold).")
@click.option("--reason", help="Why (recorded with the purge).")
@_ACTOR
def purge_cmd(state: CliState, dry_run: bool, run_id: str | None, reason: str | None,
              actor: str | None) -> int:
    """Remove payload contents past retention (hashes stay; verify reports them as purged)."""
    with open_landscape(state.settings()) as landscape:
        if dry_run:
            plan = plan_purge(landscape, run_id=run_id)
        else:
            plan = purge(landscape, actor=actor or default_actor(), reason=reason,
                         run_id=run_id)
    if state.json:
        state.emit({"command": "purge", **plan.as_dict()})
        return 0
    _print_plan(state, plan)
    return 0


def _print_plan(state: CliState, plan: PurgePlan) -> None:
    verb = "would purge" if plan.dry_run else "purged"
    if plan.runs:
        for line in table(("RUN ID", "PIPELINE", "ENDED", "SCOPE", "RETENTION", "PAYLOADS"),
                          [(r.run_id, r.pipeline, r.ended_at, r.scope.value,
                            f"{r.retention_days}d ({r.origin})", str(len(r.payload_hashes)))
                           for r in plan.runs]):
            state.say(line)
    for run_id, holds in sorted(plan.held.items()):
        state.say(f"held: run {run_id} is past retention but under legal hold "
                  f"{', '.join(holds)}: kept")
    done = f" (purge {plan.purge_id})" if plan.purge_id else ""
    state.say(f"{verb}: {len(plan.payload_hashes)} payload(s) of {len(plan.runs)} run(s){done}; "
              f"floor {plan.floor_days} days")


# --- hold -----------------------------------------------------------------------------------------
@click.group("hold")
def hold_group() -> None:
    """Legal holds: a held run (or an incident's run) is never purged."""


@hold_group.command("add")
@reporting
@click.option("--run", "run_id", help="Hold this run.")
@click.option("--incident", "incident_id", help="Hold this incident's run.")
@click.option("--reason", required=True, help="Why (e.g. the matter or case number).")
@_ACTOR
def hold_add(state: CliState, run_id: str | None, incident_id: str | None, reason: str,
             actor: str | None) -> int:
    """Place a legal hold on a run or an incident."""
    if (run_id is None) == (incident_id is None):
        raise click.UsageError("give exactly one of --run RUN_ID or --incident INCIDENT_ID")
    kind, target = ((HoldTarget.RUN, run_id) if run_id is not None
                    else (HoldTarget.INCIDENT, incident_id))
    with open_landscape(state.settings()) as landscape:
        hold = place_hold(landscape, kind, target, actor=actor or default_actor(),  # type: ignore[arg-type]
                          reason=reason)
    if state.json:
        state.emit({"command": "hold add", **hold.as_dict()})
    else:
        state.say(f"hold {hold.hold_id} placed on {kind.value} {target} by {hold.placed_by}")
    return 0


@hold_group.command("remove")
@reporting
@click.argument("hold_id")
@click.option("--reason", required=True, help="Why the hold ends.")
@_ACTOR
def hold_remove(state: CliState, hold_id: str, reason: str, actor: str | None) -> int:
    """Release a legal hold (the hold and its release stay in the ledger)."""
    with open_landscape(state.settings()) as landscape:
        hold = release_hold(landscape, hold_id, actor=actor or default_actor(), reason=reason)
    if state.json:
        state.emit({"command": "hold remove", **hold.as_dict()})
    else:
        state.say(f"hold {hold.hold_id} released by {hold.released_by}")
    return 0


@hold_group.command("list")
@reporting
@click.option("--all", "include_released", is_flag=True, help="Released holds too.")
def hold_list(state: CliState, include_released: bool) -> int:
    """List legal holds (active ones unless --all)."""
    with open_landscape(state.settings()) as landscape:
        holds = list_holds(landscape, include_released=include_released)
    if state.json:
        state.emit({"command": "hold list", "holds": [h.as_dict() for h in holds]})
        return 0
    if not holds:
        state.say("no legal holds")
        return 0
    for line in table(("HOLD ID", "TARGET", "BY", "PLACED", "RELEASED", "REASON"),
                      [(h.hold_id, f"{h.target_kind.value} {h.target_id}", h.placed_by,
                        h.placed_at, h.released_at or "-", h.reason) for h in holds]):
        state.say(line)
    return 0


# --- erase ----------------------------------------------------------------------------------------
@click.command("erase")
@reporting
@click.option("--field", "field_name", help="A declared subject field (subject_fields:).")
@click.option("--value", help="The subject's value in that field (compared as text).")
@click.option("--run", "run_id", help="Erase by row: the run...")
@click.option("--row", "row_index", type=click.IntRange(min=0), help="...and the row index.")
@click.option("--reason", default=None, help="Why (e.g. the erasure request's reference).")
@_ACTOR
def erase_cmd(state: CliState, field_name: str | None, value: str | None, run_id: str | None,
              row_index: int | None, reason: str | None, actor: str | None) -> int:
    """Crypto-shred a data subject's payloads: destroy their keys, record the erasure."""
    if not reason:
        raise ConfigError("erase needs --reason TEXT", code=ERASE_SELECTOR_INVALID)
    with open_landscape(state.settings()) as landscape:
        result = erase(landscape, actor=actor or default_actor(), reason=reason,
                       field=field_name, value=value, run_id=run_id, row_index=row_index)
    doc = result.as_dict()
    if state.json:
        state.emit({"command": "erase", **doc})
        return 0
    state.say(f"erasure {doc['erasure_id']}: {doc['key_count']} key(s) destroyed, "
              f"{doc['payload_count']} payload(s) unreadable, {doc['row_count']} row(s) in "
              f"{len(doc['runs'])} run(s)")
    state.note("sink outputs already delivered are not touched: docs/data_protection.md")
    return 0


COMMANDS = (purge_cmd, hold_group, erase_cmd)
