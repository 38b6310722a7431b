"""The checked execution graph of a pipeline: names resolved, order fixed, invariants proven.

Everything that can be wrong with the wiring is found here, at validate time, before any run
starts: unknown targets, channels nobody consumes, cycles, unreachable nodes, and coalesce
branches that do not come from one fork.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Literal

from governance_pipeline.contracts.enums import NodeType
from governance_pipeline.contracts.errors import ConfigError, ExitCode, register
from governance_pipeline.engine.config import (
    DISCARD,
    AggregationNode,
    CoalesceNode,
    GateNode,
    NodeConfig,
    PipelineConfig,
    TransformNode,
)

WIRING_INVALID = register(
    "GP-CONFIG-011", "Pipeline wiring is invalid",
    "Every on_success/route/default target must be a sink or a channel that exactly one node "
    "consumes (as its input or a coalesce branch); see docs/pipelines.md#wiring.",
    ExitCode.INVALID_INPUT)

SOURCE_NODE_ID = "source"
TargetKind = Literal["sink", "channel", "discard"]

_KIND = {"transform": NodeType.TRANSFORM, "gate": NodeType.GATE, "coalesce": NodeType.COALESCE,
         "aggregation": NodeType.AGGREGATION}


def _fail(path: str, message: str) -> ConfigError:
    return ConfigError(f"{path}: {message}", code=WIRING_INVALID, details={"path": path})


def node_inputs(node: NodeConfig) -> list[str]:
    return list(node.branches) if isinstance(node, CoalesceNode) else [node.input]


def route_targets(node: GateNode, index: int | None) -> list[tuple[str, str]]:
    """(edge label, target) of a gate's route ``index``, or of its default when None."""
    if index is None:
        return [("default", node.default)]
    route = node.routes[index]
    if route.fork is not None:
        return [(f"route[{index}].fork.{branch}", branch) for branch in route.fork]
    return [(f"route[{index}]", route.to)]  # type: ignore[list-item]


def node_outputs(node: NodeConfig) -> list[tuple[str, str]]:
    """(label, target) pairs a node may send tokens to, error routes included."""
    outs: list[tuple[str, str]] = []
    if isinstance(node, GateNode):
        for i in range(len(node.routes)):
            outs.extend(route_targets(node, i))
        outs.extend(route_targets(node, None))
    else:
        outs.append(("on_success", node.on_success))
    if node.on_error != DISCARD:
        outs.append(("on_error", node.on_error))
    return outs


@dataclass(frozen=True)
class Graph:
    config: PipelineConfig
    order: tuple[NodeConfig, ...]             # processing order (topological)
    consumer: dict[str, str]                  # channel → consuming node id
    positions: dict[str, int]                 # node id (source, nodes, sinks) → step index
    edges: tuple[tuple[str, str, str], ...]   # (from node, to node, label) for the audit trail
    fork_of: dict[str, str]                   # coalesce id → the gate whose fork it joins

    def target_kind(self, name: str) -> TargetKind:
        if name == DISCARD:
            return "discard"
        return "sink" if name in self.config.sinks else "channel"

    def node(self, node_id: str) -> NodeConfig:
        for node in self.order:
            if node.id == node_id:
                return node
        raise KeyError(node_id)

    @staticmethod
    def node_type(node: NodeConfig) -> NodeType:
        return _KIND[node.kind]


def build_graph(config: PipelineConfig) -> Graph:
    sinks = set(config.sinks)
    ids = [n.id for n in config.nodes]
    for node_id in ids:
        if node_id in sinks or node_id == SOURCE_NODE_ID:
            raise _fail(f"nodes[{ids.index(node_id)}].id",
                        f"'{node_id}' is also a sink name or reserved ('source')")

    consumer: dict[str, str] = {}
    for i, node in enumerate(config.nodes):
        for channel in node_inputs(node):
            if channel in sinks:
                raise _fail(f"nodes[{i}]", f"input '{channel}' is a sink, not a channel")
            if channel in consumer:
                raise _fail(f"nodes[{i}]", f"channel '{channel}' is consumed by both "
                                          f"'{consumer[channel]}' and '{node.id}'")
            consumer[channel] = node.id

    producers: dict[str, list[str]] = defaultdict(list)

    def check_target(path: str, target: str, *, allow_discard: bool, producer: str) -> None:
        if target == DISCARD:
            if not allow_discard:
                raise _fail(path, "'discard' is only allowed for on_error / on_invalid")
            return
        if target not in sinks and target not in consumer:
            raise _fail(path, f"'{target}' is neither a sink nor a channel consumed by a node")
        if target in consumer:
            producers[target].append(producer)

    check_target("source.on_success", config.source.on_success, allow_discard=False,
                 producer=SOURCE_NODE_ID)
    if config.source.on_invalid != DISCARD and config.source.on_invalid not in sinks:
        raise _fail("source.on_invalid", f"'{config.source.on_invalid}' is not a sink")
    for i, node in enumerate(config.nodes):
        for label, target in node_outputs(node):
            if label == "on_error":
                if target not in sinks:
                    raise _fail(f"nodes[{i}].on_error", f"'{target}' is not a sink")
                continue
            check_target(f"nodes[{i}].{label}", target, allow_discard=False, producer=node.id)
    for name, sink in config.sinks.items():
        if sink.on_reject is not None and (sink.on_reject not in sinks or sink.on_reject == name):
            raise _fail(f"sinks.{name}.on_reject", f"'{sink.on_reject}' must be another sink")

    for channel, node_id in consumer.items():
        if not producers.get(channel):
            raise _fail(f"nodes[{ids.index(node_id)}]",
                        f"channel '{channel}' is consumed by '{node_id}' but nothing sends to it")

    order = _topological(config, consumer)
    fork_of = {n.id: _coalesce_origin(n, config, producers) for n in config.nodes
               if isinstance(n, CoalesceNode)}

    positions = {SOURCE_NODE_ID: 0}
    for node in order:
        positions[node.id] = len(positions)
    for name in config.sinks:
        positions[name] = len(positions)

    edges: list[tuple[str, str, str]] = []
    for label, target in [("on_success", config.source.on_success),
                          ("on_invalid", config.source.on_invalid)]:
        if target != DISCARD:
            edges.append((SOURCE_NODE_ID, consumer.get(target, target), label))
    for node in order:
        for label, target in node_outputs(node):
            edges.append((node.id, consumer.get(target, target), label))
    for name, sink in config.sinks.items():
        if sink.on_reject:
            edges.append((name, sink.on_reject, "on_reject"))
    return Graph(config, tuple(order), consumer, positions, tuple(edges), fork_of)


