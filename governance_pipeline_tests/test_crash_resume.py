"""Killing the fork/coalesce/aggregation example anywhere and resuming it changes nothing.

A copy of ``examples/pipelines/claims_triage.yaml`` runs on generated claims (the planted
malformed records included) in small chunks, with an aggregation count small enough that batches
flush inside chunks and partial batches are left to the final step. The uninterrupted run, made
once per module with ``governance-pipeline run``, is the baseline. Every other run is a real
process killed with SIGKILL — by the engine's crash points (``GOVERNANCE_CRASH_AT=site:n``,
occurrences chosen per site by a seeded RNG from what the baseline shows a run passes through)
or by this process at a moment it picks — and then resumed. The sink outputs must be
byte-identical to the baseline, nothing may be left next to them, the trail must tell the same
story (outcome counts, artifacts, one abandonment per killed attempt), and verify and sweep must
be clean.

Two kinds of process run the pipeline. ``governance-pipeline`` (``cli``) executes it as a Dagster
run, which costs seconds per process on this machine; the engine alone (``engine``:
``python -m governance_pipeline_tests.engine_fixtures``, ``Runner.execute`` / ``resume``) is
much cheaper. The crash-point matrix uses the engine process; the baseline, the crash during
resume, the external kill and the PostgreSQL case go through the CLI, and the crash during
resume alternates between both, so each path resumes what the other left.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest
from sqlalchemy import func, select

from governance_pipeline.contracts.enums import RunStatus, TriggerType
from governance_pipeline.contracts.records import Run
from governance_pipeline.engine import faults
from governance_pipeline.engine.ids import part_key
from governance_pipeline.landscape.queries import list_runs
from governance_pipeline.landscape import logical_states
from governance_pipeline.landscape.schema import (
    artifacts,
    batches,
    checkpoints,
    compact_states,
    events,
    node_states,
    routing_events,
    runs,
)
from governance_pipeline.landscape.store import Landscape
from governance_pipeline.landscape.sweep import sweep
from governance_pipeline.landscape.verify import verify
from governance_pipeline_tests.conftest import drop_pg_database, fresh_pg_url
from governance_pipeline_tests.engine_fixtures import (
    ENGINE_CHILD,
    tree_bytes,
    triage_variant,
    write_claims,
    write_pipeline,
)

pytestmark = pytest.mark.slow

CLI = Path(sys.executable).with_name("governance-pipeline")
ROWS = 300
CHUNK_SIZE = 40
BATCH_COUNT = 7
SEED = 20240611
KILLED = -signal.SIGKILL
FINAL_CHUNK = -1
Via = Literal["cli", "engine"]

# (site, selector): which occurrence of the site to crash at, resolved against the baseline by
# ``Baseline.occurrence``. Every site of faults.SITES appears (checked below); "final_step"
# picks an occurrence inside the run's final step (the flush of the buffered batches).
CRASH_POINTS: list[tuple[str, str]] = [
    ("chunk.processed", "first"),
    ("chunk.processed", "random#1"),
    ("chunk.processed", "final_step"),
    ("sink.part_written", "first"),
    ("sink.part_written", "random#1"),
    ("sink.part_written", "random#2"),
    ("sink.part_written", "final_step"),
    ("chunk.before_commit", "first"),
    ("chunk.before_commit", "random#1"),
    ("chunk.before_commit", "random#2"),
    ("chunk.before_commit", "final_step"),
    ("chunk.committed", "first"),
    ("chunk.committed", "random#1"),
    ("chunk.committed", "last_chunk"),
    ("chunk.committed", "last"),
    ("aggregation.flushed", "first"),
    ("aggregation.flushed", "in_chunk"),
    ("aggregation.flushed", "final_step"),
    ("aggregation.flushed", "last"),
    ("sink.finalized", "first"),
    ("sink.finalized", "random#1"),
    ("sink.finalized", "last"),
    ("run.before_close", "first"),
]


def test_crash_points_cover_every_site() -> None:
    assert {site for site, _ in CRASH_POINTS} == set(faults.SITES)
    assert len(CRASH_POINTS) >= 20


# --- processes ----------------------------------------------------------------------------------
def describe(proc: subprocess.CompletedProcess[str]) -> str:
    return (f"{' '.join(map(str, proc.args[1:]))} exited {proc.returncode}\n"
            f"--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}")


def sqlite_url(home: Path) -> str:
    return f"sqlite:///{home / 'landscape.db'}"


@dataclass
class Case:
    """One test's GOVERNANCE_HOME and audit database; processes run against them."""

    home: Path
    db_url: str

    def env(self, crash_at: str | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in (faults.ENV, "GOVERNANCE_DB_URL", "GOVERNANCE_DEBUG", "DAGSTER_HOME")}
        env["GOVERNANCE_HOME"] = str(self.home)
        if self.db_url != sqlite_url(self.home):
            env["GOVERNANCE_DB_URL"] = self.db_url
        if crash_at is not None:
            env[faults.ENV] = crash_at
        return env

    @staticmethod
    def argv(via: Via, command: str, argument: str) -> list[str]:
        if via == "cli":
            return [str(CLI), command, argument, "--json"]
        return [sys.executable, "-m", ENGINE_CHILD, command, argument]

    def run(self, via: Via, command: str, argument: str, *,
            crash_at: str | None = None) -> subprocess.CompletedProcess[str]:
        self.home.mkdir(parents=True, exist_ok=True)
        return subprocess.run(self.argv(via, command, argument), env=self.env(crash_at),
                              capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              timeout=180, cwd=self.home.parent)

    def landscape(self) -> Landscape:
        return Landscape.open(self.db_url, self.home / "keys")

    def only_run(self) -> Run:
        ls = self.landscape()
        try:
            summaries = list_runs(ls)
        finally:
            ls.dispose()
        assert len(summaries) == 1, [s.run.run_id for s in summaries]
        return summaries[0].run

    def crash(self, via: Via, command: str, argument: str, *, crash_at: str) -> Run:
        proc = self.run(via, command, argument, crash_at=crash_at)
        assert proc.returncode == KILLED, f"expected SIGKILL at {crash_at}\n{describe(proc)}"
        run = self.only_run()
        # Killed before the run was closed: it still says running, with a dead worker.
        assert run.status is RunStatus.RUNNING, (crash_at, run.status)
        return run

    def resume(self, via: Via, run_id: str) -> None:
        proc = self.run(via, "resume", run_id)
        assert proc.returncode == 0, describe(proc)
        doc = json.loads(proc.stdout)
        assert doc["run_id"] == run_id and doc["status"] == "completed", doc


