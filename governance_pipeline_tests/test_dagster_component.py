"""A pipeline as a Dagster Component: the component type, the code location built on it, the
example ``dg`` project checked and listed by the real ``dg`` CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from dagster import AssetKey, Definitions

from governance_pipeline.contracts.settings import Settings
from governance_pipeline.orchestration.catalog import build_pipeline_definitions
from governance_pipeline.orchestration.component import PipelineComponent, PipelineComponentError
from governance_pipeline_tests.engine_fixtures import EXAMPLES
from governance_pipeline_tests.orchestration_fixtures import Home, make_home

VENV_BIN = Path(sys.executable).parent
DG = VENV_BIN / "dg"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    h = make_home(tmp_path, f"sqlite:///{tmp_path / 'landscape.db'}", monkeypatch)
    h.copy_examples()
    return h


def _catalog() -> Definitions:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_pipeline_definitions(Settings.from_env())


def _shape(defs: Definitions, job: str) -> dict[str, object]:
    repo = defs.get_repository_def()
    job_def = defs.resolve_job_def(job)
    graph = repo.asset_graph
    return {
        "nodes": sorted(n.name for n in job_def.graph.nodes),
        "description": job_def.description, "tags": dict(job_def.tags),
        "metadata": {k: getattr(v, "value", v) for k, v in job_def.metadata.items()},
        "resources": sorted(job_def.resource_defs),
        "assets": sorted(k.to_user_string() for k in graph.get_all_asset_keys()
                         if k.path[0] != "pipelines"),
        "deps": sorted((k.to_user_string(), sorted(p.to_user_string()
                                                   for p in graph.get(k).parent_keys))
                       for k in graph.get_all_asset_keys() if k.path[0] != "pipelines"),
        "checks": sorted(f"{k.asset_key.to_user_string()}:{k.name}"
                         for k in graph.asset_check_keys if k.asset_key.path[0] != "pipelines"),
    }


def test_the_component_builds_the_job_assets_and_checks_the_catalog_builds(home: Home) -> None:
    component = PipelineComponent(path="claims_screening.yaml")
    own = component.definitions(home.pipelines)
    catalog = _catalog()
    shape = _shape(own, "claims_screening")
    assert shape["assets"] == ["claims_screening/published", "claims_screening/source"]
    assert shape["checks"] == ["claims_screening/published:policy_note_privacy"]
    in_catalog = _shape(catalog, "claims_screening")
    in_catalog["assets"] = [a for a in in_catalog["assets"]  # type: ignore[attr-defined]
                            if a.startswith("claims_screening/")]
    in_catalog["deps"] = [d for d in in_catalog["deps"]  # type: ignore[attr-defined]
                          if d[0].startswith("claims_screening/")]
    in_catalog["checks"] = [c for c in in_catalog["checks"]  # type: ignore[attr-defined]
                            if c.startswith("claims_screening/")]
    assert shape == in_catalog


def test_the_component_attributes_name_describe_and_tag_the_job(home: Home) -> None:
    component = PipelineComponent(path="claims_triage.yaml", job_name="triage_nightly",
                                  description="Nightly triage", tags={"team": "claims"})
    defs = component.definitions(home.pipelines)
    job = defs.resolve_job_def("triage_nightly")
    assert job.description is not None and job.description.startswith("Nightly triage\n")
    assert job.tags["team"] == "claims" and job.tags["governance/pipeline"] == "claims_triage"
    graph = defs.get_repository_def().asset_graph
    assert "job `triage_nightly`" in (graph.get(AssetKey(["claims_triage", "standard"]))
                                      .description or "")


def test_a_missing_or_invalid_pipeline_fails_with_gp_dagster_001(home: Home) -> None:
    with pytest.raises(PipelineComponentError) as missing:
        PipelineComponent(path="nope.yaml").definitions(home.pipelines)
    assert str(missing.value).startswith("GP-DAGSTER-001: ")
    assert "GP-CONFIG-001" in str(missing.value) and "\nfix: " in str(missing.value)
    bad = home.pipelines / "claims_triage.yaml"
    bad.write_text(bad.read_text(encoding="utf-8").replace("plugin: summarize",
                                                          "plugin: no_such_function"),
                   encoding="utf-8")
    with pytest.raises(PipelineComponentError) as invalid:
        PipelineComponent(path="claims_triage.yaml").definitions(home.pipelines)
    assert "GP-DAGSTER-001" in str(invalid.value) and "no_such_function" in str(invalid.value)


def test_the_component_type_is_registered_and_the_engine_stays_free_of_dagster() -> None:
    from dagster.components.core.package_entry import discover_entry_point_package_objects

    found = {f"{k.namespace}.{k.name}": v for k, v in
             discover_entry_point_package_objects().items()}
    assert found["governance_pipeline.PipelineComponent"] is PipelineComponent
    probe = ("import sys, governance_pipeline, governance_pipeline.engine.runner, "
             "governance_pipeline.cli.main; print('dagster' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    assert proc.stdout.strip() == "False"


# --- the example dg project, with the real dg CLI ----------------------------------------------
def _project(tmp_path: Path) -> Path:
    """The example project beside the example pipelines, as in the repository."""
    root = tmp_path / "examples"
    for part in ("dg_project", "pipelines", "data", "policies"):
        shutil.copytree(EXAMPLES / part, root / part,
                        ignore=shutil.ignore_patterns("__pycache__", ".governance"))
    return root / "dg_project"


def _dg(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VIRTUAL_ENV": str(VENV_BIN.parent),
           "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": str(project / "src"), "GOVERNANCE_HOME": str(project / ".governance"),
           "NO_COLOR": "1"}
    env.pop("GOVERNANCE_PIPELINES_DIR", None)
    return subprocess.run([str(DG), *args], cwd=project, env=env, capture_output=True,
                          text=True, timeout=240)


@pytest.mark.slow
def test_dg_checks_and_lists_the_example_projects_pipelines(tmp_path: Path) -> None:
    project = _project(tmp_path)
    checked = _dg(project, "check", "defs")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # dg scaffolds one more: a defs.yaml naming the linear example.
    scaffolded = _dg(project, "scaffold", "defs", "governance_pipeline.PipelineComponent",
                     "claims_linear", "--path", "../../../../../pipelines/claims_linear.yaml")
    assert scaffolded.returncode == 0, scaffolded.stdout + scaffolded.stderr
    listed = _dg(project, "list", "defs", "--json")
    assert listed.returncode == 0, listed.stderr
    doc = json.loads(listed.stdout)
    assert sorted(j["name"] for j in doc["jobs"]) == ["claims_linear", "claims_screening_notes",
                                                      "claims_triage"]
    assets = {a["asset_key"]: a for a in doc["assets"] if not a["asset_key"].startswith(
        "claims_linear/")}
    sinks = {f"claims_triage/{s}" for s in ("standard", "review_summary", "rejected", "errors",
                                            "quarantine")} | {"claims_screening/published"}
    assert sinks | {"claims_triage/source", "claims_screening/source"} == set(assets)
    for sink in sinks:
        assert assets[sink]["dependency_keys"] == [sink.split("/")[0] + "/source"]
    assert [c["key"] for c in doc["asset_checks"]] == [
        "claims_screening/published:policy_note_privacy"]
    components = _dg(project, "list", "components", "--json")
    assert components.returncode == 0, components.stderr
    assert "governance_pipeline.PipelineComponent" in components.stdout


@pytest.mark.slow
def test_dg_check_fails_on_a_defs_yaml_naming_a_missing_or_invalid_pipeline(
        tmp_path: Path) -> None:
    project = _project(tmp_path)
    broken = project / "src" / "claims_dg" / "defs" / "broken"
    broken.mkdir()
    (broken / "defs.yaml").write_text(
        "type: governance_pipeline.PipelineComponent\nattributes:\n  path: missing.yaml\n",
        encoding="utf-8")
    checked = _dg(project, "check", "defs")
    out = checked.stdout + checked.stderr
    assert checked.returncode != 0
    assert "GP-DAGSTER-001" in out and "missing.yaml" in out and "GP-CONFIG-001" in out
    # An existing but invalid pipeline: the pipeline's own code is named too.
    (broken / "defs.yaml").unlink()
    pipeline = project.parent / "pipelines" / "claims_triage.yaml"
    pipeline.write_text(pipeline.read_text(encoding="utf-8").replace(
        "plugin: summarize", "plugin: no_such_function"), encoding="utf-8")
    checked = _dg(project, "check", "defs")
    out = checked.stdout + checked.stderr
    assert checked.returncode != 0
    assert "GP-DAGSTER-001" in out and "no_such_function" in out
