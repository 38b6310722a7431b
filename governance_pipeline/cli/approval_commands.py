"""``governance-pipeline approvals``: request, decide, delegate, reset, consume, list, show.

The actor is ``--actor``, else ``$GOVERNANCE_ACTOR``, else the OS user. A request prints its
token once: only its SHA-256 is stored, so a lost token means a new request.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from governance_pipeline.cli.access import open_landscape
from governance_pipeline.cli.output import CliState, reporting, table
from governance_pipeline.contracts.enums import ApprovalStatus, Decision, ExportKind
from governance_pipeline.contracts.errors import USAGE_INVALID, GovernanceError
from governance_pipeline.governance.approvals import ApprovalService, ApprovalView
from governance_pipeline.governance.operator_log import ACTOR_ENV, default_actor
from governance_pipeline.governance.approvals.export_guard import export_subject_hash

_TOKEN_WARNING = ("store this token now: it is shown once and only its hash is kept; whoever "
                  "holds it can use the approval once")


_ACTOR = click.option("--actor", default=None,
                      help=f"Who acts (default ${ACTOR_ENV}, else the OS user).")
_KINDS = click.Choice([k.value for k in ExportKind])


def _usage(message: str) -> GovernanceError:
    return GovernanceError(message, code=USAGE_INVALID)


def _pipeline_subject(state: CliState, path: Path) -> tuple[str, str, str, int]:
    """(tenant, ir_hash, subject_ref, risk tier) of a pipeline file."""
    from governance_pipeline.engine.config import load_pipeline
    from governance_pipeline.governance.ir.model import ir_hash
    from governance_pipeline.governance.ir.risk import validate_ir

    os.environ["GOVERNANCE_HOME"] = str(state.settings().home)
    config = load_pipeline(path.resolve())
    return config.tenant, ir_hash(config), str(path), validate_ir(config).risk_tier


def _subject(state: CliState, pipeline: Path | None, export: str | None, subject: str | None,
             tenant: str | None) -> tuple[str, str, str, str, int | None]:
    """(subject_type, tenant, subject_hash, subject_ref, risk tier) from the options."""
    if (pipeline is None) == (export is None):
        raise _usage("give either a PIPELINE file or --export KIND --subject SUBJECT")
    if pipeline is not None:
        p_tenant, digest, ref, tier = _pipeline_subject(state, pipeline)
        if tenant is not None and tenant != p_tenant:
            raise _usage(f"--tenant {tenant} differs from the pipeline's tenant {p_tenant}")
        return "pipeline", p_tenant, digest, ref, tier
    if not subject:
        raise _usage("--export needs --subject (run id, period YYYY-MM or incident id)")
    t = tenant or "default"
    return "export", t, export_subject_hash(ExportKind(export), subject, t), \
        f"{export} {subject}", None


def _say_view(state: CliState, view: ApprovalView) -> None:
    a = view.approval
    state.say(f"approval {a.approval_id}: {a.status.value} (round {a.round}, ladder "
              f"{view.ladder.get('name')})")
    state.say(f"  {a.subject_type} {a.subject_ref} [{a.subject_hash}] tenant {a.tenant_id}, "
              f"requested by {a.requested_by}, token expires {a.token_expires_at}")
    for s in view.stages:
        state.say(f"  {s.ordinal + 1}. {s.name} ({s.approver_role}) {s.status.value} "
                  f"{view.approvals_count(s)}/{s.quorum}, approvers "
                  f"{', '.join(view.approvers(s))}, due {s.due_at or '-'}"
                  + (f", escalated {s.escalated_at}" if s.escalated_at else ""))


def _emit_view(state: CliState, command: str, view: ApprovalView, **extra: Any) -> int:
    if state.json:
        state.emit({"command": f"approvals {command}", **extra, "approval": view.as_dict()})
    else:
        _say_view(state, view)
    return 0


@click.group("approvals")
def approvals_group() -> None:
    """Approval ladders: request, decide, delegate, reset, consume (docs/approvals.md)."""


@approvals_group.command("list")
@reporting
@click.option("--tenant", default=None)
@click.option("--status", type=click.Choice([s.value for s in ApprovalStatus]), default=None)
@click.option("--limit", type=click.IntRange(min=1), default=None)
def list_cmd(state: CliState, tenant: str | None, status: str | None, limit: int | None) -> int:
    """List approval requests, newest first."""
    with open_landscape(state.settings()) as landscape:
        views = ApprovalService(landscape).list(
            tenant_id=tenant, status=ApprovalStatus(status) if status else None, limit=limit)
    if state.json:
        state.emit({"command": "approvals list", "approvals": [v.as_dict() for v in views]})
        return 0
    if not views:
        state.say("no approval requests")
        return 0
    rows = [(v.approval_id, v.approval.status.value, v.approval.tenant_id,
             v.approval.subject_type, v.approval.subject_ref,
             v.active_stage.name if v.active_stage else "-", v.approval.created_at)
            for v in views]
    for line in table(("APPROVAL ID", "STATUS", "TENANT", "TYPE", "SUBJECT", "ACTIVE STAGE",
                       "CREATED"), rows):
        state.say(line)
    return 0


@approvals_group.command("show")
@reporting
@click.argument("approval_id")
def show_cmd(state: CliState, approval_id: str) -> int:
    """Show one request with its stages, decisions and delegations."""
    with open_landscape(state.settings()) as landscape:
        view = ApprovalService(landscape).get(approval_id)
    return _emit_view(state, "show", view)


@approvals_group.command("request")
@reporting
@click.argument("pipeline", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--export", "export", type=_KINDS, default=None, help="Request an export instead.")
@click.option("--subject", default=None, help="Export subject: run id, YYYY-MM or incident id.")
@click.option("--tenant", default=None, help="Tenant (exports; default 'default').")
@click.option("--ladder", default=None, help="Ladder name (default: by subject and risk tier).")
@click.option("--ttl", "ttl", type=click.IntRange(min=1), default=None,
              help="Token lifetime in seconds (default 86400).")
@click.option("--reason", default=None)
@_ACTOR
def request_cmd(state: CliState, pipeline: Path | None, export: str | None,
                subject: str | None, tenant: str | None, ladder: str | None, ttl: int | None,
                reason: str | None, actor: str | None) -> int:
    """Request approval of a pipeline (its IR hash) or of an export; prints the token once."""
    kind, t, digest, ref, tier = _subject(state, pipeline, export, subject, tenant)
    if kind == "pipeline" and ladder is None and pipeline is not None:
        from governance_pipeline.engine.config import load_pipeline
        ladder = load_pipeline(pipeline.resolve()).approval_ladder
    # An approval may come before the first run (of a pipeline, or of an export's subject).
    with open_landscape(state.settings(), create=True) as landscape:
        service = ApprovalService(landscape)
        approval, token = service.request(
            tenant_id=t, subject_type=kind, subject_hash=digest,  # type: ignore[arg-type]
            subject_ref=ref, requested_by=actor or default_actor(), ladder=ladder,
            ttl_seconds=ttl, reason=reason, risk_tier=tier)
        view = service.get(approval.approval_id)
    if state.json:
        return _emit_view(state, "request", view, token=token, warning=_TOKEN_WARNING)
    _say_view(state, view)
    state.say(f"token: {token}")
    click.echo(f"warning: {_TOKEN_WARNING}", err=True)
    return 0


@approvals_group.command("decide")
@reporting
@click.argument("approval_id")
@click.argument("decision", type=click.Choice([d.value for d in Decision]))
@click.option("--role", required=True, help="The role you act for (the active stage's role).")
@click.option("--reason", default=None)
@click.option("--key", "key_file", default=None,
              type=click.Path(dir_okay=False, path_type=Path),
              help="Sign the decision with this Ed25519 private key (OpenSSH or PEM); "
                   "required by a signed ladder.")
@_ACTOR
def decide_cmd(state: CliState, approval_id: str, decision: str, role: str,
               reason: str | None, key_file: Path | None, actor: str | None) -> int:
    """Approve or reject the active stage of a request (signed with --key)."""
    from governance_pipeline.governance.approvals.decision_keys import (
        load_private_key,
        sign_decision,
    )

    who = actor or default_actor()
    private = load_private_key(key_file) if key_file is not None else None
    with open_landscape(state.settings()) as landscape:
        service = ApprovalService(landscape)
        signed = None
        if private is not None:
            signed = sign_decision(service.decision_statement(
                approval_id, actor=who, role=role, decision=Decision(decision)), private)
        view = service.decide(approval_id, actor=who, role=role, decision=Decision(decision),
                              reason=reason, signed=signed)
    return _emit_view(state, "decide", view)


@approvals_group.command("delegate")
@reporting
@click.argument("approval_id")
@click.option("--role", required=True)
@click.option("--to", "to_actor", required=True, help="Who receives your vote.")
@click.option("--reason", default=None)
@_ACTOR
def delegate_cmd(state: CliState, approval_id: str, role: str, to_actor: str,
                 reason: str | None, actor: str | None) -> int:
    """Delegate your vote on the stage of ROLE to another person (this round)."""
    with open_landscape(state.settings()) as landscape:
        view = ApprovalService(landscape).delegate(approval_id,
                                                   from_actor=actor or default_actor(),
                                                   to_actor=to_actor, role=role, reason=reason)
    return _emit_view(state, "delegate", view)


@approvals_group.command("reset")
@reporting
@click.argument("approval_id")
@click.option("--reason", required=True)
@_ACTOR
def reset_cmd(state: CliState, approval_id: str, reason: str, actor: str | None) -> int:
    """Start a new round: every stage decides again (earlier decisions stay in the trail)."""
    with open_landscape(state.settings()) as landscape:
        view = ApprovalService(landscape).reset(approval_id, actor=actor or default_actor(),
                                                reason=reason)
    return _emit_view(state, "reset", view)


@approvals_group.command("consume")
@reporting
@click.argument("token")
@click.argument("pipeline", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--export", "export", type=_KINDS, default=None)
@click.option("--subject", default=None)
@click.option("--tenant", default=None)
@click.option("--for", "consumed_for", default=None, help="What the approval is used for.")
@_ACTOR
def consume_cmd(state: CliState, token: str, pipeline: Path | None, export: str | None,
                subject: str | None, tenant: str | None, consumed_for: str | None,
                actor: str | None) -> int:
    """Use a token once for the pipeline or export it was issued for (exit 4 if refused)."""
    _, t, digest, _, _ = _subject(state, pipeline, export, subject, tenant)
    with open_landscape(state.settings()) as landscape:
        service = ApprovalService(landscape)
        approval = service.consume(token, tenant_id=t, subject_hash=digest,
                                   actor=actor or default_actor(), consumed_for=consumed_for)
        view = service.get(approval.approval_id)
    return _emit_view(state, "consume", view)


COMMANDS = (approvals_group,)
