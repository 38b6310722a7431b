"""Helpers for the orchestration tests: a home with the real examples, jobs run on a real instance.

Each test gets its own ``GOVERNANCE_HOME`` (audit keys, staged chunks, sink outputs), audit
database (SQLite file or a fresh PostgreSQL database) and Dagster instance in a temporary
directory. Pipelines are the shipped examples copied with their data, or the triage example tuned
(``engine_fixtures.triage_variant``) so a few hundred rows make several chunks.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dagster import (
    DagsterInstance,
    HookContext,
    JobDefinition,
    ReexecutionOptions,
    build_reconstructable_job,
    execute_job,
    instance_for_test,
    success_hook,
)
from dagster._core.execution.execution_result import ExecutionResult
from sqlalchemy import select

from governance_pipeline.contracts.records import Run
from governance_pipeline.landscape.queries import get_run
from governance_pipeline.landscape.schema import events
from governance_pipeline.landscape.store import Landscape
from governance_pipeline.landscape.sweep import sweep
from governance_pipeline.landscape.verify import verify
from governance_pipeline.orchestration import lifecycle
from governance_pipeline.engine.config import load_pipeline
from governance_pipeline.orchestration.jobs import build_pipeline_job, reconstructable_pipeline_job
from governance_pipeline.orchestration.local import run_config
from governance_pipeline_tests.engine_fixtures import (
    EXAMPLES,
    triage_variant,
    write_claims,
    write_pipeline,
)

ROWS = 300
CHUNK_SIZE = 60
SEED = 11


@dataclass
class Home:
    """One test's GOVERNANCE_HOME, audit database and pipelines directory."""

    root: Path
    db_url: str

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def pipelines(self) -> Path:
        return self.root / "pipelines"

    def landscape(self) -> Landscape:
        return Landscape.open(self.db_url, self.home / "keys")

    def copy_examples(self) -> Path:
        """The shipped example pipelines and their data, side by side as in the repository."""
        shutil.copytree(EXAMPLES / "pipelines", self.pipelines)
        shutil.copytree(EXAMPLES / "data", self.root / "data")
        shutil.copytree(EXAMPLES / "policies", self.root / "policies")
        return self.pipelines

    def triage(self, name: str = "claims_triage.yaml", **knobs: Any) -> Path:
        data = self.root / "data" / "claims_chunked.csv"
        if not data.exists():
            write_claims(data, ROWS, seed=SEED)
        doc = triage_variant(data, **{"chunk_size": CHUNK_SIZE, "batch_count": 7,
                                      "reject_below": 150, "fail_every_n": 9, **knobs})
        return write_pipeline(self.pipelines / name, doc)


def make_home(root: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Home:
    h = Home(root, db_url)
    h.home.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("GOVERNANCE_HOME", str(h.home))
    monkeypatch.setenv("GOVERNANCE_DB_URL", db_url)
    monkeypatch.setenv("GOVERNANCE_PIPELINES_DIR", str(h.pipelines))
    monkeypatch.delenv("GOVERNANCE_CRASH_AT", raising=False)
    return h


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[DagsterInstance]:
    """A persistent Dagster instance (SQLite storage, telemetry off) in the test's directory."""
    (tmp_path / "dagster").mkdir()
    with instance_for_test(temp_dir=str(tmp_path / "dagster")) as inst:
        yield inst


def run_job(inst: DagsterInstance, pipeline: Path, *, executor: str = "in_process",
            chunks_per_step: int = 0, resume_run_id: str | None = None,
            reexecute: str | None = None) -> ExecutionResult:
    config = run_config(executor=executor, chunks_per_step=chunks_per_step,
                        resume_run_id=resume_run_id, log_level="WARNING", max_concurrent=2)
    options = ReexecutionOptions.from_failure(reexecute, inst) if reexecute else None
    return execute_job(reconstructable_pipeline_job(pipeline), inst, run_config=config,
                       reexecution_options=options)


# --- a job with one disturbance, made by a real hook after the read step ------------------------
# A fresh run discards every sink's old parts when it opens, and stages its chunks only in the
# read step: a disturbance of a later step must be put in place after that step has succeeded.
def disturbed_job(pipeline_path: str, action: str, target: str) -> JobDefinition:
    """Reconstructor: the pipeline's job with a hook that, once ``read_source`` succeeds, either
    makes directory ``target`` (``block``; relative to GOVERNANCE_HOME) or appends a byte to
    staged chunk file ``target`` (``tamper``; relative to the run's staging directory)."""
    path = Path(pipeline_path)

    @success_hook(name="disturb_after_read")
    def disturb(context: HookContext) -> None:
        if context.op.name != "read_source":
            return
        home = Path(os.environ["GOVERNANCE_HOME"])
        if action == "block":
            (home / target).mkdir(parents=True)
            return
        record = context.instance.get_run_by_id(context.run_id)
        assert record is not None
        staged = home / "runs" / record.tags[lifecycle.TAG_RUN_ID] / "chunks" / target
        with staged.open("ab") as fh:
            fh.write(b"\0")

    return build_pipeline_job(path, load_pipeline(path)).with_hooks({disturb})


def run_disturbed(inst: DagsterInstance, pipeline: Path, action: str, target: str,
                  **config: Any) -> ExecutionResult:
    job = build_reconstructable_job(__name__, disturbed_job.__name__,
                                    reconstructable_args=(str(pipeline), action, target))
    return execute_job(job, inst, run_config=run_config(log_level="WARNING", **config))


def landscape_run_id(inst: DagsterInstance, result: ExecutionResult) -> str:
    record = inst.get_run_by_id(result.run_id)
    assert record is not None
    return record.tags[lifecycle.TAG_RUN_ID]


def step_failures(result: ExecutionResult) -> list[str]:
    return [e.step_key or "" for e in result.all_events
            if e.event_type_value == "STEP_FAILURE"]


def event_types(ls: Landscape, run_id: str) -> list[str]:
    with ls.engine.connect() as conn:
        return list(conn.execute(select(events.c.type).where(events.c.scope == run_id)
                                 .order_by(events.c.timestamp, events.c.event_id)).scalars())


def outputs(ls: Landscape, run_id: str) -> dict[str, bytes]:
    """Every sink's final artifact, by sink name (bytes, read from the recorded path)."""
    result = lifecycle.run_result(ls, run_id)
    return {s.sink: Path(s.path_or_uri).read_bytes() for s in result.sinks}


def assert_clean(ls: Landscape, run_id: str) -> Run:
    """The run completed, its trail verifies and sweeps clean, and it is sealed."""
    run = get_run(ls, run_id)
    assert run.status.value == "completed", run
    swept = sweep(ls, run_id)
    assert swept.ok, [f.as_dict() for f in swept.findings]
    verified = verify(ls, run_id)
    assert not verified.findings, [f.as_dict() for f in verified.findings]
    return run


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
