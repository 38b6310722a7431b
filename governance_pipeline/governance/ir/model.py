"""The IR of a pipeline: its ordered steps, each with a hash of its own canonical configuration.

The pipeline definition *is* the IR: ``ir_hash`` is the SHA-256 of ``config.canonical()`` (RFC
8785), so any semantic edit changes it while key order, whitespace and YAML style do not. Steps
follow the engine's step indices (source, nodes in graph order, sinks), so an IR step, a DAG node
and a node state in the audit trail share one index.

A step's hash covers its id, kind, plugin name, the class the registry resolves that name to,
and its configuration — not its index, so inserting one node reports one extra node instead of
every later step as changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from governance_pipeline.contracts.errors import ConfigError
from governance_pipeline.contracts.hashing import stable_hash
from governance_pipeline.engine.config import (
    AggregationNode,
    PipelineConfig,
    TransformNode,
)
from governance_pipeline.engine.graph import SOURCE_NODE_ID, build_graph
from governance_pipeline.engine.plugin_api import (
    BatchFunction,
    Plugin,
    Sink,
    Source,
    Transform,
)
from governance_pipeline.engine.registry import UNKNOWN_PLUGIN, plugin_class

HASH_PREFIX = "sha256:"


class StepKind(StrEnum):
    SOURCE = "source"
    TRANSFORM = "transform"
    GATE = "gate"
    COALESCE = "coalesce"
    AGGREGATION = "aggregation"
    SINK = "sink"

    @property
    def plugin_base(self) -> type[Plugin] | None:
        """The plugin base class (and so the registry group) a step of this kind names."""
        return _BASES.get(self)


_BASES: dict[StepKind, type[Plugin]] = {
    StepKind.SOURCE: Source, StepKind.TRANSFORM: Transform,
    StepKind.AGGREGATION: BatchFunction, StepKind.SINK: Sink,
}


def prefixed(hex_digest: str) -> str:
    return f"{HASH_PREFIX}{hex_digest}"


def ir_hash(config: PipelineConfig) -> str:
    """``sha256:<hex>`` of the canonical pipeline definition (the same digest as config_hash)."""
    return prefixed(stable_hash(config.canonical()))


def implementation_name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def resolve_implementation(kind: StepKind, plugin: str | None) -> str | None:
    """``module:qualname`` of the class the registry resolves ``plugin`` to; None when unknown.

    Goes through ``plugin_class`` so the IR resolves names exactly as the engine will.
    """
    base = kind.plugin_base
    if plugin is None or base is None:
        return None
    try:
        return implementation_name(plugin_class(base, plugin, where=f"{kind}.plugin"))
    except ConfigError as exc:
        if exc.code is not UNKNOWN_PLUGIN:
            raise
        return None


def step_hash(step_id: str, kind: StepKind, plugin: str | None, implementation: str | None,
              config: dict[str, Any]) -> str:
    return prefixed(stable_hash({"id": step_id, "kind": kind.value, "plugin": plugin,
                                 "implementation": implementation, "config": config}))


@dataclass(frozen=True, slots=True)
class IRStep:
    index: int
    id: str
    kind: StepKind
    plugin: str | None                 # a source/transform/sink plugin, an aggregation's function
    implementation: str | None         # what the registry resolves ``plugin`` to (None: unknown)
    config: dict[str, Any] = field(compare=False, hash=False, repr=False)
    step_hash: str = ""

    def __post_init__(self) -> None:
        expected = step_hash(self.id, self.kind, self.plugin, self.implementation, self.config)
        if not self.step_hash:
            object.__setattr__(self, "step_hash", expected)
        elif self.step_hash != expected:
            raise ValueError(f"IR step {self.id}: step_hash does not match its content")

    @property
    def options(self) -> dict[str, Any]:
        if self.kind is StepKind.AGGREGATION:
            function = self.config.get("function") or {}
            return dict(function.get("options") or {})
        return dict(self.config.get("options") or {})

    def as_dict(self) -> dict[str, Any]:
        return {"step_index": self.index, "step_id": self.id, "kind": self.kind.value,
                "plugin": self.plugin, "implementation": self.implementation,
                "step_hash": self.step_hash}


@dataclass(frozen=True, slots=True)
class IR:
    pipeline: str
    tenant: str
    ir_hash: str
    steps: tuple[IRStep, ...]
    #: Pipeline-level settings the risk rules read (they are inside ``ir_hash`` too).
    pii_fields: tuple[str, ...] = ()
    boundary_policies: tuple[str, ...] = ()

    @property
    def step_count(self) -> int:
        return len(self.steps)


def _node_plugin(node: Any) -> str | None:
    if isinstance(node, TransformNode):
        return node.plugin
    if isinstance(node, AggregationNode) and node.function is not None:
        return node.function.plugin
    return None


def build_ir(config: PipelineConfig) -> IR:
    """The ordered, hashed steps of ``config``; wiring errors raise ``ConfigError`` (GP-CONFIG-011)."""
    graph = build_graph(config)
    canonical = config.canonical()
    nodes_by_id = {node["id"]: node for node in canonical["nodes"]}
    steps: list[IRStep] = []

    def add(step_id: str, kind: StepKind, plugin: str | None, cfg: dict[str, Any]) -> None:
        assert graph.positions[step_id] == len(steps), "IR order must follow the engine's"
        steps.append(IRStep(len(steps), step_id, kind, plugin,
                            resolve_implementation(kind, plugin), cfg))

    add(SOURCE_NODE_ID, StepKind.SOURCE, config.source.plugin, canonical["source"])
    for node in graph.order:
        add(node.id, StepKind(node.kind), _node_plugin(node), nodes_by_id[node.id])
    for name, sink in config.sinks.items():
        add(name, StepKind.SINK, sink.plugin, canonical["sinks"][name])
    return IR(config.name, config.tenant, prefixed(stable_hash(canonical)), tuple(steps),
              tuple(config.pii_fields), tuple(config.policies))
