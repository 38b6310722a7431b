"""The evidence bundle of one run, built from the Landscape.

Counts come from grouped SQL over the whole run; lists that can grow with the data (failed
policy decisions, lineage) are bounded: failures are listed up to a limit with their total, and
lineage is a seeded sample of the run's source rows (``sampling``).
"""

from __future__ import annotations

from sqlalchemy import Connection, and_, case, exists, func, select

from governance_pipeline.contracts.clock import to_iso
from governance_pipeline.contracts.enums import Outcome
from governance_pipeline.contracts.errors import AuditIntegrityError
from governance_pipeline.contracts.records import (
    Artifact,
    Edge,
    Incident,
    InflectionPoint,
    Node,
    PolicyDecision,
    PolicySnapshotRecord,
    Run,
    SourceRow,
    TokenOutcome,
)
from governance_pipeline.governance.exports import reads, sampling
from governance_pipeline.governance.exports.data_protection_section import data_protection_info
from governance_pipeline.governance.exports.models import (
    ArtifactInfo,
    CodeIdentityInfo,
    CodeManifestInfo,
    DecisionInfo,
    DecisionSummary,
    EdgeInfo,
    EvidenceBundle,
    LineageItem,
    NodeInfo,
    PolicySnapshotInfo,
    RunInfo,
)
from governance_pipeline.landscape.code_manifest import manifest_hash, stored_identities
from governance_pipeline.landscape.queries import get_run, reading
from governance_pipeline.landscape.schema import (
    artifacts,
    edges,
    incidents,
    inflection_points,
    nodes,
    policy_decisions,
    policy_snapshots,
    rows,
    token_outcomes,
    tokens,
)
from governance_pipeline.landscape.store import Landscape

FAILURES_LISTED = 100


def build_evidence(landscape: Landscape, run_id: str, *, sample_size: int = 25,
                   seed: str | None = None) -> EvidenceBundle:
    """The evidence bundle of ``run_id`` (``NotFoundError`` if there is no such run)."""
    with reading(landscape, snapshot=True) as conn:
        run = get_run(conn, run_id)
        heads = reads.ledger_heads(conn, [run_id])
        seed = seed or sampling.default_seed("evidence", run_id, heads)
        row_ids = list(conn.execute(select(rows.c.row_id).where(rows.c.run_id == run_id))
                       .scalars())
        sample = sampling.draw(row_ids, sample_size, seed)
        token_count, outcome_counts = _outcome_counts(conn, run_id)
        point = conn.execute(select(inflection_points)
                             .where(inflection_points.c.run_id == run_id)).mappings().first()
        return EvidenceBundle(
            title=f"Evidence bundle: run {run_id}", subject=run_id, tenant_id=run.tenant_id,
            generated_at=to_iso(landscape.clock.now()), ledger_heads=heads,
            run=run_info(run), policy_snapshot=_snapshot(conn, run),
            nodes=_nodes(conn, run_id), edges=_edges(conn, run_id), token_count=token_count,
            outcome_counts=outcome_counts, decisions=_decisions(conn, run_id),
            inflection_point=reads.inflection_info(InflectionPoint.from_row(point))
            if point else None,
            incidents=[reads.incident_info(Incident.from_row(r)) for r in conn.execute(
                select(incidents).where(incidents.c.run_id == run_id)
                .order_by(incidents.c.detected_at, incidents.c.incident_id)).mappings()],
            artifacts=_artifacts(conn, run_id), approvals=reads.approvals_for_run(conn, run_id),
            lineage_sample=sample, lineage=_lineage(conn, run_id, sample.drawn),
            code_manifest=_code_manifest(conn, run_id),
            data_protection=data_protection_info(conn, run))


def _code_manifest(conn: Connection, run_id: str) -> CodeManifestInfo | None:
    records = stored_identities(conn, run_id)
    if not records:
        return None
    return CodeManifestInfo(manifest_hash=manifest_hash(records), nodes=[
        CodeIdentityInfo(node_id=r.node_id, position=r.position, plugin_name=r.plugin_name,
                         plugin_version=r.plugin_version, distribution=r.distribution,
                         plugin_class=r.plugin_class, function_name=r.function_name,
                         module_path=r.module_path, source_sha256=r.source_sha256,
                         function_distribution=r.function_distribution,
                         function_version=r.function_version, identity_hash=r.identity_hash)
        for r in records])


def run_info(run: Run) -> RunInfo:
    return RunInfo(
        run_id=run.run_id, pipeline_name=run.pipeline_name, tenant_id=run.tenant_id,
        status=run.status.value,
        termination_reason=run.termination_reason.value if run.termination_reason else None,
        started_at=run.started_at, ended_at=run.ended_at, config_hash=run.config_hash,
        canonical_version=run.canonical_version, resume_count=run.resume_count)


def _snapshot(conn: Connection, run: Run) -> PolicySnapshotInfo | None:
    if run.policy_snapshot_id is None:
        return None
    row = conn.execute(select(policy_snapshots).where(
        policy_snapshots.c.snapshot_id == run.policy_snapshot_id)).mappings().one()
    s = PolicySnapshotRecord.from_row(row)
    return PolicySnapshotInfo(snapshot_id=s.snapshot_id, content_hash=s.content_hash,
                              canonical_version=s.canonical_version, policy_count=s.policy_count,
                              created_at=s.created_at, policies_json=s.policies_json)


