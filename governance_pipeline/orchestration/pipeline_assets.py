"""What a pipeline looks like in Dagster's asset graph: its source, its sinks, its policy gates.

Each sink is an asset keyed ``[<pipeline>, <sink>]`` in the pipeline's own group, downstream of
the source, an external asset ``[<pipeline>, "source"]``; the pipeline's job materialises the
sinks (``pipeline_reports``), Dagster never does on its own. Every policy that rows reaching a
sink pass through — attached to a node upstream of the sink, or to the pipeline's output
boundary — is an asset check ``policy_<policy>`` on that sink, declared here so the checks show
before the first run.

Nothing here reads a database or the pipeline's data: only its validated configuration.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from dagster import AssetCheckSpec, AssetKey, AssetSpec

from governance_pipeline.engine.config import PipelineConfig
from governance_pipeline.engine.graph import SOURCE_NODE_ID, build_graph

#: Tags of the assets this module declares: which pipeline, and source or sink.
TAG_ROLE = "governance/role"
TAG_PIPELINE = "governance/pipeline"
ROLE_SOURCE = "source"
ROLE_SINK = "sink"
_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


def safe_name(name: str) -> str:
    """A Dagster name (group, check, job): letters, digits and underscores, no leading digit."""
    cleaned = _UNSAFE.sub("_", name)
    return cleaned if cleaned and not cleaned[0].isdigit() else f"pipeline_{cleaned}"


def check_name(policy_id: str) -> str:
    return f"policy_{_UNSAFE.sub('_', policy_id)}"


@dataclass(frozen=True)
class PipelineAssets:
    """The asset keys of one pipeline and, per sink, the policies (and where they sit) that
    gate the rows reaching it."""

    pipeline: str
    group: str
    source: AssetKey
    sinks: dict[str, AssetKey]
    #: sink → policy id → ids of the nodes (or the sink itself, for the output boundary) where
    #: the policy is evaluated on rows that may reach the sink.
    gates: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=dict)

    def check_keys(self) -> list[tuple[AssetKey, str, str]]:
        """(sink asset key, check name, policy id) of every policy check, in a stable order."""
        return [(self.sinks[sink], check_name(policy), policy)
                for sink in sorted(self.gates) for policy in sorted(self.gates[sink])]


def _upstream(config: PipelineConfig) -> dict[str, set[str]]:
    """Every node (and the source) from which tokens can reach each sink."""
    graph = build_graph(config)
    parents: dict[str, set[str]] = defaultdict(set)
    for src, dst, _label in graph.edges:
        parents[dst].add(src)
    reach: dict[str, set[str]] = {}
    for sink in config.sinks:
        seen: set[str] = set()
        todo = list(parents[sink])
        while todo:
            node = todo.pop()
            if node not in seen:
                seen.add(node)
                todo.extend(parents[node])
        reach[sink] = seen
    return reach


def pipeline_assets(config: PipelineConfig) -> PipelineAssets:
    prefix = config.name
    source_leaf = "source" if "source" not in config.sinks else "source_input"
    upstream = _upstream(config)
    policies_at = {node.id: list(node.policies) for node in config.nodes if node.policies}
    gates: dict[str, dict[str, tuple[str, ...]]] = {}
    for sink in config.sinks:
        found: dict[str, list[str]] = defaultdict(list)
        for node_id in sorted(upstream[sink] - {SOURCE_NODE_ID}):
            for policy in policies_at.get(node_id, ()):
                found[policy].append(node_id)
        for policy in config.policies:  # the output boundary: decisions name the sink
            found[policy].append(sink)
        if found:
            gates[sink] = {p: tuple(nodes) for p, nodes in found.items()}
    return PipelineAssets(config.name, safe_name(config.name), AssetKey([prefix, source_leaf]),
                          {sink: AssetKey([prefix, sink]) for sink in config.sinks}, gates)


def _destination(options: dict[str, object]) -> str:
    for key in ("path", "table", "url", "uri"):
        if key in options:
            return f"{key} `{options[key]}`"
    return "its plugin's destination"


def asset_specs(config: PipelineConfig, path: Path, assets: PipelineAssets,
                job: str | None = None) -> list[AssetSpec]:
    tags = {TAG_PIPELINE: safe_name(config.name)}
    source = AssetSpec(
        assets.source, group_name=assets.group, kinds={config.source.plugin},
        description=f"Source of pipeline {config.name}: {config.source.plugin} "
                    f"{_destination(config.source.options)} (read by the pipeline's job, not "
                    "materialised by Dagster).",
        metadata={"plugin": config.source.plugin, "pipeline_path": str(path)},
        tags={**tags, TAG_ROLE: ROLE_SOURCE})
    sinks = [AssetSpec(
        key, group_name=assets.group, deps=[assets.source], kinds={sink.plugin},
        description=f"Sink `{name}` of pipeline {config.name}: {sink.plugin} "
                    f"{_destination(sink.options)}{' (external destination)' if sink.external else ''}. "
                    f"Materialised by job `{job or safe_name(config.name)}` at the end of each run, "
                    "with the rows written, their sha256 and the Landscape run id.",
        metadata={"plugin": sink.plugin, "pipeline_path": str(path), "sink": name},
        tags={**tags, TAG_ROLE: ROLE_SINK})
        for name, sink in config.sinks.items() for key in [assets.sinks[name]]]
    return [source, *sinks]


def check_specs(assets: PipelineAssets) -> list[AssetCheckSpec]:
    specs = []
    for key, name, policy in assets.check_keys():
        where = ", ".join(assets.gates[key.path[-1]][policy])
        # Blocking: the evaluation of an enforced stop fails the step that reports it.
        specs.append(AssetCheckSpec(
            name, asset=key, blocking=True,
            description=f"Policy {policy} (at {where}) on the rows reaching this sink: passes "
                        "when no rule would block; warns with the would-block count under "
                        "advisory mode; fails when the enforced policy stopped the run. "
                        "Evaluated by every run of the pipeline's job."))
    return specs


# --- the node graph, for the job's description --------------------------------------------------
def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def node_graph_markdown(config: PipelineConfig) -> str:
    """The pipeline's nodes and wiring: a Markdown table, then the same graph in Mermaid."""
    graph = build_graph(config)
    outs: dict[str, list[str]] = defaultdict(list)
    for src, dst, label in graph.edges:
        outs[src].append(f"{label} → {dst}")
    lines = ["| step | node | kind | plugin | policies | goes to |", "|---|---|---|---|---|---|",
             f"| 0 | `{SOURCE_NODE_ID}` | source | {config.source.plugin} | | "
             f"{_cell('; '.join(outs[SOURCE_NODE_ID]))} |"]
    for node in graph.order:
        plugin = getattr(node, "plugin", None) or getattr(getattr(node, "function", None),
                                                          "plugin", "")
        lines.append(f"| {graph.positions[node.id]} | `{node.id}` | {node.kind} | {plugin} | "
                     f"{', '.join(node.policies)} | {_cell('; '.join(outs[node.id]))} |")
    for name, sink in config.sinks.items():
        lines.append(f"| {graph.positions[name]} | `{name}` | sink | {sink.plugin} | "
                     f"{', '.join(config.policies)} | {_cell('; '.join(outs[name]))} |")
    mermaid = ["graph LR"]
    for src, dst, label in graph.edges:
        mermaid.append(f'  {src} -->|"{label}"| {dst}')
    for name in config.sinks:
        mermaid.append(f"  {name}[({name})]")
    return "\n".join([*lines, "", "```mermaid", *mermaid, "```"])
