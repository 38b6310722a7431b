"""The evidence, SOC 2 and debrief bundles as Dagster assets, behind the Landscape's integrity.

``landscape_audit`` is the audit trail itself, refreshed on demand; its two asset checks,
``sweep_clean`` and ``ledger_verified``, are blocking: in a run that materialises a bundle
together with ``landscape_audit`` (the ``export_*`` jobs), a failed check stops the run before
the bundle asset starts. The bundle assets are declared export surfaces and take the same steps
as ``governance-pipeline export`` (``governance.exports.service``): the subject's scopes are
swept and verified again, the export guard uses the approval token of the asset's config once,
then the signed bundle is written. Blocked, refused or dirty → the step fails with the error's
problem document; nothing is written.

Partitions: ``evidence_bundle`` one per ended run (dynamic ``landscape_runs``), ``soc2_bundle``
one per month, ``executive_debrief`` one per incident (dynamic ``incidents``); the
``evidence_partitions`` sensor adds the run and incident partitions as they appear.
"""

# No ``from __future__ import annotations``: Dagster reads the annotations of the decorated
# functions at definition time.
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetKey,
    AssetSelection,
    Config,
    DefaultSensorStatus,
    Definitions,
    DynamicPartitionsDefinition,
    Failure,
    MaterializeResult,
    MetadataValue,
    MonthlyPartitionsDefinition,
    SensorEvaluationContext,
    SensorResult,
    asset,
    asset_check,
    define_asset_job,
    sensor,
)
from pydantic import Field
from sqlalchemy import func, select

from governance_pipeline.contracts.enums import ExportKind, RunStatus
from governance_pipeline.contracts.errors import BlockedError, Finding, GovernanceError
from governance_pipeline.governance.approvals.export_guard import (
    export_action,
    export_surface,
    guard_export,
)
from governance_pipeline.governance.exports.service import (
    ExportPlan,
    ExportResult,
    plan_export,
    soc2_subject,
    write_export,
)
from governance_pipeline.landscape.queries import reading
from governance_pipeline.landscape.schema import incidents, ledger_entries, runs
from governance_pipeline.landscape.store import Landscape
from governance_pipeline.orchestration.actors import run_actor
from governance_pipeline.orchestration.resources import LandscapeResource

RUN_PARTITIONS = DynamicPartitionsDefinition(name="landscape_runs")
INCIDENT_PARTITIONS = DynamicPartitionsDefinition(name="incidents")
# end_offset=1: the month in progress is a partition too (a bundle of the month so far).
MONTH_PARTITIONS = MonthlyPartitionsDefinition(start_date="2026-01-01", end_offset=1)
#: Runs that get an evidence partition: ended, one way or another, and not resumable by design.
EXPORTABLE_RUNS = (RunStatus.COMPLETED, RunStatus.FAILED_POLICY, RunStatus.FAILED)
GROUP = "evidence"
AUDIT_ASSET = "landscape_audit"
_FINDINGS_IN_METADATA = 50


class BundleConfig(Config):
    approval_token: str | None = Field(
        default=None, description="Token of the approved export ladder for this partition "
                                  "(`governance-pipeline approvals request --export ...`); "
                                  "used once.")
    actor: str | None = Field(
        default=None, description="Who exports (recorded in the operator log); default the "
                                  "run's `governance/actor` tag, else $GOVERNANCE_ACTOR, else "
                                  "the OS user.")
    out_dir: str | None = Field(
        default=None, description="Bundle directory (new or empty); default "
                                  "$GOVERNANCE_HOME/exports/dagster/<kind>/<subject>/<run id>.")


class Soc2BundleConfig(BundleConfig):
    tenant: str | None = Field(
        default=None, description="Restrict the bundle to one tenant (export subject "
                                  "YYYY-MM/<tenant>); default every tenant.")


# --- the integrity gate ---------------------------------------------------------------------------
@asset(name=AUDIT_ASSET, group_name=GROUP,
       description="The audit Landscape. Its blocking checks (sweep clean, ledger verified) "
                   "gate every bundle materialised with it.")
def landscape_audit(landscape: LandscapeResource) -> MaterializeResult:
    from governance_pipeline.governance.metrics import exposition, scalar_metrics

    with landscape.open() as ls:
        with reading(ls) as conn:
            run_count = conn.execute(select(func.count()).select_from(runs)).scalar_one()
            scopes = conn.execute(select(func.count(func.distinct(ledger_entries.c.scope)))
                                  ).scalar_one()
        # The same metrics `governance-pipeline metrics` serves, read at materialisation.
        headline = {f"metrics/{name}": MetadataValue.float(value)
                    for name, value in scalar_metrics(ls).items()}
        text = exposition(ls)
    return MaterializeResult(metadata={"runs": run_count, "ledger_scopes": scopes, **headline,
                                       "metrics": MetadataValue.md(f"```\n{text}```")})


