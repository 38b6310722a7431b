"""A small but complete synthetic run, recorded through the ``Recorder`` as the engine would.

Until the engine lands, this is what ``governance-pipeline demo`` records, and it is the test
suite's synthetic run (``governance_pipeline_tests/synthetic.py`` re-exports it): one
implementation, so the demo and the tests cannot drift apart. Every kind of audit record appears
at least once, the run is internally consistent (every state closed, every token with exactly one
terminal outcome, no token left buffered) and sealed by ``finish_run``. ``SyntheticRun`` names the
interesting records so a test can tamper with, or look up, a specific one.

The sink ``out`` writes a CSV (``token_id,output_hash,record``: each record is the canonical JSON
whose SHA-256 is the token's output hash at the sink, so every line can be checked against the
audit trail). With ``out_dir`` the file is written and fsynced before the transaction that records
it commits (checkpoint after sink); without, only its digest is recorded.

Pipeline: source -> enrich -> route (gate) -> one of
    split (fork into branches a -> out, b -> review) | agg (aggregation) -> out | out
plus a quarantine sink for the last source row, which fails validation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from governance_pipeline.cli.artifacts import render_csv, write_durably
from governance_pipeline.contracts.enums import (
    BatchStatus,
    CallStatus,
    Determinism,
    NodeStateStatus,
    NodeType,
    OperationStatus,
    OperationType,
    Outcome,
    RoutingMode,
    RunStatus,
    TerminationReason,
    TriggerType,
)
from governance_pipeline.contracts.events import make_event
from governance_pipeline.contracts.hashing import (
    canonical_json,
    sha256_hex,
    stable_hash,
)
from governance_pipeline.contracts.ids import new_id
from governance_pipeline.contracts.records import (
    Artifact,
    Batch,
    BatchMember,
    Call,
    Checkpoint,
    Edge,
    Node,
    NodeState,
    Operation,
    RoutingEvent,
    SourceRow,
    Token,
    TokenOutcome,
    ValidationErrorRecord,
)
from governance_pipeline.governance.policy.snapshot import (
    DEFAULT_MODE,
    SNAPSHOT_FORMAT,
    store_snapshot,
)
from governance_pipeline.landscape.recorder import Recorder, UnitOfWork
from governance_pipeline.landscape.schema import GLOBAL_SCOPE

TENANT = "tenant-synthetic"
MIN_ROWS = 4  # one row each for the fork, batch and direct paths, plus the quarantined row

_NODES: tuple[tuple[str, NodeType, Determinism], ...] = (
    ("source", NodeType.SOURCE, Determinism.IO_READ),
    ("enrich", NodeType.TRANSFORM, Determinism.EXTERNAL_CALL),
    ("route", NodeType.GATE, Determinism.DETERMINISTIC),
    ("split", NodeType.FORK, Determinism.DETERMINISTIC),
    ("agg", NodeType.AGGREGATION, Determinism.DETERMINISTIC),
    ("out", NodeType.SINK, Determinism.IO_READ),
    ("review", NodeType.SINK, Determinism.IO_READ),
    ("quarantine", NodeType.SINK, Determinism.IO_READ),
)
_EDGES: tuple[tuple[str, str, str, RoutingMode], ...] = (
    ("source", "enrich", "continue", RoutingMode.MOVE),
    ("enrich", "route", "continue", RoutingMode.MOVE),
    ("route", "split", "to_split", RoutingMode.MOVE),
    ("route", "agg", "to_agg", RoutingMode.MOVE),
    ("route", "out", "to_out", RoutingMode.MOVE),
    ("split", "out", "a", RoutingMode.COPY),
    ("split", "review", "b", RoutingMode.COPY),
    ("agg", "out", "continue", RoutingMode.MOVE),
    ("source", "quarantine", "invalid", RoutingMode.MOVE),
)
_ROUTES = ("to_split", "to_agg", "to_out")  # chosen by row_index % 3


@dataclass(frozen=True)
class SyntheticRun:
    run_id: str
    snapshot_id: str                      # policy snapshot, written in a (sealed) global unit
    global_event_id: str                  # events record in the global scope
    run_event_id: str                     # events record in the run's scope
    row_ids: tuple[str, ...]              # by row_index
    payload_hashes: tuple[str, ...]       # source_data_hash of each row, by row_index
    token_ids: tuple[str, ...]            # every token of the run
    terminal_outcomes: dict[str, Outcome]  # token_id -> the terminal outcome it must have
    edge_ids: dict[str, str]              # "from->to:label" -> edge_id
    state_ids: tuple[str, ...]            # every node state
    updated_state_id: str                 # opened in one unit, closed by an update in a later one
    completed_outcome_id: str             # a COMPLETED outcome at sink "out"
    buffered_outcome_ids: tuple[str, ...]  # non-terminal outcomes of the batch members
    routing_event_ids: tuple[str, ...]
    fork_parent_token_id: str
    fork_child_token_ids: tuple[str, ...]
    batch_id: str                         # inserted as draft, updated to completed later
    batch_member_token_ids: tuple[str, ...]
    batch_output_token_id: str
    source_operation_id: str              # inserted open, updated to completed later
    sink_operation_id: str
    state_call_id: str                    # call whose parent is a node state
    operation_call_id: str                # call whose parent is an operation
    artifact_id: str
    checkpoint_ids: tuple[str, ...]
    quarantined_row_id: str
    quarantined_token_id: str
    validation_error_id: str
    ledger_entries: int                   # entries appended to the run's chain
    artifact_path: Path | None            # the CSV written by sink "out" (None: not written)
    artifact_hash: str                    # its SHA-256, as recorded in artifacts.content_hash


@dataclass
class _Acc:
    """What the recording steps have produced so far; frozen into ``SyntheticRun`` at the end."""

    run_id: str
    snapshot_id: str
    edges: dict[str, str] = field(default_factory=dict)
    rows: list[str] = field(default_factory=list)
    payloads: list[str] = field(default_factory=list)
    row_of: dict[str, str] = field(default_factory=dict)
    terminal: dict[str, Outcome] = field(default_factory=dict)
    states: list[str] = field(default_factory=list)
    buffered: list[str] = field(default_factory=list)
    routing: list[str] = field(default_factory=list)
    members: list[str] = field(default_factory=list)
    checkpoints: list[str] = field(default_factory=list)
    forks: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    ids: dict[str, str] = field(default_factory=dict)
    sink_rows: list[tuple[str, str, str]] = field(default_factory=list)  # sink "out" lines
    artifact_path: Path | None = None
    artifact_hash: str = ""


def record_synthetic_run(recorder: Recorder, *, rows: int = 10, pipeline_name: str = "synthetic",
                         out_dir: Path | None = None) -> SyntheticRun:
    """Record one complete, sealed run of ``rows`` source rows (the last one quarantined).

    With ``out_dir`` the CSV of sink ``out`` is written to ``out_dir/<run_id>/out.csv``.

    Transactions: a sealed global unit (policy snapshot + event), begin_run, the graph, two
    chunks (each with its checkpoint), the batch flush and sink write, then ``finish_run``.
    """
    if rows < MIN_ROWS:
        raise ValueError(f"a synthetic run needs at least {MIN_ROWS} rows, got {rows}")
    acc = _Acc("", "")
    acc.snapshot_id, acc.ids["global_event_id"] = _record_global(recorder)
    run = recorder.begin_run(pipeline_name=pipeline_name, tenant_id=TENANT,
                             config={"pipeline": pipeline_name, "rows": rows},
                             policy_snapshot_id=acc.snapshot_id)
    acc.run_id = run.run_id
    with recorder.unit(run.run_id) as uow:
        _register_graph(uow, acc)
    valid = rows - 1
    half = (valid + 1) // 2
    with recorder.unit(run.run_id) as uow:
        for index in range(half):
            _process_row(uow, acc, index)
        _checkpoint(uow, acc, 0)
    with recorder.unit(run.run_id) as uow:
        _close_opened(uow, acc)
        for index in range(half, valid):
            _process_row(uow, acc, index)
        _quarantine_row(uow, acc, valid)
        _checkpoint(uow, acc, 1)
    with recorder.unit(run.run_id) as uow:
        _flush_batch_and_sink(uow, acc, out_dir)
    recorder.finish_run(run.run_id, RunStatus.COMPLETED, TerminationReason.COMPLETED)
    return _freeze(acc, ledger_entries=6)


def _record_global(recorder: Recorder) -> tuple[str, str]:
    # The synthetic run attaches no policies: its snapshot is the empty set, stored as any run's.
    content = {"format": SNAPSHOT_FORMAT, "default_mode": DEFAULT_MODE.value,
               "kill_switch": False, "policies": []}
    snapshot = store_snapshot(recorder.landscape, TENANT, content)
    with recorder.unit(GLOBAL_SCOPE, seal=True) as uow:
        event = make_event("policy.snapshot_created", scope=GLOBAL_SCOPE, source="policy",
                           target=snapshot.snapshot_id, tenant_id=TENANT, timestamp=uow.now,
                           payload={"snapshot_id": snapshot.snapshot_id})
        uow.add(event)
    return snapshot.snapshot_id, event.event_id


def _register_graph(uow: UnitOfWork, acc: _Acc) -> None:
    for position, (node_id, node_type, determinism) in enumerate(_NODES):
        config = {"node": node_id}
        uow.add(Node(acc.run_id, node_id, node_type, f"builtin.{node_type}", "1.0", determinism,
                     stable_hash(config), canonical_json(config).decode(), position, uow.now))
    for src, dst, label, mode in _EDGES:
        edge = Edge(new_id("edg_"), acc.run_id, src, dst, label, mode)
        acc.edges[f"{src}->{dst}:{label}"] = edge.edge_id
        uow.add(edge)
    load = Operation(new_id("op_"), acc.run_id, "source", OperationType.SOURCE_LOAD,
                     OperationStatus.OPEN, "file:///synthetic.csv", None, None, None, uow.now, None)
    call = Call(new_id("call_"), acc.run_id, None, load.operation_id, 0, "http_get",
                CallStatus.SUCCESS, uow.payload({"url": "file:///synthetic.csv"}),
                uow.payload({"status": 200}), None, 12.5, None, uow.now)
    batch = Batch(new_id("bat_"), acc.run_id, "agg", 0, BatchStatus.DRAFT, None, None, None,
                  uow.now, None)
    uow.add_all([load, call, batch])
    acc.ids.update(source_operation_id=load.operation_id, operation_call_id=call.call_id,
                   batch_id=batch.batch_id)


def _state(uow: UnitOfWork, acc: _Acc, token_id: str, node_id: str, step: int, data_hash: str,
           *, closed: bool = True) -> NodeState:
    state = NodeState(new_id("st_"), acc.run_id, token_id, node_id, step, 0,
                      NodeStateStatus.COMPLETED if closed else NodeStateStatus.OPEN, data_hash,
                      data_hash if closed else None, None, None, None, 1.5 if closed else None,
                      acc.snapshot_id, uow.now, uow.now if closed else None)
    uow.add(state)
    acc.states.append(state.state_id)
    return state


def _outcome(uow: UnitOfWork, acc: _Acc, token_id: str, outcome: Outcome, *,
             sink: str | None = None, batch_id: str | None = None,
             error_hash: str | None = None) -> TokenOutcome:
    record = TokenOutcome(new_id("out_"), acc.run_id, token_id, outcome, outcome.is_terminal, sink,
                          batch_id, None, None, None, error_hash, None, uow.now)
    uow.add(record)
    if outcome.is_terminal:
        acc.terminal[token_id] = outcome
    else:
        acc.buffered.append(record.outcome_id)
    return record


def _new_token(uow: UnitOfWork, acc: _Acc, row_id: str) -> Token:
    token = Token(new_id("tok_"), acc.run_id, row_id, None, None, None, None, uow.now)
    uow.add(token)
    acc.row_of[token.token_id] = row_id
    return token


def _new_row(uow: UnitOfWork, acc: _Acc, index: int, data_hash: str) -> Token:
    row = SourceRow(new_id("row_"), acc.run_id, "source", index, data_hash, uow.now)
    uow.add(row)
    acc.rows.append(row.row_id)
    acc.payloads.append(data_hash)
    return _new_token(uow, acc, row.row_id)


def _process_row(uow: UnitOfWork, acc: _Acc, index: int) -> None:
    data = {"id": index, "amount": index * 10 + 0.5, "name": f"row-{index}"}
    data_hash = uow.payload(data)
    token = _new_row(uow, acc, index, data_hash)
    _state(uow, acc, token.token_id, "source", 0, data_hash)
    # Row 0's enrich state is opened here and closed by an update in the next transaction, so
    # the ledger holds two versions of it and must be read "latest wins".
    enrich = _state(uow, acc, token.token_id, "enrich", 1, data_hash, closed=index != 0)
    if index == 0:
        call = Call(new_id("call_"), acc.run_id, enrich.state_id, None, 0, "llm_classify",
                    CallStatus.SUCCESS, uow.payload({"row": index}),
                    uow.payload({"label": "ok"}), None, 80.0, 0.002, uow.now)
        uow.add(call)
        acc.ids.update(updated_state_id=enrich.state_id, state_call_id=call.call_id)
    gate = _state(uow, acc, token.token_id, "route", 2, data_hash)
    label = _ROUTES[index % 3]
    dst = label.removeprefix("to_")
    event = RoutingEvent(new_id("rte_"), acc.run_id, gate.state_id,
                         acc.edges[f"route->{dst}:{label}"], new_id("rg_"), 0, RoutingMode.MOVE,
                         None, canonical_json({"rule": label}).decode(), uow.now)
    uow.add(event)
    acc.routing.append(event.event_id)
    if dst == "split":
        _fork(uow, acc, token, data, data_hash)
    elif dst == "agg":
        _state(uow, acc, token.token_id, "agg", 3, data_hash)
        uow.add(BatchMember(acc.ids["batch_id"], token.token_id, acc.run_id, len(acc.members)))
        acc.members.append(token.token_id)
        _outcome(uow, acc, token.token_id, Outcome.BUFFERED, batch_id=acc.ids["batch_id"])
    else:
        _state(uow, acc, token.token_id, "out", 3, data_hash)
        done = _outcome(uow, acc, token.token_id, Outcome.COMPLETED, sink="out")
        acc.ids.setdefault("completed_outcome_id", done.outcome_id)
        _to_sink(acc, token.token_id, data, data_hash)


def _to_sink(acc: _Acc, token_id: str, data: Any, data_hash: str) -> None:
    acc.sink_rows.append((token_id, data_hash, canonical_json(data).decode()))


def _fork(uow: UnitOfWork, acc: _Acc, parent: Token, data: Any, data_hash: str) -> None:
    _state(uow, acc, parent.token_id, "split", 3, data_hash)
    children = uow.fork(parent, ["a", "b"])  # also records the parent's FORKED outcome
    acc.terminal[parent.token_id] = Outcome.FORKED
    for child in children:
        acc.row_of[child.token_id] = child.row_id
        sink = "out" if child.branch_name == "a" else "review"
        _state(uow, acc, child.token_id, sink, 4, data_hash)
        _outcome(uow, acc, child.token_id, Outcome.COMPLETED, sink=sink)
        if sink == "out":
            _to_sink(acc, child.token_id, data, data_hash)
    acc.forks.append((parent.token_id, tuple(c.token_id for c in children)))


def _quarantine_row(uow: UnitOfWork, acc: _Acc, index: int) -> None:
    raw = b'{"id": ' + str(index).encode() + b', "amount": "not-a-number"'
    data_hash = uow.payload_bytes(raw)
    token = _new_row(uow, acc, index, data_hash)
    error = canonical_json({"error": "malformed JSON", "row_index": index})
    state = NodeState(new_id("st_"), acc.run_id, token.token_id, "source", 0, 0,
                      NodeStateStatus.FAILED, data_hash, None, None, None, error.decode(), 0.25,
                      acc.snapshot_id, uow.now, uow.now)
    uow.add(state)
    acc.states.append(state.state_id)
    _outcome(uow, acc, token.token_id, Outcome.QUARANTINED, error_hash=uow.payload_bytes(error))
    verr = ValidationErrorRecord(new_id("ve_"), acc.run_id, "source", index, data_hash,
                                 "GP-SRC-001", "malformed JSON", "quarantine", uow.now)
    uow.add(verr)
    acc.ids.update(quarantined_row_id=acc.rows[-1], quarantined_token_id=token.token_id,
                   validation_error_id=verr.error_id)


def _close_opened(uow: UnitOfWork, acc: _Acc) -> None:
    uow.update("operations", {"operation_id": acc.ids["source_operation_id"]},
               {"status": OperationStatus.COMPLETED, "output_ref": "rows", "duration_ms": 42.0,
                "completed_at": uow.now})
    uow.update("node_states", {"state_id": acc.ids["updated_state_id"]},
               {"status": NodeStateStatus.COMPLETED, "output_hash": acc.payloads[0],
                "duration_ms": 80.5, "completed_at": uow.now})


def _checkpoint(uow: UnitOfWork, acc: _Acc, chunk: int) -> None:
    state = {"chunk": chunk, "rows_done": len(acc.rows)}
    checkpoint = Checkpoint(new_id("cp_"), acc.run_id, chunk + 1, chunk, 1,
                            stable_hash({"pipeline": "synthetic"}), canonical_json(state).decode(),
                            uow.now)
    uow.add(checkpoint)
    acc.checkpoints.append(checkpoint.checkpoint_id)


def _flush_batch_and_sink(uow: UnitOfWork, acc: _Acc, out_dir: Path | None) -> None:
    batch_id = acc.ids["batch_id"]
    uow.update("batches", {"batch_id": batch_id},
               {"status": BatchStatus.COMPLETED, "trigger_type": TriggerType.END_OF_SOURCE,
                "trigger_reason": "source exhausted", "completed_at": uow.now})
    for token_id in acc.members:
        _outcome(uow, acc, token_id, Outcome.CONSUMED_IN_BATCH, batch_id=batch_id)
    # The aggregate is a new token on the first member's row: lineage leads back to a source row.
    output = _new_token(uow, acc, acc.row_of[acc.members[0]])
    summary = {"batch": batch_id, "members": len(acc.members)}
    summary_hash = uow.payload(summary)
    _state(uow, acc, output.token_id, "out", 4, summary_hash)
    _outcome(uow, acc, output.token_id, Outcome.COMPLETED, sink="out")
    _to_sink(acc, output.token_id, summary, summary_hash)
    data = render_csv(("token_id", "output_hash", "record"), acc.sink_rows)
    acc.artifact_hash = sha256_hex(data)
    location = "memory:out.csv"
    if out_dir is not None:
        acc.artifact_path = (out_dir / acc.run_id / "out.csv").resolve()
        write_durably(acc.artifact_path, data)
        location = str(acc.artifact_path)
    sink = Operation(new_id("op_"), acc.run_id, "out", OperationType.SINK_WRITE,
                     OperationStatus.COMPLETED, None, location, None, 9.0, uow.now, uow.now)
    artifact = Artifact(new_id("art_"), acc.run_id, "out", sink.operation_id, "csv", location,
                        acc.artifact_hash, len(data), len(acc.sink_rows), f"{acc.run_id}:out",
                        uow.now)
    event = make_event("run.sink_written", scope=acc.run_id, source="engine", target="out",
                       tenant_id=TENANT, correlation_id=acc.run_id, timestamp=uow.now,
                       payload={"artifact_id": artifact.artifact_id})
    uow.add_all([sink, artifact, event])
    acc.ids.update(batch_output_token_id=output.token_id, sink_operation_id=sink.operation_id,
                   artifact_id=artifact.artifact_id, run_event_id=event.event_id)


def _freeze(acc: _Acc, *, ledger_entries: int) -> SyntheticRun:
    fork_parent, fork_children = acc.forks[0]
    return SyntheticRun(
        run_id=acc.run_id, snapshot_id=acc.snapshot_id,
        global_event_id=acc.ids["global_event_id"], run_event_id=acc.ids["run_event_id"],
        row_ids=tuple(acc.rows), payload_hashes=tuple(acc.payloads),
        token_ids=tuple(acc.row_of), terminal_outcomes=dict(acc.terminal),
        edge_ids=dict(acc.edges), state_ids=tuple(acc.states),
        updated_state_id=acc.ids["updated_state_id"],
        completed_outcome_id=acc.ids["completed_outcome_id"],
        buffered_outcome_ids=tuple(acc.buffered), routing_event_ids=tuple(acc.routing),
        fork_parent_token_id=fork_parent, fork_child_token_ids=fork_children,
        batch_id=acc.ids["batch_id"], batch_member_token_ids=tuple(acc.members),
        batch_output_token_id=acc.ids["batch_output_token_id"],
        source_operation_id=acc.ids["source_operation_id"],
        sink_operation_id=acc.ids["sink_operation_id"],
        state_call_id=acc.ids["state_call_id"], operation_call_id=acc.ids["operation_call_id"],
        artifact_id=acc.ids["artifact_id"], checkpoint_ids=tuple(acc.checkpoints),
        quarantined_row_id=acc.ids["quarantined_row_id"],
        quarantined_token_id=acc.ids["quarantined_token_id"],
        validation_error_id=acc.ids["validation_error_id"], ledger_entries=ledger_entries,
        artifact_path=acc.artifact_path, artifact_hash=acc.artifact_hash)
