"""What a run did to its sink assets, read back from the Landscape as Dagster events.

``published_events`` gives, for a run whose sinks are published (completed, or stopped by an
enforced policy with the rows before the stop promoted), one ``AssetMaterialization`` per sink
artifact — rows, sha256, path or table, the Landscape run id, outcome counts, the policy snapshot
hash — and one ``AssetCheckEvaluation`` per policy check of ``pipeline_assets``: pass, warn
(advisory: rules would have blocked rows) or fail (the enforced policy stopped the run here; the
evaluation is *blocking*, so the step that reports it fails without a stack of ours, the code,
rule, row and fix in the evaluation itself).

Everything comes from the audit trail, never from the step's memory, so a re-executed step or
the on-demand check reports exactly what the Landscape holds.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import orjson
from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    AssetMaterialization,
    MetadataValue,
)
from sqlalchemy import func, select

from governance_pipeline.contracts.errors import AuditIntegrityError, PolicyStopError
from governance_pipeline.contracts.records import Run
from governance_pipeline.engine.policy_check import POLICY_STOPPED
from governance_pipeline.landscape.queries import get_run, reading
from governance_pipeline.landscape.schema import (
    artifacts,
    policy_snapshots,
    token_outcomes,
)
from governance_pipeline.landscape.schema_governance import (
    incidents,
    inflection_points,
    policy_decisions,
)
from governance_pipeline.landscape.store import Landscape
from governance_pipeline.orchestration.pipeline_assets import PipelineAssets

POLICY_STOPPED_CODE = POLICY_STOPPED.code


@dataclass(frozen=True, slots=True)
class Stop:
    """Where an enforced policy stopped the run (the inflection point) and the fix to apply."""

    policy_id: str
    rule_id: str
    node_id: str
    row_index: int
    reason: str
    fix: str
    decision_id: str


@dataclass(frozen=True)
class RunFacts:
    run: Run
    snapshot_hash: str | None
    counts: dict[str, int]
    sink_counts: dict[str, dict[str, int]]
    artifacts: list[dict[str, Any]]
    #: (node_id, policy_id, rule_id, mode) → [evaluated, failed, would_block]
    decisions: dict[tuple[str, str, str, str], list[int]]
    stop: Stop | None


def _count(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise AuditIntegrityError(f"{what}: {value!r} is not a count")
    return value


def run_facts(ls: Landscape, run_id: str) -> RunFacts:
    run = get_run(ls, run_id)
    with reading(ls, snapshot=True) as conn:
        snapshot_hash = None
        if run.policy_snapshot_id is not None:
            snapshot_hash = conn.execute(
                select(policy_snapshots.c.content_hash)
                .where(policy_snapshots.c.snapshot_id == run.policy_snapshot_id)).scalar_one()
        o = token_outcomes
        counts: dict[str, int] = {}
        sink_counts: dict[str, dict[str, int]] = defaultdict(dict)
        for sink, outcome, n in conn.execute(
                select(o.c.sink_name, o.c.outcome, func.count())
                .where(o.c.run_id == run_id, o.c.is_terminal == 1)
                .group_by(o.c.sink_name, o.c.outcome)):
            n = _count(n, f"run {run_id} outcome {outcome}")
            counts[outcome] = counts.get(outcome, 0) + n
            if sink is not None:
                sink_counts[sink][outcome] = n
        arts = [dict(r) for r in conn.execute(
            select(artifacts).where(artifacts.c.run_id == run_id)
            .order_by(artifacts.c.sink_node_id, artifacts.c.artifact_id)).mappings()]
        d = policy_decisions
        decisions: dict[tuple[str, str, str, str], list[int]] = {}
        for node, policy, rule, mode, result, would, n in conn.execute(
                select(d.c.node_id, d.c.policy_id, d.c.rule_id, d.c.mode, d.c.result,
                       d.c.would_block, func.count())
                .where(d.c.run_id == run_id)
                .group_by(d.c.node_id, d.c.policy_id, d.c.rule_id, d.c.mode, d.c.result,
                          d.c.would_block)):
            tally = decisions.setdefault((node, policy, rule, mode), [0, 0, 0])
            n = _count(n, f"run {run_id} decisions")
            tally[0] += n
            tally[1] += n if result == "fail" else 0
            tally[2] += n if would == 1 else 0
        point = conn.execute(select(inflection_points).where(
            inflection_points.c.run_id == run_id)).mappings().first()
        stop = None
        if point is not None:
            context = conn.execute(select(incidents.c.context_json).where(
                incidents.c.inflection_id == point["inflection_id"])).scalar_one_or_none()
            fix = orjson.loads(context).get("fix", "") if context else ""
            stop = Stop(point["policy_id"], point["rule_id"], point["node_id"],
                        _count(point["row_index"], "inflection row"), point["reason"], fix or "",
                        point["decision_id"])
    return RunFacts(run, snapshot_hash, dict(sorted(counts.items())),
                    {k: dict(sorted(v.items())) for k, v in sink_counts.items()}, arts,
                    decisions, stop)


def _location(uri: str) -> dict[str, Any]:
    if "://" in uri:  # a database table: the sink names it by URL
        return {"table": MetadataValue.text(uri)}
    return {"path": MetadataValue.path(uri)}


def materializations(facts: RunFacts, assets: PipelineAssets) -> list[AssetMaterialization]:
    run = facts.run
    found = []
    for art in facts.artifacts:
        key = assets.sinks.get(art["sink_node_id"])
        if key is None:  # the pipeline file no longer has this sink: nothing to attach it to
            continue
        rows = _count(art["row_count"], "artifact row_count")
        found.append(AssetMaterialization(
            asset_key=key,
            description=f"Written by Landscape run {run.run_id} ({run.status.value}).",
            metadata={
                "dagster/row_count": MetadataValue.int(rows),
                "rows_written": MetadataValue.int(rows),
                "sha256": MetadataValue.text(art["content_hash"]),
                **_location(art["path_or_uri"]),
                "size_bytes": MetadataValue.int(_count(art["size_bytes"], "artifact size")),
                "landscape_run_id": MetadataValue.text(run.run_id),
                "run_status": MetadataValue.text(run.status.value),
                "outcomes": MetadataValue.json(facts.counts),
                "sink_outcomes": MetadataValue.json(
                    facts.sink_counts.get(art["sink_node_id"], {})),
                "policy_snapshot_hash": MetadataValue.text(facts.snapshot_hash or "none"),
                "config_hash": MetadataValue.text(run.config_hash),
                "audit": MetadataValue.md(
                    f"`governance-pipeline explain {run.run_id} --row N` — the lineage of a "
                    f"row · `governance-pipeline verify {run.run_id}` · "
                    f"`governance-pipeline export evidence {run.run_id} --out DIR`"),
            }))
    return found


def _rules_table(rows: list[tuple[str, str, str, int, int, int]]) -> str:
    lines = ["| node | rule | mode | evaluated | failed | would block |", "|---|---|---|---|---|---|"]
    lines += [f"| `{n}` | `{r}` | {m} | {e} | {f} | {w} |" for n, r, m, e, f, w in rows]
    return "\n".join(lines)


def check_evaluations(facts: RunFacts, assets: PipelineAssets) -> list[AssetCheckEvaluation]:
    run, stop = facts.run, facts.stop
    found = []
    for key, name, policy in assets.check_keys():
        gate_nodes = assets.gates[key.path[-1]][policy]
        rows = sorted((node, rule, mode, *tally)
                      for (node, pol, rule, mode), tally in facts.decisions.items()
                      if pol == policy and node in gate_nodes)
        evaluated = sum(r[3] for r in rows)
        failed = sum(r[4] for r in rows)
        would = sum(r[5] for r in rows)
        blocked = sum(r[5] for r in rows if r[2] == "enforced")
        metadata: dict[str, Any] = {
            "landscape_run_id": MetadataValue.text(run.run_id),
            "policy_snapshot_hash": MetadataValue.text(facts.snapshot_hash or "none"),
            "evaluated": MetadataValue.int(evaluated), "failed": MetadataValue.int(failed),
            "would_block": MetadataValue.int(would), "blocked": MetadataValue.int(blocked),
            "rules": MetadataValue.md(_rules_table(rows)),
        }
        stopped_here = stop is not None and stop.policy_id == policy and stop.node_id in gate_nodes
        if stopped_here:
            assert stop is not None
            text = (f"{POLICY_STOPPED_CODE}: enforced policy {policy} stopped run {run.run_id} "
                    f"at row {stop.row_index}, node {stop.node_id}, rule {stop.rule_id}: "
                    f"{stop.reason}. Fix: {stop.fix}")
            metadata.update({
                "code": MetadataValue.text(POLICY_STOPPED_CODE),
                "rule": MetadataValue.text(stop.rule_id),
                "row_index": MetadataValue.int(stop.row_index),
                "node": MetadataValue.text(stop.node_id),
                "reason": MetadataValue.text(stop.reason),
                "fix": MetadataValue.text(stop.fix),
                "problem": MetadataValue.json(_stop_problem(run, stop)),
            })
            found.append(AssetCheckEvaluation(
                asset_key=key, check_name=name, passed=False, severity=AssetCheckSeverity.ERROR,
                description=text, metadata=metadata, blocking=True))
        elif would:
            found.append(AssetCheckEvaluation(
                asset_key=key, check_name=name, passed=False, severity=AssetCheckSeverity.WARN,
                description=f"advisory: {would} decision(s) of {policy} would have blocked "
                            f"rows reaching this sink under enforcement (run {run.run_id}).",
                metadata=metadata, blocking=True))
        else:
            found.append(AssetCheckEvaluation(
                asset_key=key, check_name=name, passed=True,
                description=f"{policy}: {evaluated} decision(s), none would block "
                            f"(run {run.run_id}).", metadata=metadata, blocking=True))
    return found


def _stop_problem(run: Run, stop: Stop) -> dict[str, Any]:
    """The RFC 9457 document of the stop, as the command line reports it (exit 3)."""
    exc = PolicyStopError(
        f"run {run.run_id} stopped by enforced policy {stop.policy_id} (rule {stop.rule_id}) "
        f"at row {stop.row_index}, node {stop.node_id}: {stop.reason}",
        code=POLICY_STOPPED,
        details={"run_id": run.run_id, "row_index": stop.row_index, "node_id": stop.node_id,
                 "policy_id": stop.policy_id, "rule_id": stop.rule_id,
                 "decision_id": stop.decision_id})
    return exc.problem()


def published_events(ls: Landscape, run_id: str, assets: PipelineAssets
                     ) -> list[AssetMaterialization | AssetCheckEvaluation]:
    facts = run_facts(ls, run_id)
    return [*materializations(facts, assets), *check_evaluations(facts, assets)]