def _check_result(findings: list[Finding], what: str) -> AssetCheckResult:
    return AssetCheckResult(
        passed=not findings, severity=AssetCheckSeverity.ERROR,
        description=f"{what}: {len(findings)} finding(s)" if findings else f"{what}: clean",
        metadata={"findings": len(findings), "detail": MetadataValue.json(
            [f.as_dict() for f in findings[:_FINDINGS_IN_METADATA]])})


@asset_check(asset=AUDIT_ASSET, name="sweep_clean", blocking=True,
             description="Every audit sweep invariant holds over every run.")
def sweep_clean(landscape: LandscapeResource) -> AssetCheckResult:
    from governance_pipeline.landscape.sweep import sweep

    with landscape.open() as ls:
        return _check_result(list(sweep(ls).findings), "sweep")


@asset_check(asset=AUDIT_ASSET, name="ledger_verified", blocking=True,
             description="The ledger recomputes from the tables and every seal verifies.")
def ledger_verified(landscape: LandscapeResource) -> AssetCheckResult:
    from governance_pipeline.landscape.verify import verify

    with landscape.open() as ls:
        return _check_result(list(verify(ls).findings), "verify")


# --- the bundles ------------------------------------------------------------------------------------
def _out_dir(context: AssetExecutionContext, landscape: LandscapeResource, config: BundleConfig,
             kind: ExportKind, subject: str) -> Path:
    if config.out_dir:
        return Path(config.out_dir).resolve()
    return (landscape.settings().home / "exports" / "dagster" / kind.value
            / subject.replace("/", "_") / context.run.run_id)


def _failure(exc: GovernanceError, plan: ExportPlan | None) -> Failure:
    metadata: dict[str, Any] = {"code": exc.code.code, "problem": MetadataValue.json(exc.problem())}
    if isinstance(exc, BlockedError) and plan is not None:
        metadata["to_approve"] = MetadataValue.md(
            f"`governance-pipeline approvals request --export {plan.kind.value} --subject "
            f"{plan.subject} --tenant {plan.tenant_id}`, then pass the token as the asset's "
            "`approval_token` config")
    return Failure(description=f"{exc.code.code}: {exc.message}", metadata=metadata,
                   allow_retries=False)


def _materialized(result: ExportResult) -> MaterializeResult:
    files = "\n".join(f"| `{name}` | `{d.sha256}` | {d.size} |"
                      for name, d in sorted(result.bundle.files.items()))
    metadata: dict[str, Any] = {
        "path": MetadataValue.path(str(result.path)),
        "bundle_digest": f"sha256:{result.bundle_digest}",
        "content_digest": f"sha256:{result.content_digest}",
        "export_id": result.export_id, "approval_id": result.approval_id,
        "tenant_id": result.tenant_id,
        "files": MetadataValue.md("| file | sha256 | bytes |\n|---|---|---|\n" + files),
        "preview": MetadataValue.md(result.preview),
    }
    metadata.update({f"sha256/{name}": d.sha256 for name, d in result.bundle.files.items()})
    return MaterializeResult(metadata=metadata)


@asset(partitions_def=RUN_PARTITIONS, deps=[AUDIT_ASSET], group_name=GROUP,
       description="Evidence bundle of one ended run (JSON + PDF, signed, with proofs).")
@export_surface("dagster:evidence_bundle")
def evidence_bundle(context: AssetExecutionContext, config: BundleConfig,
                    landscape: LandscapeResource) -> MaterializeResult:
    ls, subject, plan = landscape.landscape(), context.partition_key, None
    actor = run_actor(config.actor, context.run.tags)
    try:
        with export_action(ls, ExportKind.EVIDENCE, subject, requested_by=actor,
                           surface="dagster:evidence_bundle") as act:
            plan = plan_export(ls, ExportKind.EVIDENCE, subject, out_dir=_out_dir(
                context, landscape, config, ExportKind.EVIDENCE, subject))
            clearance = guard_export(ls, **plan.guard_args(), surface="dagster:evidence_bundle",
                                     requested_by=actor, approval_token=config.approval_token,
                                     operator=act)
            return _materialized(write_export(ls, plan, clearance, operator=act))
    except GovernanceError as exc:
        raise _failure(exc, plan) from exc


@asset(partitions_def=MONTH_PARTITIONS, deps=[AUDIT_ASSET], group_name=GROUP,
       description="SOC 2 controls bundle of one month (JSON + PDF, signed, with proofs).")
@export_surface("dagster:soc2_bundle")
def soc2_bundle(context: AssetExecutionContext, config: Soc2BundleConfig,
                landscape: LandscapeResource) -> MaterializeResult:
    ls, period, plan = landscape.landscape(), context.partition_key[:7], None
    actor, subject = run_actor(config.actor, context.run.tags), soc2_subject(period, config.tenant)
    try:
        with export_action(ls, ExportKind.SOC2, subject, requested_by=actor,
                           surface="dagster:soc2_bundle") as act:
            plan = plan_export(ls, ExportKind.SOC2, period, tenant=config.tenant,
                               out_dir=_out_dir(context, landscape, config, ExportKind.SOC2,
                                                subject))
            clearance = guard_export(ls, **plan.guard_args(), surface="dagster:soc2_bundle",
                                     requested_by=actor, approval_token=config.approval_token,
                                     operator=act)
            return _materialized(write_export(ls, plan, clearance, operator=act))
    except GovernanceError as exc:
        raise _failure(exc, plan) from exc


