"""Before a run records anything: the pipeline it would run must be the IR its job was built
from (the code location's manifest) and the DAG the engine builds from it; a mismatch refuses
the run with exit 5 and records ``ir.dag_diff_failed``; an unchanged pipeline passes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from dagster import DagsterInstance
from sqlalchemy import func, select

from governance_pipeline.engine.config import load_pipeline
from governance_pipeline.landscape.schema import events, runs
from governance_pipeline.orchestration.jobs import build_pipeline_job
from governance_pipeline.orchestration.local import run_config, step_failure_error
from governance_pipeline_tests.orchestration_fixtures import Home, instance, make_home

_ = instance


@pytest.fixture
def home(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Home:
    return make_home(tmp_path, db_url, monkeypatch)


def _events(h: Home, type_: str) -> list[dict[str, Any]]:
    ls = h.landscape()
    try:
        with ls.engine.connect() as conn:
            return [orjson.loads(p) for p in conn.execute(
                select(events.c.payload_json).where(events.c.type == type_)).scalars()]
    finally:
        ls.dispose()


def _runs(h: Home) -> int:
    ls = h.landscape()
    try:
        with ls.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(runs)).scalar_one()
    finally:
        ls.dispose()


def _execute(pipeline: Path, inst: DagsterInstance, *, edit: bool) -> Any:
    job = build_pipeline_job(pipeline, load_pipeline(pipeline))  # the code location loads …
    if edit:  # … then someone edits the file before the run is launched
        text = pipeline.read_text(encoding="utf-8")
        pipeline.write_text(text.replace("fail_every_n: 9", "fail_every_n: 10"),
                            encoding="utf-8")
    return job.execute_in_process(run_config=run_config(log_level="WARNING"), instance=inst,
                                  raise_on_error=False)


def test_a_pipeline_edited_after_its_job_was_built_is_refused(home: Home,
                                                              instance: DagsterInstance) -> None:
    result = _execute(home.triage(), instance, edit=True)
    assert not result.success
    error = step_failure_error(result, None)
    assert error.code.code == "GP-IR-002" and int(error.exit_code) == 5
    (failed,) = _events(home, "ir.dag_diff_failed")
    mismatched = failed["mismatch_details"]["hash_mismatches"]
    assert [m["step_index"] for m in mismatched] == [3]  # risk_model, the edited step
    assert _runs(home) == 0  # refused before any record of the run exists


def test_an_unchanged_pipeline_passes_the_diff_and_runs(home: Home,
                                                        instance: DagsterInstance) -> None:
    result = _execute(home.triage(), instance, edit=False)
    assert result.success
    assert _events(home, "ir.dag_diff_failed") == []
    assert len(_events(home, "ir.dag_diff_ok")) == 2  # against the manifest and the built DAG
    (validated,) = _events(home, "ir.validated_pass")
    assert validated["risk_tier"] <= 1
    assert _runs(home) == 1
