"""Pipelines with runtime policies, run through the engine on a real Landscape.

They are variants of the shipped screening example (``examples/pipelines/claims_screening.yaml``
with ``examples/policies/note_privacy.yaml``): the adjuster notes carry personal data at rows 37
and 58 and a secret at row 83 (``examples/generate_data.py``), which is what the expectations
are computed from.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select

from governance_pipeline.contracts.errors import PolicyStopError
from governance_pipeline.contracts.records import PolicyDecision
from governance_pipeline.engine.config import load_pipeline
from governance_pipeline.engine.runner import Runner
from governance_pipeline.governance.policy.runtime import policy_for_new_run, policy_for_run
from governance_pipeline.landscape.queries import get_run
from governance_pipeline.landscape.schema import policy_decisions
from governance_pipeline.landscape.store import Landscape

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "pipelines" / "claims_screening.yaml"
POLICY = REPO / "examples" / "policies" / "note_privacy.yaml"
NOTES = REPO / "examples" / "data" / "adjuster_notes.csv"

#: Where the notes break the policy: row index → the rule that fails there.
PLANTED = {37: "no-personal-data", 58: "no-personal-data", 83: "no-secrets"}


def note_rows() -> list[dict[str, str]]:
    with NOTES.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def policy_doc(mode: str | None = "enforced") -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(POLICY.read_text(encoding="utf-8"))
    if mode is None:
        doc.pop("mode", None)
    else:
        doc["mode"] = mode
    return doc


def screening(tmp: Path, *, chunk_size: int = 25, mode: str | None = "enforced",
              policy: dict[str, Any] | None = None, at_output: bool = False) -> Path:
    """A copy of the screening example in ``tmp`` with its own policy file and output path."""
    doc: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    doc["chunk_size"] = chunk_size
    doc["source"]["options"]["path"] = str(NOTES)
    doc["policy_files"] = ["note_privacy.yaml"]
    doc["sinks"]["published"]["options"]["path"] = str(tmp / "out" / "published.csv")
    if at_output:  # the same policy at the output boundary instead of the node
        doc["nodes"][0]["policies"] = []
        doc["policies"] = ["note_privacy"]
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "note_privacy.yaml").write_text(
        yaml.safe_dump(policy if policy is not None else policy_doc(mode), sort_keys=False),
        encoding="utf-8")
    path = tmp / "screening.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


@dataclass
class Outcome:
    runner: Runner
    stopped: PolicyStopError | None

    @property
    def run_id(self) -> str:
        return self.runner.run_id


def start(landscape: Landscape, path: Path, *, env: Mapping[str, str] | None = None,
          mode_override: str | None = None) -> Runner:
    config = load_pipeline(path, env={})
    from governance_pipeline.contracts.ids import new_id

    run_id = new_id("run_")
    hook = policy_for_new_run(landscape, config, path.parent, run_id,
                              mode_override=mode_override, env=env or {})
    return Runner.start(landscape, config, base_dir=path.parent, pipeline_path=path,
                        run_id=run_id, policy=hook)


def attach(landscape: Landscape, run_id: str, path: Path) -> Runner:
    """A new runner for an existing run (another process, a later step): stored snapshot."""
    from governance_pipeline.engine.context import RunContext

    config = load_pipeline(path, env={})
    run = get_run(landscape, run_id)
    ctx = RunContext.build(run_id, config, path.parent, landscape.clock,
                           policy=policy_for_run(landscape, run, config))
    return Runner(landscape, ctx)


def execute(landscape: Landscape, path: Path, *, env: Mapping[str, str] | None = None,
            mode_override: str | None = None) -> Outcome:
    runner = start(landscape, path, env=env, mode_override=mode_override)
    try:
        runner.execute()
    except PolicyStopError as exc:
        return Outcome(runner, exc)
    return Outcome(runner, None)


def decisions(landscape: Landscape, run_id: str) -> list[PolicyDecision]:
    with landscape.engine.connect() as conn:
        return [PolicyDecision.from_row(r) for r in conn.execute(
            select(policy_decisions).where(policy_decisions.c.run_id == run_id)
            .order_by(policy_decisions.c.decision_id)).mappings()]


def row_of(token_id: str) -> int:
    return int(token_id.split(".r", 1)[1].split(".", 1)[0])


def would_block(landscape: Landscape, run_id: str) -> set[tuple[int, str, str]]:
    """(row, node, rule) of every decision that would block."""
    return {(row_of(d.token_id), d.node_id, d.rule_id)
            for d in decisions(landscape, run_id) if d.would_block}


def published_claim_ids(path: Path) -> list[int]:
    with path.open(encoding="utf-8", newline="") as fh:
        return [int(r["claim_id"]) for r in csv.DictReader(fh)]