# --- the baseline -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Baseline:
    pipeline: Path
    outputs: dict[str, bytes | None]
    artifacts: dict[str, tuple[str, int, int]]   # sink → (sha256, rows, size)
    outcomes: dict[str, int]
    passes: dict[str, int]         # site → times an uninterrupted run passes it
    final_from: dict[str, int]     # site → its first occurrence inside the final step
    chunks: int
    sinks: int
    trail: dict[str, Any]          # the logical trail and its physical record counts

    def occurrence(self, site: str, selector: str) -> int:
        total = self.passes[site]
        rng = random.Random(f"{SEED}:{site}:{selector}")
        if selector == "first":
            return 1
        if selector == "last":
            return total
        if selector.startswith("random#"):
            assert total >= 3, (site, total)
            return rng.randint(2, total - 1)
        final = self.final_from[site]
        if selector == "final_step":
            return rng.randint(final, total)
        if selector == "in_chunk":
            return rng.randint(1, final - 1)
        if selector == "last_chunk":
            return final - 1
        raise AssertionError(f"unknown selector {selector!r}")

    def checkpoints_at(self, site: str, n: int) -> int | None:
        """Checkpoints committed when the n-th pass of ``site`` kills the run (None: varies)."""
        steps = self.chunks + 1
        return {"chunk.processed": n - 1, "chunk.before_commit": n - 1, "chunk.committed": n,
                "sink.part_written": (n - 1) // self.sinks, "sink.finalized": steps,
                "run.before_close": steps}.get(site)


def _artifacts(ls: Landscape, run_id: str) -> dict[str, tuple[str, int, int]]:
    with ls.engine.connect() as conn:
        rows = conn.execute(select(artifacts).where(artifacts.c.run_id == run_id)).mappings()
        return {r["sink_node_id"]: (r["content_hash"], r["row_count"], r["size_bytes"])
                for r in rows}


