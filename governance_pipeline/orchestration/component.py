"""A governance pipeline as a Dagster Component: ``type: governance_pipeline.PipelineComponent``.

A ``dg`` project declares a pipeline in a ``defs.yaml``::

    type: governance_pipeline.PipelineComponent
    attributes:
      path: ../../../../pipelines/claims_triage.yaml   # relative to this defs.yaml
      job_name: claims_triage_nightly                   # optional; default the pipeline's name
      description: Nightly triage of new claims         # optional; default the pipeline's
      tags: {team: claims}                              # optional run tags of the job

(``dg scaffold defs governance_pipeline.PipelineComponent DIR --path PIPELINE.yaml`` writes
one), and ``dg list defs`` / ``dg check defs`` see what it builds: the pipeline's job (its description
the node graph), the source and sink assets of its group, and a policy check per sink and policy
(``pipeline_assets``). The code location of ``workspace.yaml`` (``catalog``) builds every
pipeline of ``GOVERNANCE_PIPELINES_DIR`` with the same ``PipelineComponent.definitions``, so
there is one way a pipeline becomes Dagster definitions.

A missing or invalid pipeline file fails the load with GP-DAGSTER-001, the pipeline's own error
code in the message: ``dg check defs`` shows both and exits non-zero.
"""

# No ``from __future__ import annotations``: Dagster resolves the component's field annotations.
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import dagster as dg
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    Definitions,
    multi_asset_check,
)
from dagster.components import ScaffoldRequest, Scaffolder, scaffold_component, scaffold_with
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from governance_pipeline.contracts.clock import SYSTEM_CLOCK
from governance_pipeline.contracts.errors import (
    ConfigError,
    ExitCode,
    GovernanceError,
    register,
)
from governance_pipeline.contracts.settings import Settings
from governance_pipeline.engine.config import PipelineConfig, load_pipeline
from governance_pipeline.engine.confinement import check_sink_paths
from governance_pipeline.engine.context import RunContext
from governance_pipeline.governance.policy.runtime import preview_policy
from governance_pipeline.landscape.queries import reading
from governance_pipeline.landscape.schema import runs
from governance_pipeline.orchestration.jobs import build_pipeline_job
from governance_pipeline.orchestration.pipeline_assets import (
    PipelineAssets,
    asset_specs,
    check_specs,
    pipeline_assets,
)
from governance_pipeline.orchestration.pipeline_reports import check_evaluations, run_facts
from governance_pipeline.orchestration.resources import (
    SHARED_LANDSCAPE,
    LandscapeResource,
    pipeline_env,
)

PIPELINE_COMPONENT_INVALID = register(
    "GP-DAGSTER-001", "A pipeline component names a missing or invalid pipeline file",
    "Point `attributes.path` of the component's defs.yaml at a pipeline YAML (relative to the "
    "defs.yaml) and fix what `governance-pipeline validate PIPELINE.yaml` reports.",
    ExitCode.INVALID_INPUT)


class PipelineComponentError(ConfigError):
    default_code = PIPELINE_COMPONENT_INVALID

    def __str__(self) -> str:
        # Dagster prints the exception text: it carries the code and the fix.
        return f"{self.code.code}: {self.message}\nfix: {self.code.fix}"


def load_validated(path: Path, env: Mapping[str, str]) -> PipelineConfig:
    """Load and fully validate one pipeline (schema, wiring, plugins, options, expressions,
    where its sinks may write)."""
    config = load_pipeline(path, env=env)
    RunContext.build("validate", config, path.parent, SYSTEM_CLOCK,
                     policy=preview_policy(config, path.parent, env=env))
    check_sink_paths(config, path, Settings.from_env(dict(env)), env)
    return config


class PipelineScaffoldParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="The pipeline YAML, relative to the new defs.yaml.")


class PipelineScaffolder(Scaffolder[PipelineScaffoldParams]):
    """``dg scaffold defs governance_pipeline.PipelineComponent DIR --path PIPELINE.yaml``."""

    @classmethod
    def get_scaffold_params(cls) -> type[PipelineScaffoldParams]:
        return PipelineScaffoldParams

    def scaffold(self, request: ScaffoldRequest[PipelineScaffoldParams]) -> None:
        scaffold_component(request, {"path": request.params.path})


