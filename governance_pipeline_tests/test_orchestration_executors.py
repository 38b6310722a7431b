"""Executors and instance storage: the audit trail must not depend on who ran the steps.

Slow: every multiprocess step is a spawned Python process that imports Dagster and the package.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus, build_run_status_sensor_context, instance_for_test
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from governance_pipeline.contracts.enums import RunStatus, TerminationReason
from governance_pipeline.engine import faults
from governance_pipeline.engine.config import load_pipeline
from governance_pipeline.engine.runner import Runner
from governance_pipeline.landscape.database import normalize_url
from governance_pipeline.landscape.queries import get_run
from governance_pipeline.landscape.store import Landscape
from governance_pipeline.orchestration.lifecycle import run_result
from governance_pipeline.orchestration.resources import LandscapeResource
from governance_pipeline.orchestration.sensors import landscape_run_failure
from governance_pipeline_tests.conftest import PG_ENV
from governance_pipeline_tests.orchestration_fixtures import (
    Home,
    assert_clean,
    event_types,
    instance,  # noqa: F401 - fixture
    landscape_run_id,
    make_home,
    outputs,
    run_job,
    step_failures,
)

_ = instance
pytestmark = pytest.mark.slow

KILLED = -signal.SIGKILL


@pytest.fixture
def home(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Home:
    return make_home(tmp_path, db_url, monkeypatch)


def baseline(h: Home, pipeline: Path) -> tuple[dict[str, bytes], dict[str, int]]:
    ls = h.landscape()
    try:
        result = Runner.start(ls, load_pipeline(pipeline), base_dir=pipeline.parent,
                              pipeline_path=pipeline).execute()
        found = outputs(ls, result.run_id), result.outcome_counts
    finally:
        ls.dispose()
    shutil.rmtree(h.home / "out")
    return found


def test_the_multiprocess_executor_gives_the_same_outcomes_and_outputs(
        home: Home, instance: DagsterInstance) -> None:
    pipeline = home.triage()
    in_process = run_job(instance, pipeline, chunks_per_step=2)
    assert in_process.success, step_failures(in_process)
    ls = home.landscape()
    try:
        first = landscape_run_id(instance, in_process)
        expected = outputs(ls, first)
        shutil.rmtree(home.home / "out")

        multi = run_job(instance, pipeline, executor="multiprocess", chunks_per_step=2)
        assert multi.success, step_failures(multi)
        second = landscape_run_id(instance, multi)
        run = assert_clean(ls, second)
        assert outputs(ls, second) == expected
        assert lifecycle_counts(ls, second) == lifecycle_counts(ls, first)
        # Steps ran in child processes; the run names the run worker that spawned them.
        pids = {e.pid for e in multi.all_events if e.event_type_value == "STEP_START"}
        assert os.getpid() not in pids and len(pids) >= 2
        assert run.worker == f"{socket.gethostname()}:{os.getpid()}"
    finally:
        ls.dispose()


def lifecycle_counts(ls: Landscape, run_id: str) -> dict[str, int]:
    return run_result(ls, run_id).outcome_counts


_KILLED_RUN = """
import sys
from pathlib import Path
from dagster import DagsterInstance, execute_job
from governance_pipeline.orchestration.jobs import reconstructable_pipeline_job
from governance_pipeline.orchestration.local import run_config

with DagsterInstance.get() as instance:
    execute_job(reconstructable_pipeline_job(Path(sys.argv[1])), instance,
                run_config=run_config(chunks_per_step=1, log_level="WARNING"))
