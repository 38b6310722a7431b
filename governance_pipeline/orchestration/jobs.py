"""One Dagster job per pipeline YAML.

Every job runs the same graph of ops (``ops.py``); what differs is the pipeline file, bound as
the job's ``pipeline`` resource. The executor is in-process unless the run config picks the
multiprocess one (``execution: {config: {multiprocess: {max_concurrent: N}}}``): the audit trail
and the sink outputs are the same either way.

``pipeline_job`` is also the reconstructor the command line hands to ``execute_job`` (through
``build_reconstructable_job``), so a pipeline file anywhere on disk runs as a Dagster run on the
local instance, in this process or in step subprocesses.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

from dagster import JobDefinition, MetadataValue, build_reconstructable_job, graph
from dagster._core.definitions.reconstruct import ReconstructableJob
from dagster import multi_or_in_process_executor as executor

from governance_pipeline.engine.config import PipelineConfig
from governance_pipeline.orchestration.console_logger import console_logger
from governance_pipeline.orchestration.lifecycle import TAG_PIPELINE, TAG_PIPELINE_PATH
from governance_pipeline.orchestration.ops import (
    PipelineFile,
    close_run,
    final_step,
    open_run,
    process_chunks,
    read_source,
)
from governance_pipeline.orchestration.resources import LandscapeResource

#: Dagster job (and op) names: letters, digits and underscores.
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


@graph(description="A governance pipeline run: open, read into chunks, process each chunk, "
       "final step, close.")
def pipeline_run() -> None:
    opened = open_run()
    chunks, manifest = read_source(opened)
    reports = chunks.map(lambda group: process_chunks(opened, group))
    close_run(opened, final_step(opened, manifest, reports.collect()))


def job_name(config: PipelineConfig) -> str:
    name = _NAME_UNSAFE.sub("_", config.name)
    return name if name and not name[0].isdigit() else f"pipeline_{name}"


def job_description(path: Path, config: PipelineConfig, description: str | None = None) -> str:
    """What the UI shows for the job (Markdown): the pipeline's purpose, then its node graph."""
    from governance_pipeline.orchestration.pipeline_assets import node_graph_markdown

    head = description or config.description or f"Pipeline {config.name}"
    return (f"{head}\n\nPipeline `{config.name}` (`{path.name}`), tenant `{config.tenant}`, "
            f"chunk size {config.chunk_size}. Every run opens a Landscape run, processes the "
            "source in chunks through the nodes below, writes the sinks and materialises them "
            "as the assets `" + config.name + "/<sink>`.\n\n" + node_graph_markdown(config))


def build_pipeline_job(path: Path, config: PipelineConfig, *,
                       landscape: LandscapeResource | None = None, name: str | None = None,
                       description: str | None = None,
                       tags: Mapping[str, str] | None = None) -> JobDefinition:
    """The job that runs the pipeline at ``path`` (already validated as ``config``).

    ``name``, ``description`` and extra ``tags`` are what a Dagster component may set
    (``component.PipelineComponent``); by default the name is the pipeline's."""
    from governance_pipeline.governance.ir.dag import job_manifest
    from governance_pipeline.governance.ir.model import ir_hash
    from governance_pipeline.orchestration.pipeline_assets import node_graph_markdown

    path = path.resolve()
    manifest = job_manifest(config)
    return pipeline_run.to_job(
        name=name or job_name(config),
        description=job_description(path, config, description),
        resource_defs={"landscape": landscape or LandscapeResource(),
                       "pipeline": PipelineFile(path=str(path),
                                                ir_manifest=json.dumps(manifest, sort_keys=True))},
        metadata={"ir_hash": ir_hash(config), "tenant": config.tenant,
                  "pipeline_path": str(path),
                  "node_graph": MetadataValue.md(node_graph_markdown(config))},
        executor_def=executor,
        logger_defs={"console": console_logger},
        config={"execution": {"config": {"in_process": {}}}},
        tags={**(tags or {}), TAG_PIPELINE: config.name, TAG_PIPELINE_PATH: str(path),
              "tenant": config.tenant},
    )


def pipeline_job(pipeline_path: str) -> JobDefinition:
    """Reconstructor: the job of one pipeline file (what ``execute_job`` rebuilds per process)."""
    from governance_pipeline.contracts.settings import Settings
    from governance_pipeline.engine.config import load_pipeline
    from governance_pipeline.orchestration.resources import pipeline_env

    path = Path(pipeline_path)
    return build_pipeline_job(path, load_pipeline(path, env=pipeline_env(Settings.from_env())))


def reconstructable_pipeline_job(path: Path) -> ReconstructableJob:
    return build_reconstructable_job(__name__, pipeline_job.__name__,
                                     reconstructable_args=(str(path.resolve()),))
