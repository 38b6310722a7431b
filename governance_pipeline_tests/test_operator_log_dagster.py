"""Dagster-launched actions in the operator log, on both backends: a pipeline job's run records
its actor from the run's config, its tags, ``$GOVERNANCE_ACTOR`` or the OS user, with surface
``dagster``; a bundle asset's refused export records the actor of its run's tags."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import pytest
from dagster import DagsterInstance, RunConfig, materialize

from governance_pipeline.contracts.operator_records import OperatorAction, OperatorSurface
from governance_pipeline.governance.operator_reads import OperatorFilter, list_operator_events
from governance_pipeline.orchestration.bundle_assets import (
    BUNDLE_CHECKS,
    BundleConfig,
    evidence_bundle,
    landscape_audit,
)
from governance_pipeline.orchestration.local import execute_pipeline, run_config
from governance_pipeline.orchestration.resources import LandscapeResource
from governance_pipeline_tests.orchestration_fixtures import instance as instance  # noqa: F401
from governance_pipeline_tests.orchestration_fixtures import make_home


def _pipeline(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "in.jsonl").write_text("".join(json.dumps({"id": i}) + "\n" for i in range(3)),
                                   encoding="utf-8")
    path = root / "p.yaml"
    path.write_text("name: dagster_ops\ntenant: acme\nchunk_size: 10\n"
                    "source:\n  plugin: jsonl\n  options: {path: in.jsonl}\n  on_success: out\n"
                    "sinks:\n  out:\n    plugin: csv\n    options: {path: out.csv}\n",
                    encoding="utf-8")
    return path


def test_a_dagster_run_records_its_actor_and_surface(
        tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch,
        instance: DagsterInstance) -> None:  # noqa: F811
    home = make_home(tmp_path, db_url, monkeypatch)
    path = _pipeline(home.pipelines)
    monkeypatch.delenv("GOVERNANCE_ACTOR", raising=False)
    launched = []
    for actor, tags, env in (("configured", {}, None), (None, {"governance/actor": "ui-user"},
                                                        "env-user"),
                             (None, {}, "env-user"), (None, {}, None)):
        if env:
            monkeypatch.setenv("GOVERNANCE_ACTOR", env)
        else:
            monkeypatch.delenv("GOVERNANCE_ACTOR", raising=False)
        job_run, result = execute_pipeline(instance, path, run_config(log_level="WARNING",
                                                                      actor=actor), tags=tags)
        assert result.success
        launched.append(job_run.landscape_run_id)
    ls = home.landscape()
    try:
        runs = list_operator_events(ls, OperatorFilter(actions=(OperatorAction.RUN,)))
    finally:
        ls.dispose()
    assert [(e.subject, e.actor, e.surface) for e in runs] == [
        (launched[0], "configured", OperatorSurface.DAGSTER),
        (launched[1], "ui-user", OperatorSurface.DAGSTER),
        (launched[2], "env-user", OperatorSurface.DAGSTER),
        (launched[3], getpass.getuser(), OperatorSurface.DAGSTER)]
    assert all(json.loads(e.inputs_json)["dagster_run_id"] for e in runs)


def test_a_bundle_asset_logs_its_refused_export_with_the_tagged_actor(
        tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch,
        instance: DagsterInstance) -> None:  # noqa: F811
    home = make_home(tmp_path, db_url, monkeypatch)
    path = _pipeline(home.pipelines)
    job_run, result = execute_pipeline(instance, path, run_config(log_level="WARNING",
                                                                  actor="alice"))
    assert result.success and job_run.landscape_run_id
    run_id = job_run.landscape_run_id
    instance.add_dynamic_partitions("landscape_runs", [run_id])
    done = materialize([landscape_audit, evidence_bundle, *BUNDLE_CHECKS], partition_key=run_id,
                       instance=instance, tags={"governance/actor": "auditor"},
                       resources={"landscape": LandscapeResource(db_url=db_url,
                                                                 home=str(home.home))},
                       run_config=RunConfig(ops={evidence_bundle.op.name: BundleConfig()}),
                       raise_on_error=False)
    assert not done.success  # no approval token: blocked
    ls = home.landscape()
    try:
        (export,) = list_operator_events(ls, OperatorFilter(actions=(OperatorAction.EXPORT,)))
    finally:
        ls.dispose()
    assert (export.actor, export.surface, export.result.value) == (
        "auditor", OperatorSurface.DAGSTER, "refused")
    assert export.code == "GP-APPROVAL-020" and export.subject == f"evidence {run_id}"
    inputs = json.loads(export.inputs_json)
    assert inputs["export_surface"] == "dagster:evidence_bundle" and inputs["approval_id"] is None
