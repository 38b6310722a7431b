"""The pipelines of ``GOVERNANCE_PIPELINES_DIR`` as Dagster definitions.

Every ``*.yaml`` / ``*.yml`` file becomes one job, unless it is invalid: then it gets no job, a
warning when the code location loads, and — like every pipeline file — an asset check
(``pipelines/<file>`` → ``valid``) whose description already says what is wrong and whose
execution records the failure in the UI. The ``pipeline_validation`` sensor executes the checks
whenever a pipeline file changes. One broken file never takes the other jobs down.
"""

# No ``from __future__ import annotations``: Dagster reads the annotations of the decorated
# functions at definition time.
import hashlib
import re
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    AssetSelection,
    AssetSpec,
    DefaultSensorStatus,
    Definitions,
    JobDefinition,
    RunRequest,
    SensorEvaluationContext,
    SkipReason,
    define_asset_job,
    multi_asset_check,
    sensor,
)

from governance_pipeline.contracts.clock import SYSTEM_CLOCK
from governance_pipeline.contracts.errors import GovernanceError
from governance_pipeline.contracts.settings import Settings
from governance_pipeline.engine.config import PipelineConfig, load_pipeline
from governance_pipeline.engine.confinement import check_sink_paths
from governance_pipeline.engine.context import RunContext
from governance_pipeline.governance.policy.runtime import preview_policy
from governance_pipeline.orchestration.jobs import build_pipeline_job, job_name
from governance_pipeline.orchestration.resources import LandscapeResource, pipeline_env
from governance_pipeline.orchestration.sensors import SENSORS

VALIDATION_JOB = "pipeline_validation"
#: Jobs of the code location that are not pipelines: a pipeline may not take their names.
RESERVED_JOB_NAMES = frozenset({VALIDATION_JOB, "landscape_integrity"})
_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


class PipelineFileWarning(UserWarning):
    """A pipeline file in GOVERNANCE_PIPELINES_DIR is invalid and has no job."""


@dataclass(frozen=True)
class PipelineEntry:
    path: Path
    config: PipelineConfig | None
    error: str | None
    asset_key: AssetKey


def pipeline_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir()
                  if p.is_file() and p.suffix in (".yaml", ".yml"))


def validate_file(path: Path, env: Mapping[str, str]) -> tuple[PipelineConfig | None, str | None]:
    """Load and fully validate one pipeline (schema, wiring, plugins, options, expressions)."""
    try:
        config = load_pipeline(path, env=env)
        RunContext.build("validate", config, path.parent, SYSTEM_CLOCK,
                         policy=preview_policy(config, path.parent, env=env))
        check_sink_paths(config, path, Settings.from_env(dict(env)), env)
    except GovernanceError as exc:
        return None, f"{exc.code.code}: {exc.message}"
    except OSError as exc:
        return None, f"cannot read {path}: {exc}"
    return config, None


def scan(directory: Path, env: Mapping[str, str]) -> list[PipelineEntry]:
    entries: list[PipelineEntry] = []
    names: dict[str, Path] = {}
    keys: set[AssetKey] = set()
    for path in pipeline_files(directory):
        # File names that differ only in characters an asset key cannot hold still get a key each.
        stem = _UNSAFE.sub("_", path.stem)
        key = AssetKey(["pipelines", stem])
        n = 1
        while key in keys:
            n += 1
            key = AssetKey(["pipelines", f"{stem}_{n}"])
        keys.add(key)
        config, error = validate_file(path, env)
        if config is not None and job_name(config) in RESERVED_JOB_NAMES:
            config, error = None, (f"job name {job_name(config)!r} is reserved for the code "
                                   "location's own job: rename the pipeline")
        if config is not None and job_name(config) in names:
            config, error = None, (f"job name {job_name(config)!r} is taken by "
                                   f"{names[job_name(config)].name}: pipeline names must differ")
        if config is not None:
            names[job_name(config)] = path
        entries.append(PipelineEntry(path, config, error, key))
    return entries


def _fingerprint(directory: Path) -> str:
    digest = hashlib.sha256()
    for path in pipeline_files(directory):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _validation_checks(settings: Settings, entries: list[PipelineEntry]) -> tuple[object, ...]:
    if not entries:
        return ()
    specs = [AssetCheckSpec("valid", asset=e.asset_key,
                            description=("Valid: runs as job " + job_name(e.config))
                            if e.config else f"INVALID (no job): {e.error}")
             for e in entries]
    loaded = {e.asset_key: e.path for e in entries}

    @multi_asset_check(specs=specs, name="validate_pipeline_files",
                       description="Re-validate the pipeline files as the code location would.")
    def validate_pipeline_files(
            context: AssetCheckExecutionContext) -> Iterator[AssetCheckResult]:
        now = {e.asset_key: e for e in scan(settings.pipelines_dir, pipeline_env(settings))}
        for key, path in loaded.items():
            entry = now.get(key)
            error = entry.error if entry else f"{path} no longer exists"
            passed = entry is not None and entry.config is not None
            yield AssetCheckResult(
                asset_key=key, check_name="valid", passed=passed,
                severity=AssetCheckSeverity.ERROR,
                metadata={"path": str(path),
                          **({"pipeline": entry.config.name} if entry and entry.config
                             else {"error": error or ""})})

    assets = [AssetSpec(e.asset_key, description=f"Pipeline file {e.path}",
                        group_name="pipelines", metadata={"path": str(e.path)})
              for e in entries]
    return (*assets, validate_pipeline_files)


def _validation_sensor(directory: Path, job: object) -> object:
    @sensor(name="pipeline_validation", job=job, minimum_interval_seconds=60,
            default_status=DefaultSensorStatus.RUNNING,
            description="Validates the pipeline files whenever one changes.")
    def pipeline_validation(context: SensorEvaluationContext) -> RunRequest | SkipReason:
        fingerprint = _fingerprint(directory)
        if fingerprint == context.cursor:
            return SkipReason("pipeline files unchanged")
        context.update_cursor(fingerprint)
        return RunRequest(run_key=fingerprint)
    return pipeline_validation


def build_pipeline_definitions(settings: Settings | None = None) -> Definitions:
    """Jobs, validation checks and sensors for the pipelines of ``settings.pipelines_dir``."""
    settings = settings or Settings.from_env()
    entries = scan(settings.pipelines_dir, pipeline_env(settings))
    jobs: list[JobDefinition] = []
    for entry in entries:
        if entry.config is None:
            warnings.warn(f"pipeline file {entry.path} is invalid and has no job: {entry.error}",
                          PipelineFileWarning, stacklevel=2)
        else:
            jobs.append(build_pipeline_job(entry.path, entry.config))
    checks = _validation_checks(settings, entries)
    extra: list[object] = []
    if checks:
        validation_job = define_asset_job(VALIDATION_JOB, selection=AssetSelection.all_asset_checks(),
                                          description="Validate every pipeline file.")
        extra = [validation_job]
        sensors = [*SENSORS, _validation_sensor(settings.pipelines_dir, validation_job)]
    else:
        sensors = list(SENSORS)
    return Definitions(
        assets=[c for c in checks if isinstance(c, AssetSpec)],
        asset_checks=[c for c in checks if not isinstance(c, AssetSpec)],
        jobs=[*jobs, *extra], sensors=sensors,
        resources={"landscape": LandscapeResource()})