@scaffold_with(PipelineScaffolder)
class PipelineComponent(dg.Component, dg.Resolvable, dg.Model):
    """A governance pipeline YAML as a Dagster job, its sinks as assets, its policies as checks."""

    path: str = Field(description="The pipeline YAML, relative to the defs.yaml (or absolute).")
    job_name: str | None = Field(default=None, description="Name of the job; default the "
                                                            "pipeline's name.")
    description: str | None = Field(default=None, description="Job description; default the "
                                                               "pipeline's.")
    tags: dict[str, str] = Field(default_factory=dict, description="Extra tags of the job's runs.")

    def build_defs(self, context: dg.ComponentLoadContext) -> Definitions:
        return self.definitions(context.path)

    def pipeline_path(self, base_dir: Path) -> Path:
        return (base_dir / os.path.expandvars(self.path)).resolve()

    def validated_pipeline(self, base_dir: Path,
                           settings: Settings | None = None) -> tuple[Path, PipelineConfig]:
        path = self.pipeline_path(base_dir)
        env = pipeline_env(settings or Settings.from_env())
        try:
            return path, load_validated(path, env)
        except GovernanceError as exc:
            raise PipelineComponentError(
                f"pipeline {path}: {exc.code.code}: {exc.message}",
                details={"path": str(path), "cause": exc.problem()}) from None
        except OSError as exc:
            raise PipelineComponentError(f"cannot read pipeline {path}: {exc.strerror or exc}",
                                         details={"path": str(path)}) from None

    def definitions(self, base_dir: Path, settings: Settings | None = None, *,
                    config: PipelineConfig | None = None) -> Definitions:
        """The job, assets and checks of the pipeline (``config`` when already validated)."""
        if config is None:
            path, config = self.validated_pipeline(base_dir, settings)
        else:
            path = self.pipeline_path(base_dir)
        job = build_pipeline_job(path, config, landscape=SHARED_LANDSCAPE, name=self.job_name,
                                 description=self.description, tags=self.tags)
        assets = pipeline_assets(config)
        checks = _policy_checks(assets)
        return Definitions(assets=asset_specs(config, path, assets, job.name), jobs=[job],
                           asset_checks=[checks] if checks is not None else [],
                           resources={"landscape": SHARED_LANDSCAPE})


def _latest_run_id(landscape: LandscapeResource, pipeline: str) -> str | None:
    with landscape.open() as ls, reading(ls) as conn:
        return conn.execute(select(runs.c.run_id).where(runs.c.pipeline_name == pipeline)
                            .order_by(runs.c.started_at.desc(), runs.c.run_id.desc())
                            .limit(1)).scalar_one_or_none()


def _policy_checks(assets: PipelineAssets) -> object | None:
    specs = check_specs(assets)
    if not specs:
        return None

    @multi_asset_check(specs=specs, name=f"{assets.group}_policy_checks", can_subset=True,
                       description=f"Re-evaluate the policy checks of pipeline {assets.pipeline} "
                                   "on its latest Landscape run (each run evaluates them too).")
    def policy_checks(context: AssetCheckExecutionContext,
                      landscape: LandscapeResource) -> Iterator[AssetCheckResult]:
        run_id = _latest_run_id(landscape, assets.pipeline)
        selected = context.selected_asset_check_keys
        if run_id is None:
            for spec in specs:
                if spec.key in selected:
                    yield AssetCheckResult(
                        asset_key=spec.asset_key, check_name=spec.name, passed=False,
                        severity=AssetCheckSeverity.WARN,
                        description=f"no Landscape run of pipeline {assets.pipeline} yet")
            return
        with landscape.open() as ls:
            facts = run_facts(ls, run_id)
        for evaluation in check_evaluations(facts, assets):
            if evaluation.asset_check_key in selected:
                yield AssetCheckResult(
                    asset_key=evaluation.asset_key, check_name=evaluation.check_name,
                    passed=evaluation.passed, severity=evaluation.severity,
                    description=evaluation.description, metadata=evaluation.metadata)
    return policy_checks
