"""Which code each node of a run runs, recorded at run start and compared on every resume.

A node's identity: its plugin's name, the distribution that registers it and that
distribution's version (the engine's own node kinds — gate, coalesce, passthrough aggregation —
are the governance-pipeline distribution), the plugin class, and for a user's Python function
its qualified name, the SHA-256 of its module's source file and its distribution (None when the
module belongs to none, e.g. a package next to the pipeline file). The manifest — every node's
identity — is written with the run's nodes in the run's first ledgered transaction, so ``verify``
detects an edit of it; a run resumes only with the code it started with.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from sqlalchemy import Connection

from governance_pipeline.contracts.code_records import IDENTITY_FIELDS, CodeIdentityRecord
from governance_pipeline.contracts.errors import ConfigError, ExitCode, register
from governance_pipeline.contracts.hashing import stable_hash
from governance_pipeline.engine import aggregation, coalesce, processor
from governance_pipeline.engine.config import AggregationNode, PipelineConfig, TransformNode
from governance_pipeline.engine.context import Plugins, build_plugins
from governance_pipeline.engine.graph import SOURCE_NODE_ID, Graph, build_graph
from governance_pipeline.engine.plugin_api import BatchFunction, Plugin, Sink, Source, Transform
from governance_pipeline.engine.registry import plugin_distribution
from governance_pipeline.landscape.code_manifest import manifest_hash, stored_identities

__all__ = ["CODE_CHANGED", "CodeChangedError", "current_identities", "identities",
           "manifest_hash", "require_unchanged", "stored_identities"]

CODE_CHANGED = register(
    "GP-CODE-001", "The code of a node changed since the run started",
    "Restore the code the run started with (`governance-pipeline explain RUN --row N` and the "
    "evidence bundle list each node's function and source sha256), then resume; or start a new "
    "run with the changed code: all rows of one run are processed by one code.",
    ExitCode.INVALID_INPUT)

ENGINE_DISTRIBUTION = "governance-pipeline"
_ENGINE_MODULES = {"gate": processor.__name__, "coalesce": coalesce.__name__,
                   "aggregation": aggregation.__name__}


class CodeChangedError(ConfigError):
    default_code = CODE_CHANGED


@cache
def engine_version() -> str | None:
    try:
        return version(ENGINE_DISTRIBUTION)
    except PackageNotFoundError:  # running from a source tree that is not installed
        return None


def _record(run_id: str, node_id: str, position: int, now: str, *, plugin_name: str,
            kind: type[Plugin] | None, instance: Plugin | None,
            engine_module: str | None = None) -> CodeIdentityRecord:
    if instance is None:
        dist, dist_version = ENGINE_DISTRIBUTION, engine_version()
        plugin_class = str(engine_module)
    else:
        assert kind is not None
        dist, dist_version = plugin_distribution(kind, plugin_name)
        cls = type(instance)
        plugin_class = f"{cls.__module__}:{cls.__qualname__}"
    if dist_version is None:
        dist = None
    fn = instance.user_function() if instance is not None else None
    fields = {
        "node_id": node_id, "plugin_name": plugin_name, "plugin_version": dist_version,
        "distribution": dist, "plugin_class": plugin_class,
        "function_name": fn.qualified_name if fn else None,
        "source_sha256": fn.source_sha256 if fn else None,
        "function_distribution": fn.distribution if fn else None,
        "function_version": fn.distribution_version if fn else None}
    assert tuple(fields) == IDENTITY_FIELDS
    return CodeIdentityRecord(run_id=run_id, position=position,
                              module_path=fn.module_path if fn else None,
                              identity_hash=stable_hash(fields), recorded_at=now, **fields)


def identities(run_id: str, graph: Graph, plugins: Plugins, now: str) -> list[CodeIdentityRecord]:
    """The identity of every node (source, nodes, sinks) of a built pipeline, in step order."""
    config, pos = graph.config, graph.positions
    out = [_record(run_id, SOURCE_NODE_ID, pos[SOURCE_NODE_ID], now,
                   plugin_name=config.source.plugin, kind=Source, instance=plugins.source)]
    for node in graph.order:
        if isinstance(node, TransformNode):
            out.append(_record(run_id, node.id, pos[node.id], now, plugin_name=node.plugin,
                               kind=Transform, instance=plugins.transforms[node.id]))
        elif isinstance(node, AggregationNode) and node.function is not None:
            out.append(_record(run_id, node.id, pos[node.id], now,
                               plugin_name=node.function.plugin, kind=BatchFunction,
                               instance=plugins.batch_functions[node.id]))
        else:
            out.append(_record(run_id, node.id, pos[node.id], now, plugin_name=node.kind,
                               kind=None, instance=None, engine_module=_ENGINE_MODULES[node.kind]))
    for name, sink in config.sinks.items():
        out.append(_record(run_id, name, pos[name], now, plugin_name=sink.plugin, kind=Sink,
                           instance=plugins.sinks[name]))
    return out


def current_identities(run_id: str, config: PipelineConfig, base_dir: Path,
                       now: str) -> list[CodeIdentityRecord]:
    """Identities as the code stands now (plugins built afresh: modules re-read)."""
    graph = build_graph(config)
    return identities(run_id, graph, build_plugins(config, graph, base_dir), now)


def _short(value: object) -> str:
    if not isinstance(value, str):
        return "none" if value is None else str(value)
    return value[:12] + "…" if len(value) == 64 else value


def require_unchanged(conn: Connection, run_id: str, current: list[CodeIdentityRecord]) -> None:
    """Refuse (``CodeChangedError``, GP-CODE-001) if any node's code differs from the manifest.

    A run recorded before code identities existed has no manifest: nothing to compare.
    """
    stored = {r.node_id: r for r in stored_identities(conn, run_id)}
    if not stored:
        return
    now = {r.node_id: r for r in current}
    changes = []
    for node_id in sorted(set(stored) | set(now),
                          key=lambda n: (stored.get(n) or now[n]).position):
        before, after = stored.get(node_id), now.get(node_id)
        if before is None or after is None:
            changes.append({"node": node_id, "field": "node",
                            "stored": before is not None, "current": after is not None})
            continue
        for name in IDENTITY_FIELDS:
            if getattr(before, name) != getattr(after, name):
                changes.append({"node": node_id, "field": name, "stored": getattr(before, name),
                                "current": getattr(after, name),
                                "function": before.function_name})
    if not changes:
        return
    first = changes[0]
    nodes = sorted({c["node"] for c in changes})
    what = f" of {first['function']}" if first.get("function") else ""
    raise CodeChangedError(
        f"run {run_id}: the code of node {', '.join(repr(n) for n in nodes)} changed since the "
        f"run started: {first['field']}{what} was {_short(first['stored'])}, is now "
        f"{_short(first['current'])}",
        details={"run_id": run_id, "nodes": nodes, "changes": changes})
