"""The DAG actually built for execution, and its diff against the IR.

``dag_from_context`` reads the engine's built graph and the plugin *instances* (what would
really run): each node records the class it was built from (``module:qualname``) and the hash of
the configuration it was built with, hashed exactly like an IR step so the two compare one to
one. ``dag_hash`` is the canonical hash of the definition the graph was built from: it equals
``ir_hash`` exactly when the validated definition is the one being run.

Dagster loads code locations long before a run starts, so ``job_manifest`` (JSON, no Dagster
import) is attached to each job when definitions load, and ``diff_against_manifest`` finds a
pipeline file that changed in between.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from governance_pipeline.contracts.errors import AuditIntegrityError, ExitCode, register
from governance_pipeline.contracts.hashing import stable_hash
from governance_pipeline.engine.config import (
    AggregationNode,
    PipelineConfig,
    TransformNode,
)
from governance_pipeline.engine.context import Plugins, build_plugins
from governance_pipeline.engine.graph import SOURCE_NODE_ID, Graph, build_graph
from governance_pipeline.engine.plugin_api import Plugin
from governance_pipeline.governance.ir.model import (
    IR,
    IRStep,
    StepKind,
    build_ir,
    implementation_name,
    prefixed,
    step_hash,
)

IR_DAG_MISMATCH = register(
    "GP-IR-002", "The pipeline that would run differs from the validated IR",
    "The pipeline file or an installed plugin changed after validation: review the change, run "
    "`governance-pipeline validate` again and, if its tier needs one, get the approval again "
    "(reload the Dagster code location so the job carries the new IR).",
    ExitCode.INTEGRITY)

MANIFEST_VERSION = 1


class DagMismatchError(AuditIntegrityError):
    default_code = IR_DAG_MISMATCH


@dataclass(frozen=True, slots=True)
class DagNode:
    index: int
    id: str
    kind: StepKind
    plugin: str | None
    implementation: str | None
    config_hash: str
    node_hash: str

    def as_dict(self) -> dict[str, Any]:
        return {"step_index": self.index, "step_id": self.id, "kind": self.kind.value,
                "plugin": self.plugin, "implementation": self.implementation,
                "config_hash": self.config_hash, "step_hash": self.node_hash}


@dataclass(frozen=True, slots=True)
class BuiltDag:
    dag_hash: str
    nodes: tuple[DagNode, ...]


def _node(index: int, node_id: str, kind: StepKind, plugin: str | None,
          instance: Plugin | None, cfg: dict[str, Any]) -> DagNode:
    impl = implementation_name(type(instance)) if instance is not None else None
    return DagNode(index, node_id, kind, plugin, impl, prefixed(stable_hash(cfg)),
                   step_hash(node_id, kind, plugin, impl, cfg))


def dag_from_context(graph: Graph, plugins: Plugins) -> BuiltDag:
    """The nodes of a built graph with the plugin instances built for it (``RunContext``)."""
    canonical = graph.config.canonical()
    nodes_by_id = {node["id"]: node for node in canonical["nodes"]}
    pos = graph.positions
    nodes = [_node(pos[SOURCE_NODE_ID], SOURCE_NODE_ID, StepKind.SOURCE,
                   graph.config.source.plugin, plugins.source, canonical["source"])]
    for node in graph.order:
        plugin: str | None = None
        instance: Plugin | None = None
        if isinstance(node, TransformNode):
            plugin, instance = node.plugin, plugins.transforms[node.id]
        elif isinstance(node, AggregationNode) and node.function is not None:
            plugin, instance = node.function.plugin, plugins.batch_functions[node.id]
        nodes.append(_node(pos[node.id], node.id, StepKind(node.kind), plugin, instance,
                           nodes_by_id[node.id]))
    for name, sink in graph.config.sinks.items():
        nodes.append(_node(pos[name], name, StepKind.SINK, sink.plugin, plugins.sinks[name],
                           canonical["sinks"][name]))
    return BuiltDag(prefixed(stable_hash(canonical)), tuple(nodes))


def build_dag(config: PipelineConfig, base_dir: Path) -> BuiltDag:
    """Build the graph and instantiate its plugins as a run would, then describe them."""
    graph = build_graph(config)
    return dag_from_context(graph, build_plugins(config, graph, base_dir))


# --- the diff -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class HashMismatch:
    step_index: int
    step_id: str
    ir_step_hash: str
    dag_node_hash: str

    def as_dict(self) -> dict[str, Any]:
        """The seed's shape (step ids are in the DagDiff's human description)."""
        return {"step_index": self.step_index, "ir_step_hash": self.ir_step_hash,
                "dag_node_hash": self.dag_node_hash}


@dataclass(frozen=True, slots=True)
class DagDiff:
    pipeline: str
    ir_hash: str
    dag_hash: str
    step_count: int
    dag_node_count: int
    missing_ir_steps: tuple[int, ...]        # IR step indices with no DAG node of that id
    extra_dag_nodes: tuple[int, ...]         # DAG node indices with no IR step of that id
    hash_mismatches: tuple[HashMismatch, ...]
    missing_ids: tuple[str, ...] = ()
    extra_ids: tuple[str, ...] = ()

    @property
    def all_hashes_match(self) -> bool:
        return (self.ir_hash == self.dag_hash and not self.missing_ir_steps
                and not self.extra_dag_nodes and not self.hash_mismatches)

    @property
    def event_type(self) -> str:
        return "ir.dag_diff_ok" if self.all_hashes_match else "ir.dag_diff_failed"

    def mismatch_details(self) -> dict[str, Any]:
        return {"missing_ir_steps": list(self.missing_ir_steps),
                "extra_dag_nodes": list(self.extra_dag_nodes),
                "hash_mismatches": [m.as_dict() for m in self.hash_mismatches]}

    def describe(self) -> str:
        """One line naming what differs (for the error message and the CLI)."""
        parts = []
        if self.ir_hash != self.dag_hash:
            parts.append(f"definition hash {self.ir_hash[:19]}… ≠ {self.dag_hash[:19]}…")
        if self.missing_ids:
            parts.append("missing from the DAG: " + ", ".join(self.missing_ids))
        if self.extra_ids:
            parts.append("not in the IR: " + ", ".join(self.extra_ids))
        if self.hash_mismatches:
            parts.append("changed: " + ", ".join(m.step_id for m in self.hash_mismatches))
        return "; ".join(parts) or "IR and DAG match"


def diff(ir: IR, dag: BuiltDag) -> DagDiff:
    """Compare IR steps with DAG nodes by id; an id on both sides compares by hash."""
    dag_by_id = {node.id: node for node in dag.nodes}
    ir_ids = {step.id for step in ir.steps}
    missing = [s for s in ir.steps if s.id not in dag_by_id]
    extra = [n for n in dag.nodes if n.id not in ir_ids]
    mismatches = tuple(HashMismatch(s.index, s.id, s.step_hash, dag_by_id[s.id].node_hash)
                       for s in ir.steps
                       if s.id in dag_by_id and dag_by_id[s.id].node_hash != s.step_hash)
    return DagDiff(ir.pipeline, ir.ir_hash, dag.dag_hash, len(ir.steps), len(dag.nodes),
                   tuple(s.index for s in missing), tuple(n.index for n in extra), mismatches,
                   tuple(s.id for s in missing), tuple(n.id for n in extra))


def mismatch_error(result: DagDiff) -> DagMismatchError:
    return DagMismatchError(
        f"pipeline {result.pipeline}: the DAG differs from the validated IR ({result.describe()})",
        code=IR_DAG_MISMATCH,
        details={"ir_hash": result.ir_hash, "dag_hash": result.dag_hash,
                 "mismatch_details": result.mismatch_details()})


# --- the Dagster job's manifest -----------------------------------------------------------------
def _manifest_step(step: IRStep) -> dict[str, Any]:
    return {**step.as_dict(), "config_hash": prefixed(stable_hash(step.config))}


def job_manifest(config: PipelineConfig) -> dict[str, Any]:
    """JSON-safe IR summary to attach to a Dagster job (metadata, or a tag as JSON text)."""
    ir = build_ir(config)
    return {"manifest_version": MANIFEST_VERSION, "pipeline": ir.pipeline,
            "ir_hash": ir.ir_hash, "steps": [_manifest_step(step) for step in ir.steps]}


def _malformed(why: str) -> DagMismatchError:
    return DagMismatchError(f"the job's IR manifest is malformed: {why}", code=IR_DAG_MISMATCH,
                            details={"reason": why})


def manifest_dag(manifest: Mapping[str, Any]) -> BuiltDag:
    """The DAG a job was loaded with, read back from its manifest (refuses a malformed one)."""
    if manifest.get("manifest_version") != MANIFEST_VERSION:
        raise _malformed(f"manifest_version {manifest.get('manifest_version')!r}")
    steps = manifest.get("steps")
    if not isinstance(manifest.get("ir_hash"), str) or not isinstance(steps, list):
        raise _malformed("ir_hash and steps are required")
    nodes = []
    for i, raw in enumerate(steps):
        try:
            nodes.append(DagNode(int(raw["step_index"]), str(raw["step_id"]),
                                 StepKind(raw["kind"]), raw["plugin"], raw["implementation"],
                                 str(raw["config_hash"]), str(raw["step_hash"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise _malformed(f"steps[{i}]: {exc!r}") from exc
    return BuiltDag(manifest["ir_hash"], tuple(nodes))


def diff_against_manifest(config_now: PipelineConfig, manifest: Mapping[str, Any]) -> DagDiff:
    """IR of the pipeline as it is now against the job Dagster loaded (its manifest)."""
    return diff(build_ir(config_now), manifest_dag(manifest))