def _nodes(conn: Connection, run_id: str) -> list[NodeInfo]:
    found = [Node.from_row(r) for r in conn.execute(
        select(nodes).where(nodes.c.run_id == run_id)
        .order_by(nodes.c.position, nodes.c.node_id)).mappings()]
    return [NodeInfo(node_id=n.node_id, node_type=n.node_type.value, plugin_name=n.plugin_name,
                     plugin_version=n.plugin_version, determinism=n.determinism.value,
                     position=n.position, config_hash=n.config_hash) for n in found]


def _edges(conn: Connection, run_id: str) -> list[EdgeInfo]:
    found = [Edge.from_row(r) for r in conn.execute(
        select(edges).where(edges.c.run_id == run_id)
        .order_by(edges.c.from_node_id, edges.c.label, edges.c.edge_id)).mappings()]
    return [EdgeInfo(from_node_id=e.from_node_id, to_node_id=e.to_node_id, label=e.label,
                     mode=e.default_mode.value) for e in found]


def _count(value: object, what: str) -> int:
    if type(value) is not int or value < 0:
        raise AuditIntegrityError(f"{what} is not a count (got {value!r})")
    return value


def _outcome_counts(conn: Connection, run_id: str) -> tuple[int, dict[str, int]]:
    """(tokens, tokens per terminal outcome); tokens still only buffered count as 'buffered'."""
    o = token_outcomes
    known = {x.value for x in Outcome}
    counts: dict[str, int] = {}
    for outcome, n in conn.execute(
            select(o.c.outcome, func.count()).where(o.c.run_id == run_id, o.c.is_terminal == 1)
            .group_by(o.c.outcome)):
        if outcome not in known:
            raise AuditIntegrityError(f"run {run_id}: unknown token outcome {outcome!r}")
        counts[outcome] = _count(n, f"run {run_id} outcome {outcome}")
    terminal = o.alias("terminal")
    buffered = conn.execute(
        select(func.count(o.c.token_id.distinct())).where(
            o.c.run_id == run_id, o.c.outcome == Outcome.BUFFERED.value,
            ~exists().where(and_(terminal.c.token_id == o.c.token_id,
                                 terminal.c.is_terminal == 1)))).scalar_one()
    if buffered:
        counts[Outcome.BUFFERED.value] = _count(buffered, f"run {run_id} buffered")
    total = conn.execute(select(func.count()).select_from(tokens)
                         .where(tokens.c.run_id == run_id)).scalar_one()
    return _count(total, f"run {run_id} tokens"), dict(sorted(counts.items()))


def _decisions(conn: Connection, run_id: str) -> DecisionSummary:
    d = policy_decisions
    failed = d.c.result == "fail"
    evaluated, n_failed, n_would, n_blocked = conn.execute(select(
        func.count(),
        func.coalesce(func.sum(case((failed, 1), else_=0)), 0),
        func.coalesce(func.sum(case((d.c.would_block == 1, 1), else_=0)), 0),
        func.coalesce(func.sum(case((and_(d.c.would_block == 1, d.c.mode == "enforced"), 1),
                                    else_=0)), 0),
    ).where(d.c.run_id == run_id)).one()
    failures = [PolicyDecision.from_row(r) for r in conn.execute(
        select(d).where(d.c.run_id == run_id, failed)
        .order_by(d.c.created_at, d.c.decision_id).limit(FAILURES_LISTED)).mappings()]
    return DecisionSummary(
        evaluated=_count(evaluated, "decisions"), failed=_count(int(n_failed), "failed"),
        would_block=_count(int(n_would), "would_block"),
        blocked=_count(int(n_blocked), "blocked"), listed_limit=FAILURES_LISTED,
        failures=[DecisionInfo(
            decision_id=p.decision_id, token_id=p.token_id, node_id=p.node_id,
            policy_id=p.policy_id, rule_id=p.rule_id, severity=p.severity.value,
            mode=p.mode.value, would_block=p.would_block, detail_json=p.detail_json,
            created_at=p.created_at) for p in failures])


def _artifacts(conn: Connection, run_id: str) -> list[ArtifactInfo]:
    found = [Artifact.from_row(r) for r in conn.execute(
        select(artifacts).where(artifacts.c.run_id == run_id)
        .order_by(artifacts.c.sink_node_id, artifacts.c.created_at,
                  artifacts.c.artifact_id)).mappings()]
    return [ArtifactInfo(artifact_id=a.artifact_id, sink_node_id=a.sink_node_id,
                         artifact_type=a.artifact_type, path_or_uri=a.path_or_uri,
                         content_hash=a.content_hash, size_bytes=a.size_bytes,
                         row_count=a.row_count) for a in found]


def _lineage(conn: Connection, run_id: str, row_ids: list[str]) -> list[LineageItem]:
    if not row_ids:
        return []
    source = {r.row_id: r for r in (SourceRow.from_row(m) for m in conn.execute(
        select(rows).where(rows.c.row_id.in_(row_ids))).mappings())}
    outcomes: dict[str, list[str]] = {rid: [] for rid in row_ids}
    query = (select(tokens.c.row_id, token_outcomes)
             .join(tokens, tokens.c.token_id == token_outcomes.c.token_id)
             .where(tokens.c.row_id.in_(row_ids), token_outcomes.c.run_id == run_id,
                    token_outcomes.c.is_terminal == 1)
             .order_by(token_outcomes.c.token_id))
    for m in conn.execute(query).mappings():
        out = TokenOutcome.from_row(m)
        target = f" -> {out.sink_name}" if out.sink_name else ""
        outcomes[m["row_id"]].append(f"{out.token_id}: {out.outcome.value}{target}")
    return [LineageItem(row_id=rid, row_index=source[rid].row_index,
                        source_data_hash=source[rid].source_data_hash, outcomes=outcomes[rid])
            for rid in sorted(row_ids, key=lambda r: source[r].row_index)]
