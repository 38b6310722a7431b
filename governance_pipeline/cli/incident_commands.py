"""``incidents [ID]``: incidents opened by enforced policy stops, with their inflection point."""

from __future__ import annotations

import click

from governance_pipeline.cli.access import open_landscape
from governance_pipeline.cli.approval_commands import default_actor
from governance_pipeline.cli.output import CliState, reporting, table
from governance_pipeline.contracts.enums import IncidentStatus
from governance_pipeline.governance.policy.incidents import (
    IncidentView,
    get_incident,
    incident_summary,
    list_incidents,
    update_incident,
)


@click.command("incidents")
@reporting
@click.argument("incident_id", required=False)
@click.option("--run", "run_id", help="Only incidents of this run.")
@click.option("--status", type=click.Choice([s.value for s in IncidentStatus]),
              help="Only incidents with this status.")
@click.option("--acknowledge", is_flag=True, help="Acknowledge INCIDENT_ID.")
@click.option("--resolve", "resolution", metavar="TEXT", help="Resolve INCIDENT_ID, saying how.")
@click.option("--actor", help="Who acts (default: $GOVERNANCE_ACTOR or the OS user).")
def incidents_cmd(state: CliState, incident_id: str | None, run_id: str | None,
                  status: str | None, acknowledge: bool, resolution: str | None,
                  actor: str | None) -> int:
    """List incidents, or show one: its inflection point (row, node, rule), the policy snapshot
    hash, what was written before the stop, and the lineage of the violating row."""
    with open_landscape(state.settings()) as landscape:
        if incident_id is None:
            found = list_incidents(landscape, run_id=run_id,
                                   status=IncidentStatus(status) if status else None)
            return _print_list(state, found)
        if acknowledge or resolution:
            update_incident(landscape, incident_id,
                            status=(IncidentStatus.RESOLVED if resolution
                                    else IncidentStatus.ACKNOWLEDGED),
                            actor=actor or default_actor(), note=resolution)
        view = get_incident(landscape, incident_id)
    if state.json:
        state.emit(view.as_dict())
        return 0
    _print_view(state, view)
    return 0


def _print_list(state: CliState, found: list) -> int:
    if state.json:
        state.emit([incident_summary(i) for i in found])
        return 0
    if not found:
        state.say("no incidents")
        return 0
    for line in table(["incident", "severity", "status", "run", "policy/rule", "detected"],
                      [[i.incident_id, i.severity.value, i.status.value, i.run_id,
                        f"{i.policy_id}/{i.rule_id}", i.detected_at] for i in found]):
        state.say(line)
    state.note("show one: governance-pipeline incidents INCIDENT_ID")
    return 0


def _print_view(state: CliState, view: IncidentView) -> None:
    doc = view.as_dict()
    i = view.incident
    state.say(f"incident {i.incident_id} [{i.severity.value}, {i.status.value}]")
    state.say(f"  {i.summary}")
    state.say(f"  run {view.run.run_id} ({view.run.pipeline_name}): {view.run.status.value}, "
              f"{doc['run']['termination_reason']}")
    if view.inflection is not None:
        p = view.inflection
        state.say("  inflection point:")
        state.say(f"    row {p.row_index}, token {p.token_id}, node {p.node_id} "
                  f"(step {p.step_index}) at {p.occurred_at}")
        state.say(f"    rule {p.policy_id}/{p.rule_id}: {p.reason}")
        state.say(f"    decision {p.decision_id}")
    state.say(f"  policy snapshot {i.policy_snapshot_id} sha256 {view.snapshot_hash}")
    if doc.get("fix"):
        state.say(f"  suggested fix: {doc['fix']}")
    written = doc["written_before_stop"]
    state.say(f"  written before the stop: chunks {written.get('chunks', [])}")
    for sink, rows in written.get("rows_per_sink", {}).items():
        state.say(f"    {sink}: {rows} row(s)")
    for a in written["artifacts"]:
        state.say(f"    artifact {a['sink']}: {a['rows']} row(s) {a['path']} "
                  f"sha256 {a['sha256'][:16]}…")
    if i.resolution:
        state.say(f"  resolution ({i.resolved_at}): {i.resolution}")
    if view.inflection is not None:
        state.note(f"lineage: governance-pipeline explain {i.run_id} --token "
                   f"{view.inflection.token_id}")
