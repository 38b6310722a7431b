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

import orjson

from governance_pipeline.contracts.clock import Clock
from governance_pipeline.contracts.enums import RoutingMode
from governance_pipeline.contracts.errors import ConfigError
from governance_pipeline.engine import ids
from governance_pipeline.engine.config import (
    AggregationNode,
    CoalesceNode,
    GateNode,
    PipelineConfig,
    TransformNode,
)
from governance_pipeline.engine.expressions import Expression, compile_expression
from governance_pipeline.engine.graph import Graph, build_graph, route_targets
from governance_pipeline.engine.plugin_api import BatchFunction, Sink, Source, Transform
from governance_pipeline.engine.policy_hook import PolicyHook
from governance_pipeline.engine.registry import plugin_class
from governance_pipeline.landscape.logical_states import DEFAULT_ROUTE_REASON

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


def uses_policies(config: PipelineConfig) -> bool:
    return bool(config.policies) or any(node.policies for node in config.nodes)


@dataclass(frozen=True)
class GateDecision:
    """What taking one route of a gate means, worked out once per run rather than per row."""

    targets: list[tuple[str, str]]
    edge_ids: list[str]
    reason_json: str
    mode: RoutingMode


@dataclass
class RunContext:
    run_id: str
    config: PipelineConfig
    graph: Graph
    plugins: Plugins
    clock: Clock
    base_dir: Path
    policy_snapshot_id: str | None = None
    #: Runtime policy of the run (None: the pipeline attaches no policies).
    policy: PolicyHook | None = None
    edge_ids: dict[tuple[str, str, str], str] = field(default_factory=dict)
    #: target name → (consuming node id, or None for a sink; whether arrivals are timed)
    dispatch: dict[str, tuple[str | None, bool]] = field(default_factory=dict)
    #: gate id → {route index, or None for the default → decision}
    gate_decisions: dict[str, dict[int | None, GateDecision]] = field(default_factory=dict)

    @classmethod
    def build(cls, run_id: str, config: PipelineConfig, base_dir: Path, clock: Clock,
              policy_snapshot_id: str | None = None,
              policy: PolicyHook | None = None) -> RunContext:
        if policy is None and uses_policies(config):
            raise ConfigError(
                f"pipeline {config.name} attaches policies but the run has no policy snapshot: "
                "start it through `governance-pipeline run` (or the Dagster job), which "
                "snapshots its policies", details={"pipeline": config.name})
        if policy is not None:
            policy_snapshot_id = policy.snapshot_id
        graph = build_graph(config)
        plugins = build_plugins(config, graph, base_dir)
        edge_ids = {edge: ids.edge_id(run_id, i) for i, edge in enumerate(graph.edges)}
        ctx = cls(run_id, config, graph, plugins, clock, base_dir, policy_snapshot_id, policy,
                  edge_ids)
        ctx.dispatch = {name: (None, False) for name in config.sinks}
        for channel, consumer in graph.consumer.items():
            timed = isinstance(graph.node(consumer), (CoalesceNode, AggregationNode))
            ctx.dispatch[channel] = (consumer, timed)
        for node in graph.order:
            if isinstance(node, GateNode):
                ctx.gate_decisions[node.id] = {
                    i: ctx._decision(node, i) for i in [*range(len(node.routes)), None]}
        return ctx

    def _decision(self, node: GateNode, index: int | None) -> GateDecision:
        targets = route_targets(node, index)
        reason = (DEFAULT_ROUTE_REASON if index is None else orjson.dumps(
            {"route": index, "when": node.routes[index].when}, option=orjson.OPT_SORT_KEYS).decode())
        forking = index is not None and node.routes[index].fork is not None
        return GateDecision(targets, [self.edge(node.id, t, label) for label, t in targets],
                            reason, RoutingMode.COPY if forking else RoutingMode.MOVE)

    def edge(self, from_node: str, target: str, label: str) -> str:
        to_node = self.graph.consumer.get(target, target)
        return self.edge_ids[(from_node, to_node, label)]
