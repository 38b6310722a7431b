"""The retention purge as a Dagster job and a daily schedule (stopped until an operator turns it
on): the same ``purge`` service as ``governance-pipeline purge``, the actor named after the job."""

from typing import Any

from dagster import (
    Config,
    DefaultScheduleStatus,
    Definitions,
    OpExecutionContext,
    ScheduleDefinition,
    job,
    op,
)

from governance_pipeline.contracts.settings import Settings
from governance_pipeline.landscape.store import Landscape

ACTOR = "dagster:retention_purge"


class RetentionPurgeConfig(Config):
    dry_run: bool = False
    """List what would be purged; change nothing."""
    reason: str = "scheduled retention purge"


@op(description="Purge payload contents past retention (legal holds and the floor respected).")
def purge_past_retention(context: OpExecutionContext,
                         config: RetentionPurgeConfig) -> dict[str, Any]:
    from governance_pipeline.governance.data_protection.purge import plan_purge, purge

    landscape = Landscape.from_settings(Settings.from_env())
    try:
        if config.dry_run:
            plan = plan_purge(landscape)
        else:
            plan = purge(landscape, actor=f"{ACTOR}:{context.run_id}", reason=config.reason)
    finally:
        landscape.dispose()
    summary = {"purge_id": plan.purge_id, "dry_run": plan.dry_run, "runs": len(plan.runs),
               "payloads": len(plan.payload_hashes), "held_runs": sorted(plan.held)}
    context.log.info(f"retention purge: {summary}")
    return summary


@job(description="Purge payload contents past retention; hashes stay, verify stays clean.")
def retention_purge() -> None:
    purge_past_retention()


retention_purge_daily = ScheduleDefinition(
    name="retention_purge_daily",
    job=retention_purge,
    cron_schedule="30 2 * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.STOPPED,
    description="Daily retention purge (stopped until turned on).",
)


def retention_definitions() -> Definitions:
    return Definitions(jobs=[retention_purge], schedules=[retention_purge_daily])
