"""Runtime policy for a run: snapshot at start, the verified stored snapshot afterwards."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from governance_pipeline.contracts.errors import AuditIntegrityError
from governance_pipeline.contracts.hashing import canonical_json, sha256_hex
from governance_pipeline.contracts.records import Run
from governance_pipeline.engine.config import PipelineConfig
from governance_pipeline.engine.context import uses_policies
from governance_pipeline.engine.runner import RunResult
from governance_pipeline.governance.policy.evaluator import SnapshotPolicy
from governance_pipeline.governance.policy.snapshot import (
    SNAPSHOT_MISSING,
    ModeSettings,
    StoredSnapshot,
    build_snapshot_content,
    load_snapshot,
    store_snapshot,
)
from governance_pipeline.landscape.store import Landscape


def policy_for_new_run(landscape: Landscape, config: PipelineConfig, base_dir: Path,
                       run_id: str, *, mode_override: str | None = None,
                       env: Mapping[str, str] | None = None) -> SnapshotPolicy:
    """Snapshot the policies in force now (stored before the run is), as the run's hook."""
    modes = ModeSettings.from_env(env, override=mode_override)
    stored = store_snapshot(landscape, config.tenant,
                            build_snapshot_content(config, base_dir, modes))
    return SnapshotPolicy(run_id, stored, config)


def preview_policy(config: PipelineConfig, base_dir: Path, *,
                   env: Mapping[str, str] | None = None) -> SnapshotPolicy | None:
    """The hook a run would get now, compiled but not stored (``validate``)."""
    if not uses_policies(config) and not config.policy_files:
        return None
    content = build_snapshot_content(config, base_dir, ModeSettings.from_env(env))
    digest = sha256_hex(canonical_json(content))
    return SnapshotPolicy("validate", StoredSnapshot("preview", digest, content), config)


def policy_for_run(landscape: Landscape, run: Run, config: PipelineConfig) -> SnapshotPolicy | None:
    """The hook of an existing run from its stored, verified snapshot — never the files now."""
    if run.policy_snapshot_id is None:
        if uses_policies(config):
            raise AuditIntegrityError(
                f"run {run.run_id} attaches policies but names no policy snapshot",
                code=SNAPSHOT_MISSING, details={"run_id": run.run_id})
        return None
    return SnapshotPolicy(run.run_id, load_snapshot(landscape, run.policy_snapshot_id), config)


def publish_stopped_run(landscape: Landscape, run: Run) -> tuple[bool, RunResult]:
    """For a run stopped by policy whose process died before it promoted the rows written
    before the stop: promote them now (the run stays stopped). False if already published."""
    from governance_pipeline.engine.config import load_pipeline
    from governance_pipeline.engine.context import RunContext
    from governance_pipeline.engine.policy_stop import publish_stopped_output
    from governance_pipeline.engine.runner import Runner

    assert run.pipeline_path is not None
    path = Path(run.pipeline_path)
    config = load_pipeline(path)
    ctx = RunContext.build(run.run_id, config, path.parent, landscape.clock,
                           policy=policy_for_run(landscape, run, config))
    runner = Runner(landscape, ctx)
    return publish_stopped_output(runner), runner.result()
