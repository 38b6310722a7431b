"""The operator-log entries of a run's start and resume (``governance/operator_log.py``).

A new run's entry is written in the run's own first transaction (its scope, with the run record,
nodes and edges); a run refused before it exists (a rejected IR, a missing approval) is logged
in the global scope under the run id it would have had. Inputs: the pipeline file's SHA-256, the
configuration hash, and the policy mode and kill switch in force at the start (then the policy
snapshot's hash, once stored).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from governance_pipeline.engine.config import PipelineConfig
from governance_pipeline.engine.runner import config_hash
from governance_pipeline.contracts.hashing import file_sha256
from governance_pipeline.governance.policy.evaluator import SnapshotPolicy
from governance_pipeline.governance.policy.snapshot import ModeSettings


def run_inputs(path: Path, config: PipelineConfig, *, policy_mode: str | None,
               dagster_run_id: str) -> dict[str, Any]:
    modes = ModeSettings.from_env(override=policy_mode)
    return {"pipeline": config.name, "tenant_id": config.tenant,
            "pipeline_sha256": file_sha256(path), "config_hash": config_hash(config),
            "policy_mode": modes.default.value, "policy_mode_override": policy_mode,
            "kill_switch": modes.kill_switch, "dagster_run_id": dagster_run_id}


def snapshot_inputs(policy: SnapshotPolicy) -> dict[str, Any]:
    """What the stored snapshot says was in force (the same values, now hashed with it)."""
    described = policy.describe()
    return {"policy_snapshot_id": policy.snapshot_id,
            "policy_snapshot_hash": described["snapshot_hash"],
            "policy_mode": described["default_mode"], "kill_switch": described["kill_switch"]}