def _topological(config: PipelineConfig, consumer: dict[str, str]) -> list[NodeConfig]:
    by_id = {n.id: n for n in config.nodes}
    downstream: dict[str, set[str]] = defaultdict(set)
    indegree = {n.id: 0 for n in config.nodes}
    for node in config.nodes:
        for _, target in node_outputs(node):
            nxt = consumer.get(target)
            if nxt is not None and nxt not in downstream[node.id]:
                downstream[node.id].add(nxt)
                indegree[nxt] += 1
    queue = deque(n.id for n in config.nodes if indegree[n.id] == 0)
    order: list[NodeConfig] = []
    while queue:
        node_id = queue.popleft()
        order.append(by_id[node_id])
        for nxt in sorted(downstream[node_id], key=list(by_id).index):
            indegree[nxt] -= 1
            if indegree[nxt] == 0:
                queue.append(nxt)
    if len(order) != len(config.nodes):
        stuck = sorted(set(by_id) - {n.id for n in order})
        raise _fail("nodes", f"the wiring has a cycle through {', '.join(stuck)}")
    reachable = _reachable(config, consumer)
    unreachable = [n.id for n in config.nodes if n.id not in reachable]
    if unreachable:
        raise _fail("nodes", f"unreachable from the source: {', '.join(unreachable)}")
    return order


def _reachable(config: PipelineConfig, consumer: dict[str, str]) -> set[str]:
    by_id = {n.id: n for n in config.nodes}
    seen: set[str] = set()
    todo = [consumer[config.source.on_success]] if config.source.on_success in consumer else []
    while todo:
        node_id = todo.pop()
        if node_id in seen:
            continue
        seen.add(node_id)
        todo.extend(consumer[t] for _, t in node_outputs(by_id[node_id]) if t in consumer)
    return seen


def _coalesce_origin(node: CoalesceNode, config: PipelineConfig,
                     producers: dict[str, list[str]]) -> str:
    """The gate whose fork all branches of ``node`` come from; refuses anything else."""
    by_id = {n.id: n for n in config.nodes}
    where = f"nodes[{list(by_id).index(node.id)}].branches"
    # A fork is one route of one gate: two fork routes of the same gate never fire for one row.
    origins: set[tuple[str, int]] = set()
    for branch in node.branches:
        channel = branch
        while True:
            prods = producers.get(channel, [])
            if len(prods) != 1:
                raise _fail(where, f"coalesce '{node.id}': branch '{branch}' must have exactly "
                            "one producer upstream")
            producer = by_id.get(prods[0])
            if producer is None:
                raise _fail(where, f"coalesce '{node.id}': branch '{branch}' does not come "
                            "from a fork")
            fork_route = next((i for i, r in enumerate(producer.routes)
                               if channel in (r.fork or [])), None) \
                if isinstance(producer, GateNode) else None
            if fork_route is not None:
                origins.add((producer.id, fork_route))
                break
            if isinstance(producer, AggregationNode):
                raise _fail(where, f"coalesce '{node.id}': branch '{branch}' passes aggregation "
                            f"'{producer.id}': batching inside a fork cannot be coalesced per row")
            if isinstance(producer, CoalesceNode):
                raise _fail(where, f"coalesce '{node.id}': branch '{branch}' passes another "
                            f"coalesce '{producer.id}'")
            assert isinstance(producer, (TransformNode, GateNode))
            channel = producer.input
    if len(origins) != 1:
        forks = ", ".join(f"{gate}.routes[{i}]" for gate, i in sorted(origins))
        raise _fail(where, f"coalesce '{node.id}': branches come from different forks ({forks})")
    return origins.pop()[0]
