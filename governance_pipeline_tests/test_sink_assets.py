"""Sinks as Dagster assets, policies as their checks: on a real instance and a real Landscape.

A run of a pipeline's job materialises every sink asset with what the Landscape recorded (rows,
sha256, path, run id, outcome counts, policy snapshot hash); the policy checks on the sinks pass
on a clean run, warn under advisory mode with the would-block count, and fail on an enforced
stop, which fails the run with the code, rule, row and fix and no stack frame of ours.
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path
from typing import Any

import pytest
from dagster import (
    AssetCheckKey,
    AssetSelection,
    AssetCheckSeverity,
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    Definitions,
    define_asset_job,
)
from sqlalchemy import func, select

from governance_pipeline.contracts.settings import Settings
from governance_pipeline.landscape.schema import artifacts, policy_snapshots, token_outcomes
from governance_pipeline.landscape.schema_governance import policy_decisions
from governance_pipeline.orchestration.bundle_assets import bundle_definitions
from governance_pipeline.orchestration.catalog import build_pipeline_definitions, sink_asset_keys
from governance_pipeline_tests.orchestration_fixtures import (
    Home,
    instance,  # noqa: F401 - fixture
    landscape_run_id,
    make_home,
    run_job,
)

_ = instance

TRIAGE_SINKS = ["errors", "quarantine", "rejected", "review_summary", "standard"]
PUBLISHED = AssetKey(["claims_screening", "published"])
PRIVACY_CHECK = AssetCheckKey(PUBLISHED, "policy_note_privacy")


@pytest.fixture
def home(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Home:
    h = make_home(tmp_path, db_url, monkeypatch)
    h.copy_examples()
    return h


def _defs() -> Definitions:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipelines = build_pipeline_definitions(Settings.from_env())
    return Definitions.merge(pipelines, bundle_definitions(sink_asset_keys(pipelines)))


def _values(metadata: dict[str, Any]) -> dict[str, Any]:
    return {k: getattr(v, "value", v) for k, v in metadata.items()}


def _latest_check(inst: DagsterInstance, key: AssetCheckKey) -> Any:
    records = inst.event_log_storage.get_asset_check_execution_history(key, limit=1)
    assert records, f"no evaluation of {key}"
    event = records[0].event
    assert event is not None and event.dagster_event is not None
    return event.dagster_event.asset_check_evaluation_data


def _clean_notes(h: Home) -> None:
    """The screening example's first 30 notes: the first with personal data is row 37."""
    path = h.root / "data" / "adjuster_notes.csv"
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    clean = rows[:30]
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(clean)


# --- declared before any run ------------------------------------------------------------------
def test_sinks_are_assets_downstream_of_the_source_and_upstream_of_the_bundles(home: Home) -> None:
    graph = _defs().get_repository_def().asset_graph
    source = AssetKey(["claims_triage", "source"])
    sinks = [AssetKey(["claims_triage", s]) for s in TRIAGE_SINKS]
    for key in sinks:
        node = graph.get(key)
        assert node.parent_keys == {source}
        assert node.group_name == "claims_triage"
        assert not node.is_materializable  # the pipeline's job materialises it, not Dagster
    assert graph.get(source).group_name == "claims_triage"
    assert graph.get(source).parent_keys == set()
    # Every bundle covers the runs' outputs: the sinks of every pipeline are its upstream.
    for bundle in ("evidence_bundle", "soc2_bundle", "executive_debrief"):
        parents = graph.get(AssetKey(bundle)).parent_keys
        assert AssetKey("landscape_audit") in parents
        assert set(sinks) | {PUBLISHED, AssetKey(["partner_export", "shared"])} <= parents
    # Policies are checks on the sinks their rows reach, declared before the first run.
    assert PRIVACY_CHECK in graph.asset_check_keys
    assert AssetCheckKey(AssetKey(["partner_export", "shared"]), "policy_content_safety") \
        in graph.asset_check_keys
    assert not [k for k in graph.asset_check_keys if k.asset_key.path[0] == "claims_triage"]


def test_the_job_description_renders_the_pipelines_node_graph(home: Home) -> None:
    job = _defs().resolve_job_def("claims_triage")
    description = job.description or ""
    for node in ("normalize", "triage", "risk_model", "fraud_check", "merge_review",
                 "summarise", *TRIAGE_SINKS):
        assert f"| `{node}` |" in description
    assert "| 2 | `triage` | gate |" in description
    assert "```mermaid" in description and 'triage -->|"default"| standard' in description
    assert job.metadata["node_graph"].value in description


# --- a run ------------------------------------------------------------------------------------
def test_a_run_materialises_every_sink_with_the_landscapes_figures(
        home: Home, instance: DagsterInstance) -> None:
    result = run_job(instance, home.pipelines / "claims_triage.yaml")
    assert result.success
    run_id = landscape_run_id(instance, result)
    ls = home.landscape()
    try:
        with ls.engine.connect() as conn:
            arts = {a["sink_node_id"]: a for a in conn.execute(
                select(artifacts).where(artifacts.c.run_id == run_id)).mappings()}
            counts = dict(conn.execute(
                select(token_outcomes.c.outcome, func.count())
                .where(token_outcomes.c.run_id == run_id, token_outcomes.c.is_terminal == 1)
                .group_by(token_outcomes.c.outcome)).all())
            snapshot = conn.execute(select(policy_snapshots.c.content_hash).join(
                artifacts, artifacts.c.run_id == run_id).limit(1)).scalar_one()
    finally:
        ls.dispose()
    assert sorted(arts) == TRIAGE_SINKS
    for sink, art in arts.items():
        event = instance.get_latest_materialization_event(AssetKey(["claims_triage", sink]))
        assert event is not None and event.run_id == result.run_id
        meta = _values(event.asset_materialization.metadata)  # type: ignore[union-attr]
        assert meta["rows_written"] == meta["dagster/row_count"] == art["row_count"]
        assert meta["sha256"] == art["content_hash"]
        assert meta["path"] == art["path_or_uri"]
        assert meta["size_bytes"] == art["size_bytes"]
        assert meta["landscape_run_id"] == run_id
        assert meta["run_status"] == "completed"
        assert meta["outcomes"] == counts
        assert len(meta["policy_snapshot_hash"]) == 64
        assert f"explain {run_id} --row N" in meta["audit"]
    assert arts["standard"]["row_count"] > 0
    assert {m["policy_snapshot_hash"] for m in [_values(
        instance.get_latest_materialization_event(AssetKey(["claims_triage", s]))
        .asset_materialization.metadata) for s in TRIAGE_SINKS]} == {snapshot}  # type: ignore[union-attr]


