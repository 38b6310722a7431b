"""A run's lifecycle: start, process chunks with checkpoint-after-sink, finish, resume.

Per chunk: process in memory → every sink writes its part durably → ONE audit transaction with
the chunk's records and its checkpoint. A crash anywhere before that commit leaves no trace of
the chunk in the Landscape, and the re-processed chunk replaces its sink parts; a crash after
it loses nothing. The final step flushes what aggregations still buffer; then the sinks promote
their parts and the run is closed and sealed. Orchestrators (the CLI, Dagster ops) call these
same steps, so the audit trail does not depend on who ran them.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import func, select

from governance_pipeline.contracts.clock import Clock
from governance_pipeline.contracts.enums import (
    Determinism,
    NodeType,
    RoutingMode,
    RunStatus,
    TerminationReason,
)
from governance_pipeline.contracts.errors import (
    ExitCode,
    GovernanceError,
    PolicyStopError,
    register,
)
from governance_pipeline.contracts.events import make_event
from governance_pipeline.contracts.hashing import stable_hash
from governance_pipeline.contracts.ids import new_id
from governance_pipeline.contracts.records import AuditRecord, Artifact, Checkpoint, Edge, Node, Run
from governance_pipeline.engine import code_identity, ids
from governance_pipeline.engine.aggregation import restore_drafts
from governance_pipeline.engine.config import PipelineConfig
from governance_pipeline.engine.context import RunContext
from governance_pipeline.engine.faults import crash_point
from governance_pipeline.engine.graph import SOURCE_NODE_ID, Graph
from governance_pipeline.engine.plugin_api import Sink, SourceRecord
from governance_pipeline.engine.policy_check import POLICY_STOPPED
from governance_pipeline.engine.policy_hook import PolicyHook
from governance_pipeline.engine.policy_stop import publish_stopped_output, record_stop
from governance_pipeline.engine.processor import ChunkProcessor
from governance_pipeline.engine.sink_stage import write_sinks
from governance_pipeline.engine.trail import Trail, dumps
from governance_pipeline.landscape.recorder import Not, Recorder, UnitOfWork
from governance_pipeline.landscape.schema import artifacts, checkpoints, runs, token_outcomes
from governance_pipeline.landscape.store import Landscape

log = logging.getLogger(__name__)

FINAL_CHUNK = -1
CHECKPOINT_FORMAT = 1

SINK_WRITE_FAILED = register(
    "GP-RUN-001", "A sink could not write its rows; the run stopped",
    "Fix the sink's destination (disk space, permissions, database) and `governance-pipeline "
    "resume RUN_ID`; rows of the failed part are recorded as failed with the reason.",
    ExitCode.OPERATIONAL)


class SinkWriteError(GovernanceError):
    default_code = SINK_WRITE_FAILED


@dataclass(frozen=True)
class SinkSummary:
    sink: str
    path_or_uri: str
    row_count: int
    sha256: str
    size_bytes: int


@dataclass(frozen=True)
class RunResult:
    run_id: str
    status: RunStatus
    termination_reason: TerminationReason | None
    outcome_counts: dict[str, int]
    sinks: list[SinkSummary] = field(default_factory=list)
    error: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "status": self.status.value,
                "termination_reason": self.termination_reason and self.termination_reason.value,
                "counts": self.outcome_counts,
                "sinks": {s.sink: {"path": s.path_or_uri, "rows": s.row_count,
                                   "sha256": s.sha256, "size_bytes": s.size_bytes}
                          for s in self.sinks},
                **({"error": self.error} if self.error else {})}


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def config_hash(config: PipelineConfig) -> str:
    return stable_hash(config.canonical())


def iter_chunks(records: Iterator[SourceRecord], chunk_size: int,
                start_index: int = 0) -> Iterator[tuple[int, list[SourceRecord]]]:
    """Group a source stream into chunks: chunk k holds row indices [k·size, (k+1)·size)."""
    chunk: list[SourceRecord] = []
    current = start_index // chunk_size
    for record in records:
        k = record.index // chunk_size
        if k != current and chunk:
            yield current, chunk
            chunk = []
        current = k
        chunk.append(record)
    if chunk:
        yield current, chunk


def _graph_records(run_id: str, graph: Graph, now: str,
                   sinks: Mapping[str, Sink] | None = None) -> list[Node | Edge]:
    sinks = sinks or {}
    config = graph.config
    records: list[Node | Edge] = []
    source_cfg = {"plugin": config.source.plugin, "options": config.source.options}
    entries: list[tuple[str, NodeType, str, dict[str, Any]]] = [
        (SOURCE_NODE_ID, NodeType.SOURCE, config.source.plugin, source_cfg)]
    for node in graph.order:
        plugin = getattr(node, "plugin", node.kind)
        entries.append((node.id, Graph.node_type(node), plugin, node.model_dump(mode="json")))
    for name, sink in config.sinks.items():
        cfg = sink.model_dump(mode="json")
        if name in sinks:  # what the plugin says it does with the rows (e.g. formula escaping)
            cfg["described"] = sinks[name].describe()
        entries.append((name, NodeType.SINK, sink.plugin, cfg))
    for node_id, node_type, plugin, cfg in entries:
        records.append(Node(run_id, node_id, node_type, plugin, "1", _determinism(node_type),
                            stable_hash(cfg), dumps(cfg), graph.positions[node_id], now))
    for i, (src, dst, label) in enumerate(graph.edges):
        mode = RoutingMode.COPY if ".fork" in label else RoutingMode.MOVE
        records.append(Edge(ids.edge_id(run_id, i), run_id, src, dst, label, mode))
    return records


def _determinism(node_type: NodeType) -> Determinism:
    return Determinism.IO_READ if node_type in (NodeType.SOURCE, NodeType.SINK) \
        else Determinism.DETERMINISTIC


class Runner:
    """Drives one run in this process; every step is safe to repeat after a crash."""

    def __init__(self, landscape: Landscape, ctx: RunContext) -> None:
        self.landscape = landscape
        self.recorder = Recorder(landscape)
        self.ctx = ctx
        self.run_id = ctx.run_id
        self.worker = worker_identity()
        self.on_chunk: Callable[[int, dict[str, int]], None] | None = None
        # Every step of a run (a resume, each Dagster step) runs the code the run started with.
        with landscape.engine.connect() as conn:
            code_identity.require_unchanged(conn, self.run_id, code_identity.identities(
                self.run_id, ctx.graph, ctx.plugins, self.recorder.now()))
        if ctx.policy is not None:
            ctx.policy.restore(self._checkpointed_policy_states())

    # -- starting ------------------------------------------------------------------------------
    @classmethod
    def start(cls, landscape: Landscape, config: PipelineConfig, *, base_dir: Path,
              pipeline_path: Path | None = None, clock: Clock | None = None,
              run_id: str | None = None, policy: PolicyHook | None = None,
              records: Sequence[AuditRecord] = ()) -> Runner:
        """Record a new run; ``policy`` is the run's policy snapshot, already stored.
        ``records`` (of the run's scope, e.g. its operator-log entry) join the same unit."""
        run_id = run_id or new_id("run_")
        ctx = RunContext.build(run_id, config, base_dir, clock or landscape.clock, policy=policy)
        for sink in ctx.plugins.sinks.values():
            sink.discard_parts()  # a new run never inherits parts of an abandoned attempt
        recorder = Recorder(landscape)
        now = recorder.now()
        event = make_event("run.started", scope=run_id, source="engine", tenant_id=config.tenant,
                           payload={"run_id": run_id, "pipeline": config.name,
                                    "config_hash": config_hash(config)}, timestamp=now)
        recorder.begin_run(pipeline_name=config.name, tenant_id=config.tenant,
                           config=config.canonical(), run_id=run_id,
                           policy_snapshot_id=ctx.policy_snapshot_id,
                           pipeline_path=str(pipeline_path) if pipeline_path else None,
                           worker=worker_identity(),
                           records=[*_graph_records(run_id, ctx.graph, now, ctx.plugins.sinks),
                                    *code_identity.identities(run_id, ctx.graph, ctx.plugins, now),
                                    event, *records])
        return cls(landscape, ctx)

    # -- chunks ---------------------------------------------------------------------------------
    def done_chunks(self) -> set[int]:
        with self.landscape.engine.connect() as conn:
            return set(conn.execute(select(checkpoints.c.chunk_index)
                                    .where(checkpoints.c.run_id == self.run_id)).scalars())

    def _checkpointed_policy_states(self) -> list[dict[str, Any]]:
        with self.landscape.engine.connect() as conn:
            states = conn.execute(select(checkpoints.c.state_json)
                                  .where(checkpoints.c.run_id == self.run_id)).scalars()
            return [orjson.loads(s).get("policy") or {} for s in states]

    def process_chunk(self, chunk_index: int, records: list[SourceRecord]) -> dict[str, int]:
        """Process, write sinks durably, then record the chunk and its checkpoint in one commit.

        If an enforced policy blocks a row, the same commit records the stop (inflection point,
        incident, the run closed as failed_policy); the rows before the inflection point are
        then published and ``PolicyStopError`` raised.
        """
        hook = self.ctx.policy
        if hook is not None:
            hook.begin_chunk()
        try:
            proc = self._process(chunk_index, records)
        except BaseException:
            if hook is not None:
                hook.rollback_chunk()  # the chunk left no trace; neither may its counters
            raise
        self.recorder.heartbeat(self.run_id, self.worker)
        if self.on_chunk is not None:
            self.on_chunk(chunk_index, dict(proc.counts))
        if proc.stop is not None:
            publish_stopped_output(self)
            raise PolicyStopError(
                f"run {self.run_id} stopped by enforced policy {proc.stop.block.policy_id} "
                f"(rule {proc.stop.block.rule_id}) at row {proc.stop.row_index}, node "
                f"{proc.stop.node_id}: {proc.stop.block.reason}", code=POLICY_STOPPED,
                details={"run_id": self.run_id, "row_index": proc.stop.row_index,
                         "node_id": proc.stop.node_id, "policy_id": proc.stop.block.policy_id,
                         "rule_id": proc.stop.block.rule_id,
                         "decision_id": proc.stop.block.decision_id})
        if proc.failures:
            raise SinkWriteError("; ".join(f"sink {f.sink}: {f.reason}" for f in proc.failures),
                                 details={"sinks": [f.sink for f in proc.failures],
                                          "chunk": chunk_index})
        return dict(proc.counts)

    def _process(self, chunk_index: int, records: list[SourceRecord]) -> ChunkProcessor:
        uow = UnitOfWork(self.run_id, self.recorder.now())
        proc = ChunkProcessor(Trail(self.ctx, uow), chunk_index)
        if chunk_index == FINAL_CHUNK:
            with self.landscape.engine.connect() as conn:
                proc.restored = restore_drafts(conn, self.run_id, self.ctx.graph.positions,
                                               self.landscape.protection)
        proc.admit(records)
        proc.run_nodes()
        crash_point("chunk.processed")
        parts, proc.failures = write_sinks(proc)
        rows = [records[0].index, records[-1].index] if records else None
        state: dict[str, Any] = {"parts": parts, "rows": rows, "counts": dict(proc.counts)}
        if self.ctx.policy is not None:
            state["policy"] = self.ctx.policy.chunk_state()
        uow.add(Checkpoint(ids.checkpoint_id(self.run_id, chunk_index), self.run_id, chunk_index,
                           chunk_index, CHECKPOINT_FORMAT, config_hash(self.ctx.config),
                           dumps(state), uow.now))
        # A run an enforced policy stopped takes no further chunks, whichever step or process
        # offers them (a step failure does not stop its siblings: re-execution resumes it).
        uow.guard("runs", {"run_id": self.run_id}, {"status": Not(RunStatus.FAILED_POLICY)})
        if proc.stop is not None:
            record_stop(self, uow, proc)
        proc.trail.flush()
        crash_point("chunk.before_commit")
        self.recorder.commit(uow, seal=proc.stop is not None)
        crash_point("chunk.committed")
        return proc

    def run_chunks(self) -> None:
        """Direct (in-process) execution: stream the source and process each unfinished chunk."""
        done = self.done_chunks()
        size = self.ctx.config.chunk_size
        start = 0
        while start // size in done:  # skip the contiguous finished prefix without reading it
            start += size
        for index, records in iter_chunks(self.ctx.plugins.source.read(start), size, start):
            if index not in done:
                self.process_chunk(index, records)
        if FINAL_CHUNK not in done:
            self.process_chunk(FINAL_CHUNK, [])

    # -- finishing ------------------------------------------------------------------------------
    def finalize(self) -> RunResult:
        """Promote every sink's parts, record the artifacts, close and seal the run."""
        with self.recorder.unit(self.run_id, seal=True) as uow:
            self.promote_sinks(uow)
            crash_point("run.before_close")
            self.close_in(uow, RunStatus.COMPLETED, TerminationReason.COMPLETED)
        return self.result()

    def promote_sinks(self, uow: UnitOfWork) -> list[Artifact]:
        """Each sink's checkpointed parts, in chunk order, promoted to its artifact (recorded)."""
        with self.landscape.engine.connect() as conn:
            states = conn.execute(select(checkpoints.c.chunk_index, checkpoints.c.state_json)
                                  .where(checkpoints.c.run_id == self.run_id)).all()
        ordered = sorted(states, key=lambda r: (r.chunk_index == FINAL_CHUNK, r.chunk_index))
        promoted: list[Artifact] = []
        for name, sink in self.ctx.plugins.sinks.items():
            keys = [orjson.loads(s.state_json)["parts"].get(name) for s in ordered]
            result = sink.finalize([k for k in keys if k])
            crash_point("sink.finalized")
            position = self.ctx.graph.positions[name]
            artifact = Artifact(f"{self.run_id}.a{position:02d}", self.run_id, name, None,
                                result.artifact_type, result.path_or_uri, result.content_hash,
                                result.size_bytes, result.row_count, f"{self.run_id}:{name}",
                                uow.now)
            uow.add(artifact)
            promoted.append(artifact)
        return promoted

    def close_in(self, uow: UnitOfWork, status: RunStatus, reason: TerminationReason,
               error: dict[str, Any] | None = None) -> None:
        uow.update("runs", {"run_id": self.run_id},
                   {"status": status, "termination_reason": reason, "ended_at": uow.now})
        uow.add(make_event(f"run.{status.value}", scope=self.run_id, source="engine",
                           tenant_id=self.ctx.config.tenant, timestamp=uow.now,
                           payload={"run_id": self.run_id, "status": status.value,
                                    "termination_reason": reason.value, "error": error}))

    def fail(self, status: RunStatus, reason: TerminationReason, error: dict[str, Any]) -> None:
        with self.recorder.unit(self.run_id, seal=True) as uow:
            self.close_in(uow, status, reason, error)

    def execute(self) -> RunResult:
        """Run every unfinished step in this process; a failure closes the run as failed."""
        try:
            self.run_chunks()
            return self.finalize()
        except PolicyStopError:
            raise  # already recorded, with the run closed as failed_policy
        except GovernanceError as exc:
            self._fail_safely(exc.problem())
            raise
        except Exception as exc:
            self._fail_safely({"title": type(exc).__name__, "detail": str(exc)})
            raise

    def _fail_safely(self, error: dict[str, Any]) -> None:
        """Record the failure if the Landscape still answers; a stale heartbeat covers the rest."""
        try:
            self.fail(RunStatus.FAILED, TerminationReason.SYSTEM_FAILURE, error)
        except GovernanceError as exc:
            # The database itself is the failure; the run keeps status running and the
            # abandoned-run check finds it by its stale heartbeat.
            log.error("could not record the failure of run %s: %s", self.run_id, exc.message)

    def result(self) -> RunResult:
        with self.landscape.engine.connect() as conn:
            run = Run.from_row(conn.execute(select(runs).where(runs.c.run_id == self.run_id))
                               .mappings().one())
            counts = dict(conn.execute(
                select(token_outcomes.c.outcome, func.count())
                .where(token_outcomes.c.run_id == self.run_id, token_outcomes.c.is_terminal == 1)
                .group_by(token_outcomes.c.outcome)).all())
            arts = conn.execute(select(artifacts).where(artifacts.c.run_id == self.run_id)
                                .order_by(artifacts.c.artifact_id)).mappings().all()
        sinks = [SinkSummary(a["sink_node_id"], a["path_or_uri"], a["row_count"],
                             a["content_hash"], a["size_bytes"]) for a in arts]
        return RunResult(run.run_id, run.status, run.termination_reason, counts, sinks)
