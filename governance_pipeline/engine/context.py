"""Everything a run needs to process chunks: the graph, plugin instances, compiled expressions.

Built once per process from the pipeline definition; plugin construction validates plugin
options, so a bad option is reported at validate time with its path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar

from governance_pipeline.contracts.clock import Clock
from governance_pipeline.contracts.errors import ConfigError
from governance_pipeline.engine import ids
from governance_pipeline.engine.config import (
    AggregationNode,
    GateNode,
    PipelineConfig,
    TransformNode,
)
from governance_pipeline.engine.expressions import Expression, compile_expression
from governance_pipeline.engine.graph import Graph, build_graph
from governance_pipeline.engine.plugin_api import BatchFunction, Sink, Source, Transform
from governance_pipeline.engine.registry import plugin_class

P = TypeVar("P")

#: Names an aggregation condition may use besides the row's fields.
BATCH_VARIABLES = ("batch_count", "batch_age_seconds")


@dataclass
class Plugins:
    source: Source
    transforms: dict[str, Transform] = field(default_factory=dict)
    batch_functions: dict[str, BatchFunction] = field(default_factory=dict)
    sinks: dict[str, Sink] = field(default_factory=dict)
    gate_routes: dict[str, list[Expression]] = field(default_factory=dict)
    conditions: dict[str, Expression] = field(default_factory=dict)


def _compile(text: str, where: str, variables: tuple[str, ...] = ()) -> Expression:
    try:
        return compile_expression(text, variables=variables)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc.message}", code=exc.code,
                          details={**exc.details, "path": where}) from exc


def _construct(where: str, factory: Callable[[], P]) -> P:
    """Build a plugin; an options error is prefixed with the node it belongs to.

    Plugins name the option (``compute: options.fields.x: ...``) but cannot know which node
    they serve, and two nodes may use the same plugin.
    """
    try:
        return factory()
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc.message}", code=exc.code,
                          details={**exc.details, "path": where}) from exc


def build_plugins(config: PipelineConfig, graph: Graph, base_dir: Path) -> Plugins:
    src_cls = plugin_class(Source, config.source.plugin, where="source.plugin")
    source = src_cls(config.source.options, base_dir=base_dir,
                     schema=config.source.row_schema)  # type: ignore[call-arg]
    plugins = Plugins(source=source)
    for i, node in enumerate(config.nodes):
        where = f"nodes[{i}]"
        if isinstance(node, TransformNode):
            cls = plugin_class(Transform, node.plugin, where=f"{where}.plugin")
            plugins.transforms[node.id] = _construct(
                where, partial(cls, node.options, base_dir=base_dir))
        elif isinstance(node, GateNode):
            plugins.gate_routes[node.id] = [
                _compile(r.when, f"{where}.routes[{j}].when") for j, r in enumerate(node.routes)]
        elif isinstance(node, AggregationNode):
            if node.trigger.condition:
                plugins.conditions[node.id] = _compile(
                    node.trigger.condition, f"{where}.trigger.condition", BATCH_VARIABLES)
            if node.function is not None:
                fcls = plugin_class(BatchFunction, node.function.plugin,
                                    where=f"{where}.function.plugin")
                plugins.batch_functions[node.id] = _construct(
                    f"{where}.function", partial(fcls, node.function.options, base_dir=base_dir))
    for name, sink in config.sinks.items():
        cls = plugin_class(Sink, sink.plugin, where=f"sinks.{name}.plugin")
        plugins.sinks[name] = cls(sink.options, base_dir=base_dir, sink_name=name)  # type: ignore[call-arg]
    return plugins


@dataclass
class RunContext:
    run_id: str
    config: PipelineConfig
    graph: Graph
    plugins: Plugins
    clock: Clock
    base_dir: Path
    policy_snapshot_id: str | None = None
    edge_ids: dict[tuple[str, str, str], str] = field(default_factory=dict)

    @classmethod
    def build(cls, run_id: str, config: PipelineConfig, base_dir: Path, clock: Clock,
              policy_snapshot_id: str | None = None) -> RunContext:
        graph = build_graph(config)
        plugins = build_plugins(config, graph, base_dir)
        edge_ids = {edge: ids.edge_id(run_id, i) for i, edge in enumerate(graph.edges)}
        return cls(run_id, config, graph, plugins, clock, base_dir, policy_snapshot_id, edge_ids)

    def edge(self, from_node: str, target: str, label: str) -> str:
        to_node = self.graph.consumer.get(target, target)
        return self.edge_ids[(from_node, to_node, label)]