"""


def test_a_killed_run_worker_is_recorded_by_the_sensor_and_reexecuted_in_subprocesses(
        home: Home, instance: DagsterInstance, tmp_path: Path) -> None:
    pipeline = home.triage()
    expected, counts = baseline(home, pipeline)
    dagster_home = tmp_path / "dagster"
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), faults.ENV: "chunk.committed:2"}
    proc = subprocess.run([sys.executable, "-c", _KILLED_RUN, str(pipeline)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == KILLED, proc.stderr[-3000:]

    [killed] = instance.get_runs()
    assert killed.status is DagsterRunStatus.STARTED  # nobody told Dagster
    run_id = killed.tags["governance/run_id"]
    resource = LandscapeResource(db_url=home.db_url, home=str(home.home))
    with resource.open() as ls:
        assert get_run(ls, run_id).status is RunStatus.RUNNING
    # What the run monitor does when it finds the run worker gone; then the sensor's turn.
    event = instance.report_run_failed(killed, message="run worker exited unexpectedly")
    with build_run_status_sensor_context(
            sensor_name="landscape_run_failure", dagster_event=event, dagster_instance=instance,
            dagster_run=instance.get_run_by_id(killed.run_id),
            resources={"landscape": resource}) as context:
        landscape_run_failure(context.for_run_failure())
    with resource.open() as ls:
        run = get_run(ls, run_id)
        assert (run.status, run.termination_reason) == (RunStatus.FAILED,
                                                        TerminationReason.SYSTEM_FAILURE)

    # Re-executed from failure with steps in parallel subprocesses: several chunk steps attach
    # at once, and exactly one of them resumes the run.
    again = run_job(instance, pipeline, executor="multiprocess", chunks_per_step=1,
                    reexecute=killed.run_id)
    assert again.success, step_failures(again)
    assert landscape_run_id(instance, again) == run_id
    ls = home.landscape()
    try:
        run = assert_clean(ls, run_id)
        assert run.resume_count == 1 and run.dagster_run_id == again.run_id
        types = event_types(ls, run_id)
        assert types.count("run.resumed") == 1 and types.count("run.failed") == 1
        assert outputs(ls, run_id) == expected
        assert lifecycle_counts(ls, run_id) == counts
    finally:
        ls.dispose()


# --- Dagster's own storage on PostgreSQL ----------------------------------------------------------
@pytest.fixture
def pg_instance(tmp_path: Path) -> Iterator[DagsterInstance]:
    """A Dagster instance whose run, event-log and schedule storage is a new PostgreSQL database."""
    admin = os.environ.get(PG_ENV)
    if not admin:
        if os.environ.get("CI"):
            pytest.fail(f"{PG_ENV} is not set in CI: PostgreSQL tests must run, not skip")
        pytest.skip(f"PostgreSQL not configured: set {PG_ENV}")
    name = f"gp_dagster_{os.getpid()}_{tmp_path.name[-12:].lower()}".replace("-", "_")
    engine = create_engine(normalize_url(admin), poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        conn.execute(text(f"CREATE DATABASE {name}"))
    url = make_url(admin)
    (tmp_path / "dagster-pg").mkdir()
    # The form docs/scaling.md and dagster.yaml show. dagster-postgres speaks psycopg2, and
    # SQLAlchemy 2.1 picks psycopg 3 for a bare "postgresql" scheme: the scheme is spelled out.
    storage = {"postgres_db": {"hostname": url.host, "port": url.port or 5432,
                               "username": url.username, "password": url.password or "",
                               "db_name": name, "scheme": "postgresql+psycopg2"}}
    try:
        with instance_for_test(temp_dir=str(tmp_path / "dagster-pg"),
                               overrides={"storage": {"postgres": storage}}) as inst:
            yield inst
    finally:
        with engine.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        engine.dispose()


def test_pipeline_jobs_run_on_postgresql_instance_storage(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pg_instance: DagsterInstance) -> None:
    # Dagster's storage on PostgreSQL, the Landscape on its SQLite default: they are independent.
    home = make_home(tmp_path, f"sqlite:///{tmp_path / 'landscape.db'}", monkeypatch)
    pipeline = home.triage()
    result = run_job(pg_instance, pipeline, chunks_per_step=3)
    assert result.success, step_failures(result)
    stored = pg_instance.get_run_by_id(result.run_id)
    assert stored is not None and stored.status is DagsterRunStatus.SUCCESS
    assert type(pg_instance.run_storage).__name__ == "PostgresRunStorage"
    ls = home.landscape()
    try:
        run = assert_clean(ls, landscape_run_id(pg_instance, result))
        assert run.dagster_run_id == result.run_id
    finally:
        ls.dispose()
