"""``governance-pipeline export evidence|soc2|debrief``: write a signed bundle directory.

Each command is a declared export surface: it checks the subject and the output directory and
re-runs the sweep and ledger verification of the bundle's scopes (``plan_export``; nothing is
recorded and no approval used when that fails), then passes the export guard, which uses the
approval token once (blocked: recorded, exit 4, with the ``approvals request`` command to run),
then writes the bundle (``write_export``). The token is ``--approval-token``, else
``$GOVERNANCE_APPROVAL_TOKEN``.
"""

from __future__ import annotations

from pathlib import Path

import click

from governance_pipeline.cli.access import open_landscape
from governance_pipeline.cli.approval_commands import default_actor
from governance_pipeline.cli.output import CliState, reporting
from governance_pipeline.contracts.enums import ExportKind
from governance_pipeline.governance.approvals.export_guard import (
    export_action,
    export_surface,
    guard_export,
)
from governance_pipeline.governance.exports.service import (
    ExportResult,
    default_out_dir,
    plan_export,
    soc2_subject,
    write_export,
)

TOKEN_ENV = "GOVERNANCE_APPROVAL_TOKEN"

_OUT = click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path),
                    default=None, help="Bundle directory (new or empty; default "
                                       "$GOVERNANCE_HOME/exports/<kind>/<subject>).")
_TOKEN = click.option("--approval-token", "approval_token", envvar=TOKEN_ENV, default=None,
                      show_envvar=True, help="The export approval's token (used once).")
_ACTOR = click.option("--actor", default=None,
                      help="Who exports (default $GOVERNANCE_ACTOR, else the OS user).")


@click.group("export")
def export_group() -> None:
    """Write an evidence, SOC 2 or debrief bundle (needs an approved export ladder)."""


def _out(state: CliState, out: Path | None, kind: ExportKind, subject: str) -> Path:
    return (out or default_out_dir(state.settings().home, kind, subject)).resolve()


def _report(state: CliState, command: str, result: ExportResult) -> int:
    if state.json:
        state.emit({"command": command, **result.as_dict()})
        return 0
    state.say(f"wrote {result.kind.value} bundle of {result.subject} (tenant "
              f"{result.tenant_id}) to {result.path}")
    state.say(f"bundle digest sha256:{result.bundle_digest} (manifest.json, signed by key "
              f"{result.bundle.key_id})")
    state.say(f"export {result.export_id}, approval {result.approval_id}")
    for name, digest in sorted(result.bundle.files.items()):
        state.say(f"  {name:<16} sha256:{digest.sha256}  {digest.size} bytes")
    state.note(f"check it offline: governance-pipeline verify-bundle {result.path} "
               "--trusted-key PUBLISHED_KEY.pem (the pinned key; `governance-pipeline keys "
               "public` prints the signing key)")
    return 0


@export_group.command("evidence")
@reporting
@click.argument("run_id")
@_OUT
@_TOKEN
@_ACTOR
@export_surface("cli:export evidence")
def evidence_cmd(state: CliState, run_id: str, out: Path | None, approval_token: str | None,
                 actor: str | None) -> int:
    """The evidence bundle of one ended run."""
    with open_landscape(state.settings()) as landscape, \
            export_action(landscape, ExportKind.EVIDENCE, run_id,
                          requested_by=actor or default_actor(),
                          surface="cli:export evidence") as act:
        plan = plan_export(landscape, ExportKind.EVIDENCE, run_id,
                           out_dir=_out(state, out, ExportKind.EVIDENCE, run_id))
        clearance = guard_export(landscape, **plan.guard_args(), surface="cli:export evidence",
                                 requested_by=actor or default_actor(),
                                 approval_token=approval_token, operator=act)
        result = write_export(landscape, plan, clearance, operator=act)
    return _report(state, "export evidence", result)


@export_group.command("soc2")
@reporting
@click.option("--period", required=True, help="The month, YYYY-MM (UTC).")
@click.option("--tenant", default=None,
              help="Restrict the bundle to one tenant (export subject YYYY-MM/<tenant>); by "
                   "default it covers every tenant under the 'default' tenant's approval.")
@click.option("--format", "fmt", type=click.Choice(["json", "oscal"]), default="json",
              show_default=True, help="json: bundle.json + bundle.pdf; oscal: also "
                                      "bundle.oscal.json (OSCAL 1.2 assessment-results).")
@_OUT
@_TOKEN
@_ACTOR
@export_surface("cli:export soc2")
def soc2_cmd(state: CliState, period: str, tenant: str | None, fmt: str, out: Path | None,
             approval_token: str | None, actor: str | None) -> int:
    """The SOC 2 controls bundle of one month (--format oscal adds the OSCAL document)."""
    subject = soc2_subject(period, tenant)
    with open_landscape(state.settings()) as landscape, \
            export_action(landscape, ExportKind.SOC2, subject,
                          requested_by=actor or default_actor(), surface="cli:export soc2") as act:
        plan = plan_export(landscape, ExportKind.SOC2, period, tenant=tenant,
                           out_dir=_out(state, out, ExportKind.SOC2, subject))
        clearance = guard_export(landscape, **plan.guard_args(), surface="cli:export soc2",
                                 requested_by=actor or default_actor(),
                                 approval_token=approval_token, operator=act)
        result = write_export(landscape, plan, clearance, operator=act, oscal=fmt == "oscal")
    return _report(state, "export soc2", result)


@export_group.command("debrief")
@reporting
@click.argument("incident_id")
@_OUT
@_TOKEN
@_ACTOR
@export_surface("cli:export debrief")
def debrief_cmd(state: CliState, incident_id: str, out: Path | None,
                approval_token: str | None, actor: str | None) -> int:
    """The executive debrief of one incident."""
    with open_landscape(state.settings()) as landscape, \
            export_action(landscape, ExportKind.DEBRIEF, incident_id,
                          requested_by=actor or default_actor(),
                          surface="cli:export debrief") as act:
        plan = plan_export(landscape, ExportKind.DEBRIEF, incident_id,
                           out_dir=_out(state, out, ExportKind.DEBRIEF, incident_id))
        clearance = guard_export(landscape, **plan.guard_args(), surface="cli:export debrief",
                                 requested_by=actor or default_actor(),
                                 approval_token=approval_token, operator=act)
        result = write_export(landscape, plan, clearance, operator=act)
    return _report(state, "export debrief", result)
