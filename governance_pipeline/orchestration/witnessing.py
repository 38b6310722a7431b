"""The ledger witness as a Dagster job and an hourly schedule (stopped until an operator turns it
on and names the directory): the same ``witness_scope`` as ``governance-pipeline ledger witness``.

The directory comes from the op config or ``GOVERNANCE_WITNESS_DIR``; it should be a place a
second party keeps (a mounted share, a synced folder), never inside GOVERNANCE_HOME. A refusal
(a rollback or fork of the ledger) fails the run with its GP-WITNESS code.
"""

import os
from pathlib import Path
from typing import Any

from dagster import (
    Config,
    DefaultScheduleStatus,
    Definitions,
    Failure,
    OpExecutionContext,
    ScheduleDefinition,
    job,
    op,
)

from governance_pipeline.contracts.errors import GovernanceError
from governance_pipeline.contracts.settings import Settings
from governance_pipeline.landscape.store import Landscape

WITNESS_DIR_ENV = "GOVERNANCE_WITNESS_DIR"


class WitnessConfig(Config):
    out_dir: str | None = None
    """The witness directory; default GOVERNANCE_WITNESS_DIR."""
    runs: bool = False
    """Also witness every sealed run's checkpoint."""
    cosign_key: str | None = None
    """An Ed25519 private key (PEM) of the witness, to cosign with (tlog-cosignature v1)."""
    cosigner_name: str | None = None


@op(description="Append the latest ledger checkpoints to the witness directory, after checking "
                "they are consistent with what it holds.")
def witness_checkpoints(context: OpExecutionContext, config: WitnessConfig) -> dict[str, Any]:
    from governance_pipeline.landscape.witnessing import (
        Cosigner,
        witness_scope,
        witness_scopes,
    )

    out = config.out_dir or os.environ.get(WITNESS_DIR_ENV)
    if not out:
        raise Failure(description=f"no witness directory: set {WITNESS_DIR_ENV} or the op's "
                                  "out_dir", allow_retries=False)
    cosigner = (Cosigner.from_file(Path(config.cosign_key), config.cosigner_name or "")
                if config.cosign_key else None)
    landscape = Landscape.from_settings(Settings.from_env(), create=False)
    try:
        trusted = landscape.trusted_public_keys()
        outcomes = [witness_scope(landscape, scope, Path(out), trusted=trusted,
                                  cosigner=cosigner)
                    for scope in witness_scopes(landscape, config.runs)]
    except GovernanceError as exc:
        raise Failure(description=f"{exc.code.code}: {exc.message}", allow_retries=False) from exc
    finally:
        landscape.dispose()
    summary = {"out_dir": out, "checkpoints": [o.as_dict() for o in outcomes]}
    context.log.info(f"ledger witness: {summary}")
    return summary


@job(description="Witness the ledger: publish its latest checkpoints to an append-only directory.")
def ledger_witness() -> None:
    witness_checkpoints()


ledger_witness_hourly = ScheduleDefinition(
    name="ledger_witness_hourly",
    job=ledger_witness,
    cron_schedule="15 * * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.STOPPED,
    description="Hourly ledger witness into GOVERNANCE_WITNESS_DIR (stopped until turned on).",
)


def witness_definitions() -> Definitions:
    return Definitions(jobs=[ledger_witness], schedules=[ledger_witness_hourly])
