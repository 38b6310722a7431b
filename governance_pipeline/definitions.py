"""The Dagster code location (``workspace.yaml`` loads this module).

It holds the integrity check of the Landscape: a job that runs the audit sweep and the
ledger verification and fails, listing every finding, when either reports anything; and a nightly
schedule for it, stopped until an operator turns it on. It also holds one job per pipeline file
(``governance_pipeline.orchestration``), the evidence bundle assets with their blocking integrity
checks and export jobs (``orchestration.bundle_assets``), and the approval SLA and event delivery
sensors.

Importing this module touches no database: settings are read when the op runs, so the code
location loads (and ``dagster definitions validate`` passes) on a machine without an audit store.
"""

from typing import Any

from dagster import (
    Config,
    DefaultScheduleStatus,
    Definitions,
    Failure,
    MetadataValue,
    OpExecutionContext,
    ScheduleDefinition,
    job,
    op,
)

from governance_pipeline.contracts.errors import Finding
from governance_pipeline.contracts.settings import Settings
from governance_pipeline.landscape.store import Landscape
from governance_pipeline.orchestration.approval_sensors import approval_sla_sensor
from governance_pipeline.orchestration.bundle_assets import bundle_definitions
from governance_pipeline.orchestration.catalog import build_pipeline_definitions, sink_asset_keys
from governance_pipeline.orchestration.event_sensors import event_delivery_sensor
from governance_pipeline.orchestration.retention import retention_definitions
from governance_pipeline.orchestration.witnessing import witness_definitions

# The UI shows findings as metadata; the full list is always in the run's logs.
_FINDINGS_IN_METADATA = 200


class IntegrityCheckConfig(Config):
    run_id: str | None = None
    """Check one run; by default every run (and the global scope) is checked."""


def _finding_lines(findings: list[Finding]) -> list[str]:
    return [f"[{f.check}] {f.table} {f.key}: {f.message}" for f in findings]


@op(description="Audit sweep + ledger verification of the Landscape; fails on any finding.")
def check_landscape_integrity(context: OpExecutionContext,
                              config: IntegrityCheckConfig) -> dict[str, Any]:
    from governance_pipeline.landscape.sweep import sweep
    from governance_pipeline.landscape.verify import verify

    landscape = Landscape.from_settings(Settings.from_env())
    try:
        swept = sweep(landscape, config.run_id)
        verified = verify(landscape, config.run_id)
    finally:
        landscape.dispose()
    findings = [*swept.findings, *verified.findings]
    for line in _finding_lines(findings):
        context.log.error(line)
    summary = {"runs_swept": len(swept.run_ids), "sweep_findings": len(swept.findings),
               "verify_findings": len(verified.findings),
               "records_checked": verified.records_checked}
    if findings:
        raise Failure(
            description=f"Landscape integrity: {len(findings)} finding(s) "
                        f"({len(swept.findings)} sweep, {len(verified.findings)} verify)",
            metadata={**summary, "findings": MetadataValue.json(
                [f.as_dict() for f in findings[:_FINDINGS_IN_METADATA]])},
            allow_retries=False)
    context.log.info(f"Landscape integrity OK: {summary}")
    return summary


@job(description="Check the whole audit trail: sweep invariants and verify the signed ledger.")
def landscape_integrity() -> None:
    check_landscape_integrity()


landscape_integrity_nightly = ScheduleDefinition(
    name="landscape_integrity_nightly",
    job=landscape_integrity,
    cron_schedule="0 3 * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.STOPPED,
    description="Nightly integrity check of the Landscape (stopped until turned on).",
)

# One job per pipeline file of GOVERNANCE_PIPELINES_DIR, the Landscape sensors and the pipeline
# file checks, the evidence / SOC 2 / debrief assets behind the Landscape's blocking integrity
# checks, the approval SLA and event delivery sensors (governance_pipeline/orchestration,
# docs/orchestration.md). Each pipeline's sinks are assets, upstream of the bundles that cover
# them. Building them reads the pipeline files, never the audit database.
def _code_location() -> Definitions:
    pipelines = build_pipeline_definitions()
    return Definitions.merge(
        Definitions(jobs=[landscape_integrity], schedules=[landscape_integrity_nightly],
                    sensors=[approval_sla_sensor, event_delivery_sensor]),
        pipelines,
        bundle_definitions(sink_asset_keys(pipelines)),
        retention_definitions(),
        witness_definitions(),
    )


defs = _code_location()
