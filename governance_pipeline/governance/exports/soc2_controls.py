"""The controls a SOC 2 bundle tests, each mapped to 2017 Trust Services Criteria.

A control is a population query (SQLAlchemy Core, shown in the bundle as the SQL executed) that
selects ``(key, scope)`` of every item in the period, and a test of one item that returns
pass/fail with the reason. ``docs/evidence.md`` describes each control.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Select, String, and_, func, literal, select

from governance_pipeline.contracts.enums import ApprovalStatus, RunStatus
from governance_pipeline.contracts.errors import ConfigError
from governance_pipeline.contracts.hashing import CANONICAL_VERSION, sha256_hex
from governance_pipeline.contracts.records import (
    Approval,
    ApprovalDecisionRecord,
    ApprovalStage,
    Incident,
    InflectionPoint,
    PolicySnapshotRecord,
    Run,
)
from governance_pipeline.governance.exports.models import SampleResult
from governance_pipeline.governance.exports.reads import ledger_heads
from governance_pipeline.landscape.schema import (
    GLOBAL_SCOPE,
    approval_decisions,
    approval_delegations,
    approval_stages,
    approvals,
    artifacts,
    incidents,
    inflection_points,
    payloads,
    policy_decisions,
    policy_snapshots,
    rows,
    runs,
    token_outcomes,
)
from governance_pipeline.landscape.store import Landscape
from governance_pipeline.landscape.sweep import (
    sweep,
    tokens_with_multiple_terminal_outcomes,
    tokens_without_terminal_outcome,
)
from governance_pipeline.landscape.verify import verify

Verdict = tuple[SampleResult, str]
PASS, FAIL = SampleResult.PASS, SampleResult.FAIL
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Period:
    start: str          # inclusive, ISO UTC
    end: str            # exclusive
    tenant_id: str | None


@dataclass(frozen=True)
class CheckContext:
    landscape: Landscape
    conn: Connection
    risk_tier_of: Callable[[Run], int]
    ir_hash_of: Callable[[Run], str]


@dataclass(frozen=True)
class Control:
    control_id: str
    criteria: tuple[str, ...]
    title: str
    description: str
    table: str                               # Landscape table of the population's items
    population: Callable[[Period], Select[Any]]
    test: Callable[[CheckContext, str, str], Verdict]
    empty_reason: str
    keep: Callable[[CheckContext, str], bool] | None = None   # a filter SQL cannot express
    keep_text: str | None = None


def default_risk_tier(run: Run) -> int:
    """The risk tier IR validation gives the pipeline definition recorded with the run (the
    same rules that decided, at run start, whether the run needed an approval).

    A run recorded without a pipeline definition (the demo's synthetic run) is judged by what
    its recorded configuration declares: personal data or an external sink make it tier 2.
    """
    from governance_pipeline.engine.config import parse_pipeline
    from governance_pipeline.governance.ir.risk import validate_ir

    recorded = json.loads(run.config_json)
    try:
        config = parse_pipeline(recorded, origin=f"run {run.run_id}")
    except ConfigError:
        external = any(isinstance(s, dict) and s.get("external")
                       for s in (recorded.get("sinks") or {}).values())
        return 2 if recorded.get("pii_fields") or external else 0
    return validate_ir(config).risk_tier


def default_ir_hash(run: Run) -> str:
    return f"sha256:{run.config_hash}"


def runs_in(p: Period) -> Select[Any]:
    q = select(runs.c.run_id.label("key"), runs.c.run_id.label("scope")).where(
        runs.c.started_at >= p.start, runs.c.started_at < p.end)
    return q.where(runs.c.tenant_id == p.tenant_id) if p.tenant_id else q


def _run(ctx: CheckContext, run_id: str) -> Run:
    return Run.from_row(ctx.conn.execute(select(runs).where(runs.c.run_id == run_id))
                        .mappings().one())


# --- CC6.1: approvals decided by the stage's role, never by the requester ------------------------
def _approval_votes(p: Period) -> Select[Any]:
    d, a = approval_decisions, approvals
    q = (select(d.c.decision_id.label("key"), literal(GLOBAL_SCOPE, String).label("scope"))
         .join(a, a.c.approval_id == d.c.approval_id)
         .where(d.c.decided_at >= p.start, d.c.decided_at < p.end))
    return q.where(a.c.tenant_id == p.tenant_id) if p.tenant_id else q


def _test_vote(ctx: CheckContext, key: str, _scope: str) -> Verdict:
    c = ctx.conn
    vote = ApprovalDecisionRecord.from_row(c.execute(
        select(approval_decisions).where(approval_decisions.c.decision_id == key)).mappings().one())
    stage = ApprovalStage.from_row(c.execute(select(approval_stages).where(
        approval_stages.c.stage_id == vote.stage_id)).mappings().one())
    approval = Approval.from_row(c.execute(select(approvals).where(
        approvals.c.approval_id == vote.approval_id)).mappings().one())
    what = f"{vote.decision.value} by {vote.actor} as {vote.role} on stage '{stage.name}'"
    if vote.role != stage.approver_role:
        return FAIL, f"{what}: the stage requires role {stage.approver_role}"
    if vote.actor == approval.requested_by:
        return FAIL, f"{what}: self-approval (the actor requested approval {approval.approval_id})"
    if vote.delegated_from is not None:
        dl = approval_delegations
        found = c.execute(select(dl.c.delegation_id).where(and_(
            dl.c.approval_id == vote.approval_id, dl.c.stage_id == vote.stage_id,
            dl.c.round == vote.round, dl.c.from_actor == vote.delegated_from,
            dl.c.to_actor == vote.actor))).first()
        if found is None:
            return FAIL, f"{what}: claims delegation from {vote.delegated_from}, none recorded"
        if vote.delegated_from == approval.requested_by:
            return FAIL, f"{what}: delegated by the requester {approval.requested_by}"
    return PASS, f"{what} (requester {approval.requested_by})"


# --- CC7.2: every run evaluated under a recorded policy snapshot ---------------------------------
def _test_monitoring(ctx: CheckContext, key: str, _scope: str) -> Verdict:
    run = _run(ctx, key)
    if run.policy_snapshot_id is None:
        return FAIL, "no policy snapshot recorded for the run"
    snap = PolicySnapshotRecord.from_row(ctx.conn.execute(select(policy_snapshots).where(
        policy_snapshots.c.snapshot_id == run.policy_snapshot_id)).mappings().one())
    d = policy_decisions
    total, foreign = ctx.conn.execute(select(
        func.count(),
        func.count().filter((d.c.snapshot_id != snap.snapshot_id)
                            | (d.c.snapshot_hash != snap.content_hash)),
    ).where(d.c.run_id == key)).one()
    flagged = ctx.conn.execute(select(func.count()).where(
        d.c.run_id == key, d.c.would_block == 1)).scalar_one()
    if foreign:
        return FAIL, f"{foreign} of {total} decisions name another snapshot or hash"
    if snap.policy_count > 0 and total == 0:
        return FAIL, f"{snap.policy_count} policies in force but no decision recorded"
    return PASS, (f"snapshot {snap.snapshot_id} ({snap.policy_count} policies); {total} "
                  f"decisions recorded under it, {flagged} flagged would_block")


# --- CC7.3: every enforced violation stopped the run and opened an incident ----------------------
def _blocking_decisions(p: Period) -> Select[Any]:
    d = policy_decisions
    q = (select(d.c.decision_id.label("key"), d.c.run_id.label("scope"))
         .join(runs, runs.c.run_id == d.c.run_id)
         .where(d.c.would_block == 1, d.c.mode == "enforced",
                d.c.created_at >= p.start, d.c.created_at < p.end))
    return q.where(runs.c.tenant_id == p.tenant_id) if p.tenant_id else q


def _test_incident(ctx: CheckContext, key: str, scope: str) -> Verdict:
    c = ctx.conn
    row = c.execute(select(inflection_points).where(inflection_points.c.run_id == scope)
                    ).mappings().first()
    if row is None:
        return FAIL, f"enforced violation in run {scope} without an inflection point"
    point = InflectionPoint.from_row(row)
    found = [Incident.from_row(r) for r in c.execute(select(incidents).where(
        incidents.c.run_id == scope, incidents.c.inflection_id == point.inflection_id)).mappings()]
    if not found:
        return FAIL, f"inflection {point.inflection_id} has no incident"
    run = _run(ctx, scope)
    if run.status is not RunStatus.FAILED_POLICY:
        return FAIL, f"run {scope} is {run.status.value}, not stopped by policy"
    i = found[0]
    return PASS, (f"run stopped at {point.node_id}, row {point.row_index} (decision "
                  f"{point.decision_id}); incident {i.incident_id} ({i.severity.value}, "
                  f"{i.status.value})")


# --- CC8.1: every high-risk run consumed an approval bound to its definition ---------------------
def _is_high_risk(ctx: CheckContext, run_id: str) -> bool:
    return ctx.risk_tier_of(_run(ctx, run_id)) >= 2


def _test_change(ctx: CheckContext, key: str, _scope: str) -> Verdict:
    run = _run(ctx, key)
    expected = ctx.ir_hash_of(run)
    found = [Approval.from_row(r) for r in ctx.conn.execute(select(approvals).where(
        approvals.c.consumed_for == key)).mappings()]
    for a in found:
        if (a.status is ApprovalStatus.CONSUMED and a.subject_hash == expected
                and a.tenant_id == run.tenant_id):
            return PASS, (f"tier {ctx.risk_tier_of(run)}; approval {a.approval_id} consumed at "
                          f"{a.consumed_at} by {a.consumed_by}, bound to {expected}")
    if found:
        return FAIL, (f"approvals consumed for the run do not match its IR hash {expected} and "
                      f"tenant: {', '.join(a.approval_id for a in found)}")
    return FAIL, f"tier {ctx.risk_tier_of(run)} run without a consumed approval"


# --- PI1.1–PI1.5: processing integrity ------------------------------------------------------------
def _test_definition(ctx: CheckContext, key: str, _scope: str) -> Verdict:
    run = _run(ctx, key)
    actual = sha256_hex(run.config_json.encode("utf-8"))
    if actual != run.config_hash:
        return FAIL, f"recorded definition hashes to {actual}, run says {run.config_hash}"
    if run.canonical_version != CANONICAL_VERSION:
        return FAIL, f"unknown canonicalisation {run.canonical_version}"
    return PASS, f"definition of '{run.pipeline_name}' recorded, hash {run.config_hash} verified"


def _test_inputs(ctx: CheckContext, key: str, _scope: str) -> Verdict:
    total, missing = ctx.conn.execute(
        select(func.count(), func.count().filter(payloads.c.content_hash.is_(None)))
        .select_from(rows.outerjoin(payloads, payloads.c.content_hash == rows.c.source_data_hash))
        .where(rows.c.run_id == key)).one()
    if missing:
        return FAIL, f"{missing} of {total} source rows have no stored payload"
    return PASS, f"{total} source rows recorded, each with its SHA-256 and stored payload"


def _test_processing(ctx: CheckContext, key: str, _scope: str) -> Verdict:
    run = _run(ctx, key)
    if run.status is RunStatus.RUNNING:
        return SampleResult.EXCEPTION, "run still running: outcomes not final"
    report = sweep(ctx.conn, key, checks=[tokens_without_terminal_outcome,
                                          tokens_with_multiple_terminal_outcomes])
    if report.findings:
        first = report.findings[0]
        return FAIL, f"{len(report.findings)} tokens break the rule, e.g. {first.message}"
    n = ctx.conn.execute(select(func.count()).where(token_outcomes.c.run_id == key,
                                                    token_outcomes.c.is_terminal == 1)).scalar_one()
    return PASS, f"{n} tokens, each with exactly one terminal outcome (run {run.status.value})"


def _test_outputs(ctx: CheckContext, key: str, _scope: str) -> Verdict:
    o = token_outcomes
    sinks = set(ctx.conn.execute(select(o.c.sink_name).distinct().where(
        o.c.run_id == key, o.c.is_terminal == 1, o.c.sink_name.is_not(None))).scalars())
    found = list(ctx.conn.execute(select(artifacts.c.sink_node_id, artifacts.c.content_hash)
                                  .where(artifacts.c.run_id == key)))
    bad = [a.sink_node_id for a in found if not _HEX64.fullmatch(a.content_hash)]
    missing = sorted(sinks - {a.sink_node_id for a in found})
    if bad:
        return FAIL, f"artifacts without a SHA-256 digest: {', '.join(sorted(bad))}"
    if missing:
        return FAIL, f"rows reached sinks without a recorded artifact: {', '.join(missing)}"
    return PASS, f"{len(found)} artifacts with digests cover every sink reached ({len(sinks)})"


def _test_storage(ctx: CheckContext, key: str, _scope: str) -> Verdict:
    run = _run(ctx, key)
    report = verify(ctx.landscape, key)
    if not report.ok:
        return FAIL, f"ledger verification: {report.findings[0].message}"
    if run.status is not RunStatus.RUNNING:
        (head,) = ledger_heads(ctx.conn, [key])
        if not head.sealed:
            return FAIL, f"ledger head {head.seq} of the ended run is not sealed"
    return PASS, f"ledger verified ({report.entries_checked} entries, {report.records_checked} records), head sealed"


CONTROLS: tuple[Control, ...] = (
    Control("GP-CC6.1", ("CC6.1",), "Approvals decided by authorised roles",
            "Every approval vote in the period was cast under the role the stage requires, "
            "never by the requester of the approval, and a delegated vote has a recorded "
            "delegation. Who holds a role is managed outside the product.",
            "approval_decisions", _approval_votes, _test_vote,
            "no approval vote was cast in the period"),
    Control("GP-CC7.2", ("CC7.2",), "Policy decisions recorded per run",
            "Every run started in the period has a policy snapshot; every policy decision of "
            "the run names that snapshot and its hash; would_block violations are flagged.",
            "runs", runs_in, _test_monitoring, "no run started in the period"),
    Control("GP-CC7.3", ("CC7.3",), "Enforced violations evaluated as incidents",
            "Every enforced, would_block policy decision in the period stopped its run "
            "(failed_policy) at a recorded inflection point that opened an incident.",
            "policy_decisions", _blocking_decisions, _test_incident,
            "no enforced policy violation occurred in the period"),
    Control("GP-CC8.1", ("CC8.1",), "High-risk runs authorised by a consumed approval",
            "Every run of risk tier 2 or higher started in the period consumed an approval "
            "bound to the hash of its pipeline definition (IR), for its tenant.",
            "runs", runs_in, _test_change, "no run of risk tier 2 or higher in the period",
            keep=_is_high_risk, keep_text="risk tier >= 2 (from the run's recorded definition)"),
    Control("GP-PI1.1", ("PI1.1",), "Processing definitions recorded",
            "Every run recorded its pipeline definition; its SHA-256 is recomputed and "
            "compared with the run's config hash.",
            "runs", runs_in, _test_definition, "no run started in the period"),
    Control("GP-PI1.2", ("PI1.2",), "Inputs recorded with hashes",
            "Every source row read by the run is recorded with the SHA-256 of its content and "
            "the content itself.", "runs", runs_in, _test_inputs, "no run started in the period"),
    Control("GP-PI1.3", ("PI1.3",), "Every token processed to exactly one outcome",
            "In every ended run, each token has exactly one terminal outcome.",
            "runs", runs_in, _test_processing, "no run started in the period"),
    Control("GP-PI1.4", ("PI1.4",), "Outputs recorded with digests",
            "Every sink that received rows has a recorded artifact with the SHA-256 of its "
            "content.", "runs", runs_in, _test_outputs, "no run started in the period"),
    Control("GP-PI1.5", ("PI1.5",), "Records stored tamper-evidently",
            "The run's ledger chain verifies against every stored record and payload, and "
            "the head of an ended run is sealed by a signed checkpoint.",
            "runs", runs_in, _test_storage, "no run started in the period"),
)

#: Criteria this product cannot evidence from its own records: listed, never omitted.
NOT_TESTABLE: tuple[tuple[str, str, str], ...] = (
    ("CC6.2", "User registration and authorisation",
     "identities and role membership are managed by the organisation's identity provider"),
    ("CC6.3", "Role-based access provisioning and removal",
     "access provisioning happens outside the product"),
    ("CC6.6", "Boundary protection against external threats",
     "network controls are outside the product"),
    ("CC7.1", "Vulnerability and configuration monitoring",
     "infrastructure monitoring is outside the product"),
    ("CC7.4", "Incident response", "responding to incidents is a people process the product "
     "records only partly (status and resolution)"),
    ("A1.2", "Backup and recovery infrastructure",
     "database backups are operated outside the product"),
)