@asset(partitions_def=INCIDENT_PARTITIONS, deps=[AUDIT_ASSET], group_name=GROUP,
       description="Executive debrief of one incident (JSON + PDF, signed, with proofs).")
@export_surface("dagster:executive_debrief")
def executive_debrief(context: AssetExecutionContext, config: BundleConfig,
                      landscape: LandscapeResource) -> MaterializeResult:
    ls, subject, plan = landscape.landscape(), context.partition_key, None
    actor = run_actor(config.actor, context.run.tags)
    try:
        with export_action(ls, ExportKind.DEBRIEF, subject, requested_by=actor,
                           surface="dagster:executive_debrief") as act:
            plan = plan_export(ls, ExportKind.DEBRIEF, subject, out_dir=_out_dir(
                context, landscape, config, ExportKind.DEBRIEF, subject))
            clearance = guard_export(ls, **plan.guard_args(), surface="dagster:executive_debrief",
                                     requested_by=actor, approval_token=config.approval_token,
                                     operator=act)
            return _materialized(write_export(ls, plan, clearance, operator=act))
    except GovernanceError as exc:
        raise _failure(exc, plan) from exc


# --- partitions -----------------------------------------------------------------------------------
def exportable_subjects(landscape: Landscape) -> tuple[list[str], list[str]]:
    """(ended run ids, incident ids), oldest first."""
    with reading(landscape) as conn:
        run_ids = list(conn.execute(
            select(runs.c.run_id).where(runs.c.status.in_([s.value for s in EXPORTABLE_RUNS]))
            .order_by(runs.c.started_at, runs.c.run_id)).scalars())
        incident_ids = list(conn.execute(
            select(incidents.c.incident_id)
            .order_by(incidents.c.detected_at, incidents.c.incident_id)).scalars())
    return run_ids, incident_ids


@sensor(name="evidence_partitions", minimum_interval_seconds=60,
        default_status=DefaultSensorStatus.RUNNING,
        description="Adds an evidence_bundle partition for every ended run (completed, "
                    "failed_policy, failed) and an executive_debrief partition for every "
                    "incident.")
def evidence_partitions_sensor(context: SensorEvaluationContext,
                               landscape: LandscapeResource) -> SensorResult:
    with landscape.open() as ls:
        run_ids, incident_ids = exportable_subjects(ls)
    requests = []
    added: dict[str, int] = {}
    for partitions, wanted in ((RUN_PARTITIONS, run_ids), (INCIDENT_PARTITIONS, incident_ids)):
        assert partitions.name is not None
        known = set(context.instance.get_dynamic_partitions(partitions.name))
        new = [key for key in wanted if key not in known]
        added[partitions.name] = len(new)
        if new:
            requests.append(partitions.build_add_request(new))
    if not requests:
        return SensorResult(skip_reason="no new ended run or incident")
    context.log.info(f"new partitions: {added}")
    return SensorResult(dynamic_partitions_requests=requests)


# --- jobs and definitions ------------------------------------------------------------------------
def _export_job(name: str, bundle: Any, what: str) -> Any:
    return define_asset_job(
        name, selection=AssetSelection.assets(landscape_audit, bundle),
        description=f"Check the Landscape (blocking sweep + verify), then write the {what}.")


EXPORT_JOBS = (
    _export_job("export_evidence_bundle", evidence_bundle, "evidence bundle of a run"),
    _export_job("export_soc2_bundle", soc2_bundle, "SOC 2 bundle of a month"),
    _export_job("export_executive_debrief", executive_debrief, "debrief of an incident"),
)
BUNDLE_ASSETS = (landscape_audit, evidence_bundle, soc2_bundle, executive_debrief)
BUNDLE_CHECKS = (sweep_clean, ledger_verified)


def bundle_definitions(sink_keys: Sequence[AssetKey] = ()) -> Definitions:
    """Assets, checks, export jobs and the partition sensor (the ``landscape`` resource comes
    from the code location). ``sink_keys``: the pipelines' sink assets, which every bundle
    covers (a run's evidence, a month's runs, an incident's run), so they become its upstream
    in the lineage graph."""
    assets: list[Any] = list(BUNDLE_ASSETS)
    if sink_keys:
        assets = [landscape_audit, *(
            a.map_asset_specs(lambda spec: spec.merge_attributes(deps=list(sink_keys)))
            for a in BUNDLE_ASSETS if a is not landscape_audit)]
    return Definitions(assets=assets, asset_checks=list(BUNDLE_CHECKS),
                       jobs=list(EXPORT_JOBS), sensors=[evidence_partitions_sensor])