def _outcomes(ls: Landscape, run_id: str) -> dict[str, int]:
    summary = [s for s in list_runs(ls) if s.run.run_id == run_id]
    assert len(summary) == 1
    assert summary[0].open_states == 0
    return dict(summary[0].outcome_counts)


def _trail(ls: Landscape, run_id: str) -> dict[str, Any]:
    """The run's logical states and routes (ids without the run id; no times or durations),
    and how many records store them: a resumed run writes none twice and loses none."""
    with ls.engine.connect() as conn:
        trail = logical_states.read_trail(conn, run_id)
        stored = {t.name: conn.execute(select(func.count()).where(t.c.run_id == run_id))
                  .scalar_one() for t in (node_states, compact_states, routing_events)}
    strip = len(run_id)

    def context(text: str | None) -> str | None:
        """Which facts a context records, not their values: coalesce arrivals and batch flushes
        carry wall-clock timings, and a context names tokens by ids that contain the run id."""
        return None if text is None else ",".join(sorted(json.loads(text)))

    states = sorted((s.state_id[strip:], s.status.value, s.input_hash, s.output_hash,
                     context(s.context_after), s.error_json) for s in trail.states)
    routes = sorted((r.event.event_id[strip:], r.label, r.event.reason_json)
                    for r in trail.routes)
    states = [(*s[:5], None if s[5] is None else s[5].replace(run_id, "")) for s in states]
    return {"states": states, "routes": routes, "stored": stored}


def _passes(ls: Landscape, run_id: str, sinks: int) -> tuple[dict[str, int], dict[str, int], int]:
    """How often an uninterrupted run passes each crash site, from what its trail records."""
    with ls.engine.connect() as conn:
        chunk_indices = list(conn.execute(select(checkpoints.c.chunk_index)
                                          .where(checkpoints.c.run_id == run_id)).scalars())
        triggers = list(conn.execute(select(batches.c.trigger_type)
                                     .where(batches.c.run_id == run_id)).scalars())
    assert FINAL_CHUNK in chunk_indices
    chunks = sum(1 for c in chunk_indices if c >= 0)
    flushes = len(triggers)   # every flush records exactly one batch in its final status
    final_flushes = sum(1 for t in triggers if t == TriggerType.END_OF_SOURCE.value)
    # The scenario must exercise what the crash points are about.
    assert final_flushes >= 1, "no partial batch was left for the final step"
    assert flushes - final_flushes >= 2, "no batch flushed inside a chunk"
    steps = chunks + 1  # every chunk, and the final step, passes each chunk-level site once
    passes = {"chunk.processed": steps, "chunk.before_commit": steps, "chunk.committed": steps,
              "sink.part_written": steps * sinks, "aggregation.flushed": flushes,
              "sink.finalized": sinks, "run.before_close": 1}
    final_from = {"chunk.processed": steps, "chunk.before_commit": steps,
                  "chunk.committed": steps, "sink.part_written": chunks * sinks + 1,
                  "aggregation.flushed": flushes - final_flushes + 1}
    assert set(passes) == set(faults.SITES)
    return passes, final_from, chunks


@pytest.fixture(scope="module")
def triage(tmp_path_factory: pytest.TempPathFactory) -> Baseline:
    root = tmp_path_factory.mktemp("triage")
    data = write_claims(root / "data" / "claims.csv", ROWS, seed=SEED)
    doc = triage_variant(data, chunk_size=CHUNK_SIZE, batch_count=BATCH_COUNT,
                         reject_below=150, fail_every_n=9)
    pipeline = write_pipeline(root / "pipelines" / "claims_triage.yaml", doc)
    case = Case(root / "baseline", sqlite_url(root / "baseline"))
    proc = case.run("cli", "run", str(pipeline))
    assert proc.returncode == 0, describe(proc)
    run_id = json.loads(proc.stdout)["run_id"]
    ls = case.landscape()
    try:
        arts = _artifacts(ls, run_id)
        outcomes = _outcomes(ls, run_id)
        passes, final_from, chunks = _passes(ls, run_id, len(doc["sinks"]))
        trail = _trail(ls, run_id)
    finally:
        ls.dispose()
    # Every sink receives rows, so every sink's idempotency is on trial.
    assert set(arts) == set(doc["sinks"]) and all(rows > 0 for _, rows, _ in arts.values()), arts
    assert outcomes.get("quarantined", 0) >= 4 and outcomes.get("diverted", 0) > 0, outcomes
    outputs = tree_bytes(case.home / "out")
    assert not any(".parts" in name for name in outputs), outputs.keys()
    assert trail["stored"]["compact_states"] > 0  # the compact encoding is on trial too
    return Baseline(pipeline, outputs, arts, outcomes, passes, final_from, chunks,
                    len(doc["sinks"]), trail)


