"""Pipelines and a registrable probe plugin for the IR validation and IR↔DAG diff tests.

Plugins are found through entry points, so the probe is registered the way any installed
package registers one: a ``*.dist-info`` directory with ``entry_points.txt`` on ``sys.path``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from governance_pipeline.engine.config import PipelineConfig, parse_pipeline

PROBE_MODULE = "gp_ir_probe_plugins"
PROBE_DIST = "gp_ir_probe-0.1.dist-info"

_PROBE_SOURCE = '''
from governance_pipeline.engine.plugin_api import Transform, TransformResult


class ProbeA(Transform):
    name = "ir_probe"

    def process(self, row, ctx):
        return TransformResult.ok(row)


class ProbeB(ProbeA):
    pass


class ShadowCompute(ProbeA):
    name = "compute"
'''

Doc = dict[str, Any]


class ProbePackage:
    """A fake installed distribution whose entry points a test can rewrite."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / f"{PROBE_MODULE}.py").write_text(_PROBE_SOURCE, encoding="utf-8")
        self.dist = root / PROBE_DIST
        self.dist.mkdir()
        (self.dist / "METADATA").write_text("Metadata-Version: 2.1\nName: gp-ir-probe\n"
                                            "Version: 0.1\n", encoding="utf-8")
        self.register({})

    def register(self, transforms: dict[str, str]) -> None:
        """Set the distribution's transform entry points: name → class name in the module."""
        lines = ["[governance_pipeline.transforms]"]
        lines += [f"{name} = {PROBE_MODULE}:{cls}" for name, cls in transforms.items()]
        (self.dist / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def install_probe_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ProbePackage:
    """Install the probe distribution for one test (``monkeypatch`` undoes it)."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.delitem(sys.modules, PROBE_MODULE, raising=False)
    package = ProbePackage(root)
    # Appended, so for a name registered twice the probe is the last entry point seen and wins
    # (the registry keeps the last), as a later-installed package would.
    monkeypatch.setattr(sys, "path", [*sys.path, str(root)])
    return package


def transform(node_id: str, source: str, target: str, plugin: str = "compute",
              **options: Any) -> Doc:
    opts = options or {"fields": {node_id: "1"}}
    return {"id": node_id, "kind": "transform", "plugin": plugin, "input": source,
            "options": opts, "on_success": target}


def base() -> Doc:
    """Tier 0: a local CSV source, a compute, a gate and local file sinks."""
    return {
        "name": "ir_probe", "tenant": "t1", "chunk_size": 10,
        "source": {"plugin": "csv", "options": {"path": "in.csv"}, "on_success": "raw",
                   "on_invalid": "quarantine"},
        "nodes": [
            transform("prep", "raw", "prepared"),
            {"id": "route", "kind": "gate", "input": "prepared",
             "routes": [{"when": "amount >= 100", "to": "high"}], "default": "out"},
        ],
        "sinks": {
            "out": {"plugin": "csv", "options": {"path": "out.csv"}},
            "high": {"plugin": "jsonl", "options": {"path": "high.jsonl"}},
            "quarantine": {"plugin": "jsonl", "options": {"path": "quarantine.jsonl"}},
        },
    }


def parse(doc: Doc) -> PipelineConfig:
    return parse_pipeline(doc)


def step_index(config: PipelineConfig, step_id: str) -> int:
    from governance_pipeline.engine.graph import build_graph

    return build_graph(config).positions[step_id]
