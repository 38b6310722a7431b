"""What must hold before a new run records anything: a valid IR, the IR that will run, approval.

In order: the pipeline's IR is validated (``ir.validated_*``; a rejected IR stops here, exit 2);
the pipeline file is compared with the IR the job was built from when the code location loaded,
and the DAG the engine builds now with the IR (``ir.dag_diff_*``; a mismatch stops here, exit
5); a pipeline of risk tier 2 or more consumes an approval bound to its tenant and ir_hash
(``run.blocked`` and exit 4 without one). Every decision is an event in the global ledger,
correlated by the run id the run will have, so a refused attempt is recorded too.
"""

from __future__ import annotations

import json
from pathlib import Path

from governance_pipeline.engine.config import PipelineConfig
from governance_pipeline.governance.approvals.gate import require_run_approval
from governance_pipeline.governance.ir.dag import build_dag, diff_against_manifest
from governance_pipeline.governance.ir.model import build_ir
from governance_pipeline.governance.ir.record import check_dag, check_diff, record_validation
from governance_pipeline.governance.ir.risk import Outcome, Validation, rejection, validate_ir
from governance_pipeline.landscape.store import Landscape


def clear_to_start(landscape: Landscape, config: PipelineConfig, path: Path, *, run_id: str,
                   manifest: str | None, approval_token: str | None,
                   actor: str) -> Validation:
    tenant = config.tenant
    validation = validate_ir(config)
    record_validation(landscape, validation, tenant_id=tenant, request_id=run_id)
    if validation.outcome is Outcome.REJECT:
        raise rejection(validation)
    if manifest:
        check_diff(landscape, diff_against_manifest(config, json.loads(manifest)),
                   tenant_id=tenant, request_id=run_id)
    check_dag(landscape, build_ir(config), build_dag(config, path.parent), tenant_id=tenant,
              request_id=run_id)
    require_run_approval(landscape, tenant_id=tenant, ir_hash=validation.ir_hash,
                         risk_tier=validation.risk_tier, token=approval_token, actor=actor,
                         run_id=run_id, pipeline_ref=str(path))
    return validation
