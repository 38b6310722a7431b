"""Lineage of one source row or token: what happened to it, node by node, and how it ended.

Everything is read with Tier-1 validation and every payload is verified against its hash, so an
explanation is either true to the recorded trail or fails loudly.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from governance_pipeline.contracts.code_records import CodeIdentityRecord
from governance_pipeline.contracts.errors import NotFoundError
from governance_pipeline.contracts.records import (
    Call,
    InflectionPoint,
    NodeState,
    PolicyDecision,
    Run,
    SourceRow,
    Token,
    TokenOutcome,
    ValidationErrorRecord,
)
from governance_pipeline.landscape import explain_sql as sql
from governance_pipeline.landscape.code_manifest import (
    identity_view,
    manifest_hash,
    stored_identities,
)
from governance_pipeline.landscape.logical_trail import LogicalTrail, read_trail
from governance_pipeline.landscape.payloads import PayloadRedacted, load_payload, protection_of
from governance_pipeline.landscape.reader import ConnectionReader, Reader

if TYPE_CHECKING:
    from governance_pipeline.landscape.queries import Source
    from governance_pipeline.landscape.sealing import PayloadProtection


def _payload_view(reader: Reader, content_hash: str | None,
                  protection: PayloadProtection | None = None) -> Any:
    """A stored payload as JSON if it is JSON, else as text (raw bytes of a malformed row);
    a purged or erased one as what removed it ("erased on <date> (<reason>)")."""
    if content_hash is None:
        return None
    try:
        data = load_payload(reader, content_hash, protection)
    except PayloadRedacted as gone:
        return gone.redaction.as_dict()
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return {"raw": data.decode("utf-8", errors="backslashreplace")}


def _json(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


@dataclass(frozen=True)
class StateView:
    state: NodeState
    calls: list[dict[str, Any]]
    routing: list[dict[str, Any]]
    #: A sink that wrote the row differently than given (CSV formula escaping): the row as
    #: written (its hash is the state's output hash), the original, and the fields changed.
    written: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        s = self.state
        return {"state_id": s.state_id, "node_id": s.node_id, "step": s.step_index,
                "attempt": s.attempt, "status": s.status.value, "input_hash": s.input_hash,
                "output_hash": s.output_hash, "duration_ms": s.duration_ms,
                "policy_snapshot_id": s.policy_snapshot_id, "context": _json(s.context_after),
                "error": _json(s.error_json), "calls": self.calls, "routing": self.routing,
                **({"written": self.written} if self.written is not None else {})}


@dataclass(frozen=True)
class TokenView:
    token: Token
    parents: list[str]
    children: list[str]
    states: list[StateView]
    outcomes: list[TokenOutcome]
    errors: list[Any] = field(default_factory=list)
    batch_outputs: list[str] = field(default_factory=list)
    decisions: list[PolicyDecision] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        t = self.token
        return {"token_id": t.token_id, "branch": t.branch_name, "fork_group": t.fork_group_id,
                "join_group": t.join_group_id, "parents": self.parents,
                "children": self.children, "states": [s.as_dict() for s in self.states],
                "outcomes": [{"outcome": o.outcome.value, "terminal": o.is_terminal,
                              "sink": o.sink_name, "batch_id": o.batch_id,
                              "error_hash": o.error_hash, "context": _json(o.context_json),
                              "recorded_at": o.recorded_at} for o in self.outcomes],
                "errors": self.errors, "batch_outputs": self.batch_outputs,
                "policy_decisions": [decision_view(d) for d in self.decisions]}


def decision_view(d: PolicyDecision) -> dict[str, Any]:
    return {"decision_id": d.decision_id, "node_id": d.node_id, "step": d.step_index,
            "policy_id": d.policy_id, "rule_id": d.rule_id, "kind": d.rule_kind,
            "severity": d.severity.value, "mode": d.mode.value, "result": d.result.value,
            "would_block": d.would_block, "blocked": d.blocks, "snapshot_id": d.snapshot_id,
            "snapshot_hash": d.snapshot_hash, "detail": _json(d.detail_json)}


def inflection_view(p: InflectionPoint) -> dict[str, Any]:
    return {"inflection_id": p.inflection_id, "token_id": p.token_id, "row_index": p.row_index,
            "node_id": p.node_id, "step": p.step_index, "decision_id": p.decision_id,
            "snapshot_id": p.snapshot_id, "policy_id": p.policy_id, "rule_id": p.rule_id,
            "reason": p.reason, "occurred_at": p.occurred_at}


@dataclass(frozen=True)
class Explanation:
    run_id: str
    row: SourceRow
    source_payload: Any
    validation_errors: list[ValidationErrorRecord]
    tokens: list[TokenView]
    focus_token: str | None = None
    inflection: InflectionPoint | None = None
    #: The code identity of each node this row's tokens passed, and the run's manifest hash.
    code: list[CodeIdentityRecord] = field(default_factory=list)
    code_manifest_hash: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "row_index": self.row.row_index,
                "row_id": self.row.row_id, "source_data_hash": self.row.source_data_hash,
                "source_payload": self.source_payload,
                "validation_errors": [{"code": v.error_code, "reason": v.reason,
                                       "destination": v.destination}
                                      for v in self.validation_errors],
                "focus_token": self.focus_token,
                "inflection_point": inflection_view(self.inflection) if self.inflection else None,
                "tokens": [t.as_dict() for t in self.tokens],
                "code": {"manifest_hash": self.code_manifest_hash,
                         "nodes": [identity_view(r) for r in self.code]}}


def _row(reader: Reader, run_id: str, *, index: int | None = None,
         row_id: str | None = None) -> SourceRow:
    found = (reader.first(sql.ROW_BY_INDEX, {"run_id": run_id, "row_index": index})
             if index is not None
             else reader.first(sql.ROW_BY_ID, {"run_id": run_id, "row_id": row_id}))
    if found is None:
        what = f"row {index}" if index is not None else f"row {row_id}"
        raise NotFoundError(f"run {run_id} has no {what}")
    return SourceRow.from_row(found)


def _written(reader: Reader, s: NodeState,
             protection: PayloadProtection | None = None) -> dict[str, Any] | None:
    context = _json(s.context_after)
    if not isinstance(context, dict) or "written_as" not in context:
        return None
    return {"as_written": _payload_view(reader, s.output_hash, protection),
            "original": _payload_view(reader, s.input_hash, protection),
            "changed_fields": context["written_as"].get("changed_fields", [])}


def node_states_of(reader: Reader, run_id: str, token_ids: list[str]) -> LogicalTrail:
    """The logical node states of ``token_ids`` in step order and their routing events (each
    with its edge's ``to_node_id`` and ``label``), however stored (logical_trail.py), Tier-1
    validated: every state and route explain shows comes from here."""
    return read_trail(reader, run_id, token_ids)


def _token_views(reader: Reader, run_id: str, row_id: str, focus: str | None,
                 protection: PayloadProtection | None = None) -> list[TokenView]:
    toks = [Token.from_row(r) for r in reader.rows(
        sql.TOKENS, {"run_id": run_id, "row_id": row_id, "focus": focus})]
    ids = [t.token_id for t in toks]
    links = [(r["token_id"], r["parent_token_id"])
             for r in reader.rows(sql.TOKEN_LINKS, {"token_ids": ids})]
    trail = node_states_of(reader, run_id, ids)
    states = trail.states
    state_ids = [s.state_id for s in states]
    call_rows = [Call.from_row(r) for r in reader.rows(sql.CALLS, {"state_ids": state_ids})]
    outcomes = [TokenOutcome.from_row(r)
                for r in reader.rows(sql.TOKEN_OUTCOMES, {"token_ids": ids})]
    decisions = [PolicyDecision.from_row(r)
                 for r in reader.rows(sql.POLICY_DECISIONS, {"token_ids": ids})]
    batch_ids = sorted({o.batch_id for o in outcomes if o.batch_id and o.is_terminal})
    outputs_of: dict[str, list[str]] = {}
    if batch_ids:
        for r in reader.rows(sql.BATCH_OUTPUTS, {"batch_ids": batch_ids}):
            outputs_of.setdefault(r["join_group_id"], []).append(r["token_id"])
    views = []
    for tok in toks:
        tstates = []
        for s in (s for s in states if s.token_id == tok.token_id):
            tcalls = [{"call_id": c.call_id, "type": c.call_type, "status": c.status.value,
                       "latency_ms": c.latency_ms, "cost": c.cost,
                       "request": _payload_view(reader, c.request_hash, protection),
                       "response": _payload_view(reader, c.response_hash, protection),
                       "error": _json(c.error_json)}
                      for c in call_rows if c.state_id == s.state_id]
            troute = [{"to": r.to_node_id, "label": r.label, "mode": r.event.mode.value,
                       "reason": _json(r.event.reason_json)}
                      for r in trail.routes if r.event.state_id == s.state_id]
            tstates.append(StateView(s, tcalls, troute, _written(reader, s, protection)))
        touts = [o for o in outcomes if o.token_id == tok.token_id]
        errors = [_payload_view(reader, o.error_hash, protection) for o in touts if o.error_hash]
        produced = [t for o in touts if o.batch_id and o.is_terminal
                    for t in outputs_of.get(o.batch_id, [])]
        views.append(TokenView(
            tok, [p for c, p in links if c == tok.token_id],
            [c for c, p in links if p == tok.token_id], tstates, touts, errors, produced,
            [d for d in decisions if d.token_id == tok.token_id]))
    return views


@contextmanager
def _reading(source: Source | Reader) -> Iterator[Reader]:
    """``source`` as a reader in one snapshot: a direct reader as it is, else a connection of
    the Landscape, engine or caller (``queries.reading``, imported only then)."""
    if isinstance(source, Reader):
        yield source
        return
    from governance_pipeline.landscape.queries import reading

    with reading(source, snapshot=True) as conn:
        yield ConnectionReader(conn)


def explain(source: Source | Reader, run_id: str, *, row_index: int | None = None,
            token_id: str | None = None,
            protection: PayloadProtection | None = None) -> Explanation:
    """Lineage of the row at ``row_index``, or of the row that ``token_id`` belongs to.

    ``protection`` opens sealed payloads; by default the Landscape's own (none for a bare
    engine or connection, whose sealed payloads then fail as read without the keys).
    """
    if (row_index is None) == (token_id is None):
        raise ValueError("explain needs exactly one of row_index or token_id")
    protection = protection or protection_of(source)
    with _reading(source) as reader:
        found_run = reader.first(sql.RUN, {"run_id": run_id})
        if found_run is None:
            raise NotFoundError(f"no run {run_id!r} in this Landscape",
                                details={"run_id": run_id})
        Run.from_row(found_run)
        if token_id is not None:
            found = reader.scalar(sql.ROW_OF_TOKEN, {"run_id": run_id, "token_id": token_id})
            if found is None:
                raise NotFoundError(f"run {run_id} has no token {token_id}")
            row = _row(reader, run_id, row_id=found)
        else:
            row = _row(reader, run_id, index=row_index)
        verrors = [ValidationErrorRecord.from_row(r) for r in reader.rows(
            sql.VALIDATION_ERRORS, {"run_id": run_id, "row_index": row.row_index})]
        point = reader.first(sql.INFLECTION_POINT,
                             {"run_id": run_id, "row_index": row.row_index})
        views = _token_views(reader, run_id, row.row_id, token_id, protection)
        manifest = stored_identities(reader, run_id)
        passed = {sv.state.node_id for view in views for sv in view.states}
        return Explanation(run_id, row, _payload_view(reader, row.source_data_hash, protection),
                           verrors, views, token_id,
                           InflectionPoint.from_row(point) if point else None,
                           [r for r in manifest if r.node_id in passed or r.position == 0],
                           manifest_hash(manifest) if manifest else None)