def test_the_policy_check_passes_on_a_clean_run(home: Home, instance: DagsterInstance) -> None:
    _clean_notes(home)
    result = run_job(instance, home.pipelines / "claims_screening.yaml")
    assert result.success
    evaluation = _latest_check(instance, PRIVACY_CHECK)
    assert evaluation.passed
    meta = _values(evaluation.metadata)
    assert meta["evaluated"] > 0 and meta["would_block"] == 0 and meta["blocked"] == 0
    assert meta["landscape_run_id"] == landscape_run_id(instance, result)


def test_the_policy_check_warns_under_advisory_with_the_would_block_count(
        home: Home, instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOVERNANCE_POLICY_KILL_SWITCH", "1")  # enforced acts as advisory
    result = run_job(instance, home.pipelines / "claims_screening.yaml")
    assert result.success
    run_id = landscape_run_id(instance, result)
    ls = home.landscape()
    try:
        with ls.engine.connect() as conn:
            would = conn.execute(select(func.count()).select_from(policy_decisions).where(
                policy_decisions.c.run_id == run_id,
                policy_decisions.c.would_block == 1)).scalar_one()
    finally:
        ls.dispose()
    assert would > 0
    evaluation = _latest_check(instance, PRIVACY_CHECK)
    assert not evaluation.passed and evaluation.severity is AssetCheckSeverity.WARN
    assert _values(evaluation.metadata)["would_block"] == would
    assert _values(evaluation.metadata)["blocked"] == 0
    assert f"{would} decision(s)" in (evaluation.description or "")
    published = instance.get_latest_materialization_event(PUBLISHED)
    assert published is not None and published.run_id == result.run_id

    # Executed on its own, the check evaluates the pipeline's latest Landscape run again.
    defs = Definitions.merge(_defs(), Definitions(jobs=[define_asset_job(
        "recheck", selection=AssetSelection.checks_for_assets(PUBLISHED))]))
    recheck = defs.resolve_job_def("recheck").execute_in_process(instance=instance)
    assert recheck.success
    again = _latest_check(instance, PRIVACY_CHECK)
    assert again is not evaluation and not again.passed
    assert again.severity is AssetCheckSeverity.WARN
    assert _values(again.metadata)["would_block"] == would
    assert _values(again.metadata)["landscape_run_id"] == run_id
    assert instance.event_log_storage.get_asset_check_execution_history(
        PRIVACY_CHECK, limit=1)[0].run_id == recheck.run_id


def test_an_enforced_stop_fails_the_check_and_the_run_without_a_stack_of_ours(
        home: Home, instance: DagsterInstance) -> None:
    result = run_job(instance, home.pipelines / "claims_screening.yaml")
    assert not result.success
    run_id = landscape_run_id(instance, result)
    evaluation = _latest_check(instance, PRIVACY_CHECK)
    assert not evaluation.passed and evaluation.severity is AssetCheckSeverity.ERROR
    meta = _values(evaluation.metadata)
    assert meta["code"] == "GP-POLICY-001" and meta["rule"] == "no-personal-data"
    assert meta["node"] == "publish_ready" and meta["row_index"] == 37
    assert meta["fix"].startswith("Remove the personal data")
    for part in ("GP-POLICY-001", "no-personal-data", "row 37", "Fix: Remove"):
        assert part in (evaluation.description or "")
    # What was written before the stop is published, and the sink asset says so.
    published = instance.get_latest_materialization_event(PUBLISHED)
    assert published is not None and published.run_id == result.run_id
    pub = _values(published.asset_materialization.metadata)  # type: ignore[union-attr]
    assert pub["run_status"] == "failed_policy" and pub["rows_written"] == 37
    assert pub["landscape_run_id"] == run_id

    logs = instance.all_logs(result.run_id)
    failures = [e.dagster_event for e in logs if e.dagster_event is not None
                and e.dagster_event.event_type is DagsterEventType.STEP_FAILURE]
    assert len(failures) == 1
    error = failures[0].step_failure_data.error
    assert error is not None and "policy_note_privacy" in error.message
    for entry in logs:
        text = entry.message or ""
        assert "Traceback" not in text
        dagster_event = entry.dagster_event
        info = getattr(getattr(dagster_event, "event_specific_data", None), "error", None)
        while info is not None:
            assert not [f for f in info.stack if "governance_pipeline" in f], info.stack
            assert "Traceback" not in info.message
            info = info.cause or info.context
    assert any("GP-POLICY-001" in (e.message or "") and "fix:" in (e.message or "")
               for e in logs if e.level >= 40)  # the error line of the step
