"""The code location's pipeline jobs: one per valid pipeline file, broken files reported."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance

from governance_pipeline.contracts.settings import Settings
from governance_pipeline.orchestration.catalog import (
    VALIDATION_JOB,
    PipelineFileWarning,
    build_pipeline_definitions,
)
from governance_pipeline_tests.orchestration_fixtures import (
    Home,
    instance,  # noqa: F401 - fixture
    make_home,
)

_ = instance


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    h = make_home(tmp_path, f"sqlite:///{tmp_path / 'landscape.db'}", monkeypatch)
    h.copy_examples()
    return h


def _build() -> tuple[object, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        defs = build_pipeline_definitions(Settings.from_env())
    return defs, [str(w.message) for w in caught if issubclass(w.category, PipelineFileWarning)]


def _jobs(defs: object) -> list[str]:
    repo = defs.get_repository_def()  # type: ignore[attr-defined]
    return sorted(j.name for j in repo.get_all_jobs() if not j.name.startswith("__"))


def test_one_job_per_example_pipeline_with_sensors(home: Home) -> None:
    defs, warned = _build()
    assert warned == []
    assert _jobs(defs) == ["claims_linear", "claims_pandas", "claims_screening", "claims_triage",
                           "partner_export", VALIDATION_JOB]
    repo = defs.get_repository_def()  # type: ignore[attr-defined]
    assert {s.name for s in repo.sensor_defs} == {
        "landscape_run_failure", "landscape_run_cancelled", "landscape_abandoned_runs",
        "pipeline_validation"}
    job = defs.resolve_job_def("claims_triage")  # type: ignore[attr-defined]
    assert sorted(n.name for n in job.graph.nodes) == [
        "close_run", "final_step", "open_run", "process_chunks", "read_source"]
    assert job.tags["governance/pipeline"] == "claims_triage"


def test_a_broken_pipeline_file_is_reported_and_the_others_still_load(
        home: Home, instance: DagsterInstance) -> None:
    (home.pipelines / "not_yaml.yaml").write_text("name: [unclosed\n", encoding="utf-8")
    triage = (home.pipelines / "claims_triage.yaml").read_text(encoding="utf-8")
    (home.pipelines / "bad_plugin.yml").write_text(
        triage.replace("name: claims_triage", "name: bad_plugin")
              .replace("plugin: summarize", "plugin: no_such_function"), encoding="utf-8")
    (home.pipelines / "same_name.yaml").write_text(triage, encoding="utf-8")
    # Sorted first, "same-name.yml" gets key same_name and "same_name.yaml" same_name_2.
    (home.pipelines / "same-name.yml").write_text(
        triage.replace("name: claims_triage", "name: triage_copy"), encoding="utf-8")
    (home.pipelines / "reserved.yaml").write_text(
        triage.replace("name: claims_triage", "name: landscape_integrity"), encoding="utf-8")

    defs, warned = _build()
    assert _jobs(defs) == ["claims_linear", "claims_pandas", "claims_screening", "claims_triage",
                           "partner_export", VALIDATION_JOB, "triage_copy"]
    assert len(warned) == 4
    assert any("not_yaml.yaml" in w for w in warned)
    assert any("bad_plugin.yml" in w and "no_such_function" in w for w in warned)
    assert any("same_name.yaml" in w and "taken by claims_triage.yaml" in w for w in warned)
    assert any("reserved.yaml" in w and "reserved" in w for w in warned)

    # Visible without running anything: the check says why the file has no job ...
    graph = defs.get_repository_def().asset_graph  # type: ignore[attr-defined]
    checks = {key.asset_key.path[-1]: graph.get_check_spec(key).description
              for key in graph.asset_check_keys}
    assert checks["claims_triage"] == "Valid: runs as job claims_triage"
    assert checks["bad_plugin"].startswith("INVALID (no job): GP-")
    # ... and executing the checks records a failure per broken file.
    result = defs.resolve_job_def(VALIDATION_JOB).execute_in_process(  # type: ignore[attr-defined]
        instance=instance)
    assert result.success
    evaluations = {e.asset_key.path[-1]: e.passed
                   for e in (ev.asset_check_evaluation_data for ev in result.all_events
                             if ev.event_type_value == "ASSET_CHECK_EVALUATION")}
    assert evaluations == {"claims_linear": True, "claims_pandas": True, "claims_triage": True,
                           "claims_screening": True, "partner_export": True, "not_yaml": False,
                           "bad_plugin": False, "same_name": True, "same_name_2": False,
                           "reserved": False}
    assert AssetKey(["pipelines", "bad_plugin"]) in graph.get_all_asset_keys()


def test_no_pipelines_directory_means_no_pipeline_jobs(home: Home,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOVERNANCE_PIPELINES_DIR", str(home.root / "missing"))
    defs, warned = _build()
    assert _jobs(defs) == [] and warned == []
