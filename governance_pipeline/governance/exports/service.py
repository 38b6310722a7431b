"""Exporting a bundle: the steps every export surface (CLI command, Dagster asset) takes.

A surface calls, in this order:

1. ``plan_export`` — resolves the subject and its tenant, checks the subject exists and is
   exportable, refuses a non-empty output directory and re-runs the sweep and the ledger
   verification of the scopes the bundle draws on, and builds the bundle once in memory.
   Nothing is recorded and no approval is used, so a typo, a tampered Landscape or a bundle
   that cannot be built never wastes an approval.
2. ``guard_export(landscape, **plan.guard_args(), surface=..., requested_by=...,
   approval_token=...)`` — the export guard consumes the approval (or records the block and
   raises ``BlockedError``, exit 4).
3. ``write_export(landscape, plan, clearance)`` — builds the bundle, seals the scopes it cites,
   takes their checkpoint, proves the sampled records, writes the signed directory and records
   the written export.

Tenants: an evidence bundle and a debrief belong to their run's tenant (a debrief to the tenant
of its incident's run); a SOC 2 bundle with a tenant is restricted to that tenant (export
subject ``YYYY-MM/<tenant>``), without one it covers every tenant and its approval is the
``default`` tenant's (export subject ``YYYY-MM``): the two never share an approval.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from governance_pipeline.contracts.clock import to_iso
from governance_pipeline.contracts.enums import ExportKind, RunStatus
from governance_pipeline.contracts.errors import (
    USAGE_INVALID,
    AuditIntegrityError,
    ConfigError,
    ExitCode,
    Finding,
    NotFoundError,
    register,
)
from governance_pipeline.contracts.hashing import sha256_hex
from governance_pipeline.contracts.records import Incident
from governance_pipeline.governance.approvals.export_guard import record_export_written
from governance_pipeline.governance.exports.bundle_dir import (
    BUNDLE_INPUT_INVALID,
    OUTPUT_NOT_EMPTY,
    BundleResult,
    write_bundle,
)
from governance_pipeline.governance.exports.checkpoint import (
    checkpoint_for,
    seal_scopes,
)
from governance_pipeline.governance.exports.clearance import ExportClearance
from governance_pipeline.governance.exports.debrief import build_debrief
from governance_pipeline.governance.exports.evidence import build_evidence
from governance_pipeline.governance.exports.bundle_format import json_bytes
from governance_pipeline.governance.exports.models import Bundle, EvidenceBundle, SOC2Bundle
from governance_pipeline.governance.exports.oscal import (
    OSCAL_FILE,
    OSCAL_KIND_UNSUPPORTED,
    assessment_results,
)
from governance_pipeline.governance.exports.preview import preview_markdown
from governance_pipeline.governance.exports.proofs import inclusion_proofs
from governance_pipeline.governance.exports.tlog_files import tlog_files
from governance_pipeline.governance.exports.render_json import (
    bundle_digest,
    render_json,
)
from governance_pipeline.governance.exports.render_pdf import render_pdf
from governance_pipeline.governance.exports.soc2 import build_soc2, period_bounds
from governance_pipeline.governance.exports.soc2_controls import Period, runs_in
from governance_pipeline.landscape.queries import get_run, reading
from governance_pipeline.landscape.schema import GLOBAL_SCOPE, incidents
from governance_pipeline.landscape.store import Landscape

EXPORT_SUBJECT_NOT_READY = register(
    "GP-EXPORT-001", "The export's subject is not ready to be exported",
    "An evidence bundle needs a run that has ended: wait for the run to finish (or resume it "
    "and let it finish), then export again.",
    ExitCode.INVALID_INPUT)
EXPORT_INTEGRITY_FAILED = register(
    "GP-EXPORT-002", "The records the bundle draws on fail the sweep or the ledger verification",
    "No bundle is written from a Landscape that does not verify, and no approval was used. Run "
    "`governance-pipeline verify` to see every finding, have the alteration investigated, then "
    "export again.",
    ExitCode.INTEGRITY)

#: Content files of every bundle (docs/evidence.md).
JSON_FILE = "bundle.json"
PDF_FILE = "bundle.pdf"
DEFAULT_TENANT = "default"
_FINDINGS_IN_ERROR = 20
_UNFINISHED = (RunStatus.RUNNING,)


@dataclass(frozen=True, slots=True)
class ExportPlan:
    """What one export will write, checked before any approval is used."""

    kind: ExportKind
    subject: str                 # export subject: run id, YYYY-MM[/tenant] or incident id
    tenant_id: str               # the tenant whose approval the export needs
    out_dir: Path
    scopes: tuple[str, ...]      # ledger scopes the bundle draws on, verified and sealed
    period: str | None = None    # SOC 2: the month
    bundle_tenant: str | None = None  # SOC 2: the tenant the content is restricted to

    def guard_args(self) -> dict[str, Any]:
        """The subject arguments of ``guard_export`` for this plan."""
        return {"kind": self.kind, "subject": self.subject, "tenant_id": self.tenant_id}


@dataclass(frozen=True, slots=True)
class ExportResult:
    export_id: str
    approval_id: str
    kind: ExportKind
    subject: str
    tenant_id: str
    bundle: BundleResult
    content_digest: str    # SHA-256 of bundle.json, shown on the PDF's cover
    preview: str           # a few lines of markdown summarising the bundle

    @property
    def path(self) -> Path:
        return self.bundle.path

    @property
    def bundle_digest(self) -> str:
        return self.bundle.bundle_digest

    def as_dict(self) -> dict[str, Any]:
        return {"export_id": self.export_id, "approval_id": self.approval_id,
                "kind": self.kind.value, "subject": self.subject, "tenant_id": self.tenant_id,
                "content_digest": self.content_digest, "preview": self.preview,
                **self.bundle.as_dict()}


def soc2_subject(period: str, tenant: str | None) -> str:
    return period if tenant is None else f"{period}/{tenant}"


def default_out_dir(home: Path, kind: ExportKind | str, subject: str) -> Path:
    """``$GOVERNANCE_HOME/exports/<kind>/<subject>`` (a tenant-restricted SOC 2 subject's ``/``
    becomes ``_`` so one bundle is never nested inside another)."""
    return home / "exports" / ExportKind(kind).value / subject.replace("/", "_")


def plan_export(landscape: Landscape, kind: ExportKind | str, subject: str, *, out_dir: Path,
                tenant: str | None = None, check_integrity: bool = True) -> ExportPlan:
    """Resolve and check an export before its approval is used.

    ``subject`` is a run id (evidence), a period YYYY-MM (SOC 2, with optional ``tenant``) or
    an incident id (debrief). Raises ``NotFoundError`` for an unknown run or incident,
    ``ConfigError`` for a malformed period, an unfinished run (GP-EXPORT-001) or a non-empty
    output directory (GP-BUNDLE-002), and ``AuditIntegrityError`` (GP-EXPORT-002, exit 5) when
    the sweep or the verification of the bundle's scopes finds anything.
    """
    kind = ExportKind(kind)
    out_dir = Path(out_dir)
    if kind is ExportKind.SOC2:
        plan = _plan_soc2(landscape, subject, tenant, out_dir)
    else:
        if tenant is not None:
            raise ConfigError(f"--tenant applies to SOC 2 exports only; a {kind.value} export "
                              "belongs to its run's tenant", code=USAGE_INVALID)
        run_id = subject if kind is ExportKind.EVIDENCE else _incident(landscape, subject).run_id
        run = get_run(landscape, run_id)
        if kind is ExportKind.EVIDENCE and run.status in _UNFINISHED:
            raise ConfigError(f"run {run_id} is still {run.status.value}: its evidence bundle "
                              "can be exported once it has ended", code=EXPORT_SUBJECT_NOT_READY,
                              details={"run_id": run_id, "status": run.status.value})
        plan = ExportPlan(kind, subject, run.tenant_id, out_dir, (GLOBAL_SCOPE, run_id))
    refuse_non_empty(plan.out_dir)
    if check_integrity:
        integrity_check(landscape, plan.scopes)
    # A bundle that cannot be built must fail here, not after the guard has spent the approval;
    # the bundle written later is built again, over the ledger the guard has just extended.
    build_bundle(landscape, plan)
    return plan


def _plan_soc2(landscape: Landscape, period: str, tenant: str | None,
               out_dir: Path) -> ExportPlan:
    start, end = period_bounds(period)
    with reading(landscape) as conn:
        run_ids = sorted(conn.execute(runs_in(Period(start, end, tenant))).scalars())
    return ExportPlan(ExportKind.SOC2, soc2_subject(period, tenant), tenant or DEFAULT_TENANT,
                      out_dir, (GLOBAL_SCOPE, *run_ids), period=period, bundle_tenant=tenant)


def _incident(landscape: Landscape, incident_id: str) -> Incident:
    with reading(landscape) as conn:
        row = conn.execute(select(incidents).where(incidents.c.incident_id == incident_id)
                           ).mappings().first()
    if row is None:
        raise NotFoundError(f"no incident {incident_id!r} in this Landscape",
                            details={"incident_id": incident_id})
    return Incident.from_row(row)


def refuse_non_empty(out_dir: Path) -> None:
    """The writer refuses a non-empty directory too; checking first keeps the approval."""
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ConfigError(f"{out_dir} exists and is not an empty directory: choose another "
                          "--out (no approval was used)", code=OUTPUT_NOT_EMPTY,
                          details={"path": str(out_dir)})


def integrity_findings(landscape: Landscape, scopes: tuple[str, ...] | list[str]) -> list[Finding]:
    """Sweep findings of every run scope and ledger findings of every scope (run and global)."""
    from governance_pipeline.landscape.sweep import sweep
    from governance_pipeline.landscape.verify import verify

    findings: list[Finding] = []
    for scope in dict.fromkeys(scopes):
        if scope != GLOBAL_SCOPE:
            findings += sweep(landscape, scope).findings
        findings += _verify_scope(landscape, scope, verify)
    return findings


def _verify_scope(landscape: Landscape, scope: str, verify: Any) -> list[Finding]:
    try:
        return list(verify(landscape, scope).findings)
    except NotFoundError:
        if scope == GLOBAL_SCOPE:  # a Landscape that never wrote a global record: nothing to check
            return []
        raise


def integrity_check(landscape: Landscape, scopes: tuple[str, ...] | list[str]) -> None:
    """Raise ``AuditIntegrityError`` (GP-EXPORT-002, exit 5) naming the findings, if any."""
    findings = integrity_findings(landscape, scopes)
    if findings:
        shown = "; ".join(f"[{f.check}] {f.table} {f.key}" for f in findings[:3])
        raise AuditIntegrityError(
            f"{len(findings)} integrity finding(s) in the scopes this bundle draws on "
            f"({shown}{'; …' if len(findings) > 3 else ''}): no bundle written",
            code=EXPORT_INTEGRITY_FAILED,
            details={"finding_count": len(findings),
                     "findings": [f.as_dict() for f in findings[:_FINDINGS_IN_ERROR]]})


def build_bundle(landscape: Landscape, plan: ExportPlan) -> Bundle:
    if plan.kind is ExportKind.EVIDENCE:
        return build_evidence(landscape, plan.subject)
    if plan.kind is ExportKind.SOC2:
        assert plan.period is not None
        return build_soc2(landscape, plan.period, tenant_id=plan.bundle_tenant)
    return build_debrief(landscape, plan.subject)


def attested_facts(bundle: Bundle) -> dict[str, Any]:
    """What the bundle attestation's predicate says of the content, beside the manifest's facts:
    the period, run and incident ids, policy snapshot hash and ledger heads, as the bundle has
    them (docs/evidence.md#the-attestation-predicate)."""
    facts: dict[str, Any] = {
        "ledger_heads": [h.model_dump(mode="json") for h in bundle.ledger_heads],
        "period": None, "run_ids": [], "incident_id": None, "policy_snapshot_hash": None}
    if isinstance(bundle, EvidenceBundle):
        facts["run_ids"] = [bundle.run.run_id]
        if bundle.policy_snapshot is not None:
            facts["policy_snapshot_hash"] = bundle.policy_snapshot.content_hash
    elif isinstance(bundle, SOC2Bundle):
        facts.update(period=bundle.subject, run_ids=list(bundle.run_ids))
    else:
        facts.update(run_ids=[bundle.run_id], incident_id=bundle.subject)
    return facts


def write_export(landscape: Landscape, plan: ExportPlan, clearance: ExportClearance, *,
                 operator: Any = None, oscal: bool = False) -> ExportResult:
    """Build, prove, write and record the bundle ``clearance`` lets through (``operator``: the
    ``export_action`` scope whose entry is written with the export record); ``oscal`` adds
    the OSCAL assessment-results document (SOC 2 only, GP-OSCAL-001 otherwise)."""
    if oscal and plan.kind is not ExportKind.SOC2:
        raise ConfigError(f"a {plan.kind.value} bundle has no OSCAL form",
                          code=OSCAL_KIND_UNSUPPORTED)
    if (clearance.kind, clearance.subject, clearance.tenant_id) != \
            (plan.kind, plan.subject, plan.tenant_id):
        raise ConfigError(f"the clearance is for {clearance.kind.value} {clearance.subject} "
                          f"(tenant {clearance.tenant_id}), not for this export",
                          code=BUNDLE_INPUT_INVALID)
    # Seal first: the bundle's ledger heads then show the sealed state the checkpoint carries
    # (the guard has just written the approval's consumption into the global scope).
    seal_scopes(landscape, plan.scopes)
    bundle = build_bundle(landscape, plan)
    sampled = bundle.sampled_records()
    scopes = sorted({*plan.scopes, *(h.scope for h in bundle.ledger_heads),
                     *(scope for _, _, scope in sampled)})
    seal_scopes(landscape, scopes)  # no-op for the scopes sealed above
    checkpoint = checkpoint_for(landscape, scopes)
    proofs = inclusion_proofs(landscape, sampled, checkpoint)
    tlog = tlog_files(landscape, proofs, checkpoint)
    content = render_json(bundle)
    digest = bundle_digest(bundle)
    files = {JSON_FILE: content, PDF_FILE: render_pdf(bundle, bundle_digest=digest)}
    if oscal:
        evidence = {name: sha256_hex(data) for name, data in files.items()}
        files[OSCAL_FILE] = json_bytes(assessment_results(bundle, evidence,
                                                          content_digest=digest))
    written = write_bundle(plan.out_dir, files, kind=plan.kind, subject=plan.subject,
                           clearance=clearance, signer=landscape.signer, checkpoint=checkpoint,
                           proofs=proofs, created_at=to_iso(landscape.clock.now()),
                           about=attested_facts(bundle), tlog=tlog,
                           keyring=landscape.own_keyring())
    record_export_written(landscape, clearance, path=str(written.path),
                          bundle_digest=written.bundle_digest, operator=operator)
    return ExportResult(export_id=clearance.export_id, approval_id=clearance.approval_id,
                        kind=plan.kind, subject=plan.subject, tenant_id=plan.tenant_id,
                        bundle=written, content_digest=digest, preview=preview_markdown(bundle))