# --- the checks ---------------------------------------------------------------------------------
def _checkpoint_count(case: Case) -> int:
    ls = case.landscape()
    try:
        with ls.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(checkpoints)).scalar_one())
    finally:
        ls.dispose()


def assert_killed_where_expected(case: Case, base: Baseline, site: str, n: int) -> None:
    """The crash point is where it claims to be: so many chunks committed, parts on disk."""
    expected = base.checkpoints_at(site, n)
    if expected is not None:
        assert _checkpoint_count(case) == expected, (site, n)
    if site == "chunk.before_commit":  # every sink's part of the chunk is durable already
        part = part_key(FINAL_CHUNK if n == base.chunks + 1 else n - 1)
        out = case.home / "out"
        for name, content in base.outputs.items():
            if content is not None:
                extension = name.rsplit(".", 1)[1]
                assert (out / f"{name}.parts" / f"{part}.{extension}").is_file(), (name, part)


def assert_matches_baseline(case: Case, run_id: str, base: Baseline, *, resumes: int) -> None:
    outputs = tree_bytes(case.home / "out")
    assert sorted(outputs) == sorted(base.outputs), "files differ from the baseline's"
    for name, content in base.outputs.items():
        assert outputs[name] == content, f"{name} is not byte-identical to the baseline"
    ls = case.landscape()
    try:
        with ls.engine.connect() as conn:
            run = Run.from_row(conn.execute(select(runs).where(runs.c.run_id == run_id))
                               .mappings().one())
            abandoned = conn.execute(select(func.count()).where(
                events.c.scope == run_id, events.c.type == "run.abandoned")).scalar_one()
        assert run.status is RunStatus.COMPLETED
        assert run.resume_count == resumes
        assert abandoned == resumes  # each killed attempt is recorded as abandoned, then resumed
        assert _artifacts(ls, run_id) == base.artifacts
        assert _outcomes(ls, run_id) == base.outcomes
        assert _trail(ls, run_id) == base.trail
        verified = verify(ls)
        assert verified.ok, [f.as_dict() for f in verified.findings]
        swept = sweep(ls, run_id)
        assert swept.ok, [f.as_dict() for f in swept.findings]
    finally:
        ls.dispose()


def assert_cli_verify_clean(case: Case, run_id: str) -> None:
    """``governance-pipeline verify RUN_ID`` (ledger, seals, records, payloads and the sweep)."""
    proc = case.run("cli", "verify", run_id)
    assert proc.returncode == 0, describe(proc)
    doc: dict[str, Any] = json.loads(proc.stdout)
    assert doc["ok"] is True and doc["sweep"]["ok"] is True, doc


# --- the tests ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("site", "selector"), CRASH_POINTS,
                         ids=[f"{s}-{sel}" for s, sel in CRASH_POINTS])
def test_crash_at_point_then_resume_matches_baseline(triage: Baseline, tmp_path: Path,
                                                     site: str, selector: str) -> None:
    n = triage.occurrence(site, selector)
    assert 1 <= n <= triage.passes[site]
    case = Case(tmp_path / "home", sqlite_url(tmp_path / "home"))
    run = case.crash("engine", "run", str(triage.pipeline), crash_at=f"{site}:{n}")
    assert_killed_where_expected(case, triage, site, n)
    case.resume("engine", run.run_id)
    assert_matches_baseline(case, run.run_id, triage, resumes=1)


def test_crash_during_resume_then_resume_again(triage: Baseline, tmp_path: Path) -> None:
    """Killed in the run and in each of two resumes (CLI and engine alternating), then resumed."""
    case = Case(tmp_path / "home", sqlite_url(tmp_path / "home"))
    first = triage.occurrence("chunk.before_commit", "random#1")
    run = case.crash("engine", "run", str(triage.pipeline),
                     crash_at=f"chunk.before_commit:{first}")
    # The resume re-processes the uncommitted chunk onward, and its final step flushes the
    # buffered batches (the baseline shows there are some): a first flush is certain.
    case.crash("cli", "resume", run.run_id, crash_at="aggregation.flushed:1")
    case.crash("engine", "resume", run.run_id, crash_at="sink.finalized:2")
    case.resume("cli", run.run_id)
    assert_matches_baseline(case, run.run_id, triage, resumes=3)


def _checkpoints(db_file: Path) -> int:
    """Committed chunk checkpoints, read with a plain SQLite connection (never a writer)."""
    with closing(sqlite3.connect(db_file, timeout=30)) as conn:
        query = "SELECT count(*) FROM checkpoints WHERE chunk_index >= 0"
        (count,) = conn.execute(query).fetchone()
    return int(count)


def _kill_after(proc: subprocess.Popen[str], db_file: Path, checkpoints_wanted: int) -> None:
    """Let the run commit ``checkpoints_wanted`` chunks, then SIGKILL it from outside.

    The wait between two looks at the database is ``Popen.wait(timeout=...)``: it returns at
    once if the child exits by itself, and it bounds the loop (at most ~120 s in all).
    """
    for _ in range(6000):
        try:
            proc.wait(timeout=0.02)
        except subprocess.TimeoutExpired:
            if _checkpoints(db_file) >= checkpoints_wanted:
                proc.send_signal(signal.SIGKILL)
                return
        else:
            return  # exited by itself: the caller's returncode check reports it
    proc.send_signal(signal.SIGKILL)
    raise AssertionError(f"no {checkpoints_wanted} checkpoints within the polling bound")


@pytest.fixture
def sqlite_case(tmp_path: Path) -> Iterator[Case]:
    case = Case(tmp_path / "home", sqlite_url(tmp_path / "home"))
    case.home.mkdir(parents=True)
    case.landscape().dispose()  # the database exists (migrated) before the child starts
    yield case


def test_external_sigkill_at_random_moment_then_resume(triage: Baseline,
                                                       sqlite_case: Case) -> None:
    case = sqlite_case
    # Leave at least three chunks and the final step unprocessed, so the kill lands mid-run.
    wanted = random.Random(f"{SEED}:external").randint(1, triage.chunks - 3)
    proc = subprocess.Popen(case.argv("cli", "run", str(triage.pipeline)), env=case.env(),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, text=True, cwd=case.home.parent)
    try:
        _kill_after(proc, case.home / "landscape.db", wanted)
    finally:
        code = proc.wait(timeout=60)
    assert code == KILLED, f"the run ended by itself (exit {code}) before it could be killed"
    run = case.only_run()
    assert run.status is RunStatus.RUNNING
    assert _checkpoints(case.home / "landscape.db") >= wanted
    case.resume("cli", run.run_id)
    assert_matches_baseline(case, run.run_id, triage, resumes=1)
    assert_cli_verify_clean(case, run.run_id)


def test_crash_and_resume_on_postgresql(triage: Baseline, tmp_path: Path,
                                        pg_template: str | None) -> None:
    if pg_template is None:
        pytest.skip("PostgreSQL not configured: set GOVERNANCE_TEST_PG_URL (scripts/test.sh does)")
    url = fresh_pg_url(pg_template)
    try:
        case = Case(tmp_path / "home", url)
        at = triage.occurrence("chunk.before_commit", "random#2")
        run = case.crash("cli", "run", str(triage.pipeline), crash_at=f"chunk.before_commit:{at}")
        assert_killed_where_expected(case, triage, "chunk.before_commit", at)
        case.crash("engine", "resume", run.run_id, crash_at="aggregation.flushed:1")
        case.resume("cli", run.run_id)
        assert_matches_baseline(case, run.run_id, triage, resumes=2)
    finally:
        drop_pg_database(pg_template, url)
