"""The bundle assets on both backends: the partition sensor, export gating, materialisation
metadata, and the blocking integrity checks that keep a bundle of a tampered Landscape from
being written. Materialised in process on an ephemeral Dagster instance, against a real run of
the screening example stopped by its enforced policy."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dagster import (
    AssetKey,
    DagsterInstance,
    ExecuteInProcessResult,
    RunConfig,
    build_sensor_context,
    materialize,
)
from sqlalchemy import select, text

from governance_pipeline.contracts.clock import SYSTEM_CLOCK
from governance_pipeline.contracts.enums import (
    ApprovalStatus,
    Decision,
    ExportKind,
    ExportStatus,
)
from governance_pipeline.contracts.hashing import sha256_hex
from governance_pipeline.contracts.records import ExportRecord
from governance_pipeline.governance.approvals import ApprovalService
from governance_pipeline.governance.approvals.export_guard import export_subject_hash
from governance_pipeline.governance.exports.verify_bundle import verify_bundle
from governance_pipeline.landscape.schema import exports
from governance_pipeline.landscape.store import Landscape
from governance_pipeline.orchestration.bundle_assets import (
    BUNDLE_CHECKS,
    BundleConfig,
    Soc2BundleConfig,
    evidence_bundle,
    evidence_partitions_sensor,
    executive_debrief,
    landscape_audit,
    soc2_bundle,
)
from governance_pipeline.orchestration.resources import LandscapeResource
from governance_pipeline_tests import policy_fixtures as pf


@dataclass(frozen=True)
class Governed:
    landscape: Landscape
    resource: LandscapeResource
    instance: DagsterInstance
    home: Path
    run_id: str
    incident_id: str


@pytest.fixture
def governed(tmp_path: Path, db_url: str, clock: Any,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[Governed]:
    monkeypatch.delenv("GOVERNANCE_LADDERS_FILE", raising=False)
    home = tmp_path / "home"
    landscape = Landscape.open(db_url, home / "keys", clock=clock)
    outcome = pf.execute(landscape, pf.screening(tmp_path / "pipeline"))
    assert outcome.stopped is not None
    with landscape.engine.connect() as conn:
        incident_id = conn.execute(text("SELECT incident_id FROM incidents WHERE run_id = :r"),
                                   {"r": outcome.run_id}).scalar_one()
    with DagsterInstance.ephemeral() as instance:
        yield Governed(landscape, LandscapeResource(db_url=db_url, home=str(home)), instance,
                       home, outcome.run_id, incident_id)
    landscape.dispose()


def approved_token(landscape: Landscape, kind: ExportKind, subject: str, tenant: str) -> str:
    # The assets' Landscape runs on the system clock: the approval must be fresh by it too.
    service = ApprovalService(dataclasses.replace(landscape, clock=SYSTEM_CLOCK))
    approval, token = service.request(
        tenant_id=tenant, subject_type="export",
        subject_hash=export_subject_hash(kind, subject, tenant),
        subject_ref=f"{kind.value} {subject}", requested_by="rita", ladder="export")
    for role, actor in (("compliance", "compliance-officer"), ("security", "security-officer")):
        service.decide(approval.approval_id, actor=actor, role=role, decision=Decision.APPROVE)
    return token


def run(g: Governed, bundle: Any, partition: str, config: Any) -> ExecuteInProcessResult:
    return materialize([landscape_audit, bundle, *BUNDLE_CHECKS], partition_key=partition,
                       instance=g.instance, resources={"landscape": g.resource},
                       run_config=RunConfig(ops={bundle.op.name: config}), raise_on_error=False)


def export_rows(landscape: Landscape) -> list[ExportRecord]:
    with landscape.engine.connect() as conn:
        rows = conn.execute(select(exports).order_by(exports.c.created_at,
                                                     exports.c.export_id)).mappings().all()
    return [ExportRecord.from_row(r) for r in rows]


def materialized(result: ExecuteInProcessResult, name: str) -> dict[str, Any] | None:
    events = [e for e in result.get_asset_materialization_events()
              if e.asset_key == AssetKey(name)]
    if not events:
        return None
    (event,) = events
    return {k: v.value for k, v in event.materialization.metadata.items()}


def check_outcomes(result: ExecuteInProcessResult) -> dict[str, bool]:
    return {e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data.passed
            for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}


def tick(g: Governed) -> Any:
    with build_sensor_context(instance=g.instance, resources={"landscape": g.resource}) as ctx:
        return evidence_partitions_sensor(ctx)


def test_the_sensor_adds_ended_runs_and_incidents_once(governed: Governed, tmp_path: Path) -> None:
    running = pf.start(governed.landscape, pf.screening(tmp_path / "second"))
    result = tick(governed)
    added = {r.partitions_def_name: list(r.partition_keys)
             for r in result.dynamic_partitions_requests}
    assert added == {"landscape_runs": [governed.run_id], "incidents": [governed.incident_id]}
    assert running.run_id not in added["landscape_runs"]  # still running: no partition yet
    for name, keys in added.items():
        governed.instance.add_dynamic_partitions(name, keys)
    again = tick(governed)
    assert again.dynamic_partitions_requests == [] and again.skip_reason is not None


def test_evidence_bundle_is_gated_then_materialised_with_its_metadata(governed: Governed) -> None:
    governed.instance.add_dynamic_partitions("landscape_runs", [governed.run_id])
    blocked = run(governed, evidence_bundle, governed.run_id, BundleConfig())
    assert not blocked.success
    failure = blocked.failure_data_for_node("evidence_bundle")
    assert failure is not None and "GP-APPROVAL-020" in failure.user_failure_data.description
    assert materialized(blocked, "evidence_bundle") is None
    (row,) = export_rows(governed.landscape)
    assert (row.status, row.surface, row.subject) == \
        (ExportStatus.BLOCKED, "dagster:evidence_bundle", governed.run_id)

    token = approved_token(governed.landscape, ExportKind.EVIDENCE, governed.run_id, "acme")
    done = run(governed, evidence_bundle, governed.run_id,
               BundleConfig(approval_token=token, actor="auditor"))
    assert done.success
    assert check_outcomes(done) == {"sweep_clean": True, "ledger_verified": True}
    meta = materialized(done, "evidence_bundle")
    assert meta is not None
    path = Path(meta["path"])
    assert path.is_relative_to(governed.home / "exports" / "dagster" / "evidence")
    assert meta["bundle_digest"] == "sha256:" + sha256_hex((path / "manifest.json").read_bytes())
    assert verify_bundle(path).ok
    for name in ("bundle.json", "bundle.pdf", "proofs.json"):
        assert meta[f"sha256/{name}"] in meta["files"]
    assert governed.run_id.replace("_", "\\_") in meta["preview"]  # markdown-escaped
    written = export_rows(governed.landscape)[-1]
    assert (written.status, written.requested_by, written.path) == \
        (ExportStatus.WRITTEN, "auditor", str(path))
    assert f"sha256:{written.bundle_digest}" == meta["bundle_digest"]


def test_soc2_and_debrief_materialise(governed: Governed) -> None:
    token = approved_token(governed.landscape, ExportKind.SOC2, "2026-01/acme", "acme")
    done = run(governed, soc2_bundle, "2026-01-01",
               Soc2BundleConfig(approval_token=token, tenant="acme"))
    assert done.success
    meta = materialized(done, "soc2_bundle")
    assert meta is not None and verify_bundle(Path(meta["path"])).ok
    assert meta["tenant_id"] == "acme" and "GP-CC7.3" in meta["preview"]

    governed.instance.add_dynamic_partitions("incidents", [governed.incident_id])
    token = approved_token(governed.landscape, ExportKind.DEBRIEF, governed.incident_id, "acme")
    done = run(governed, executive_debrief, governed.incident_id,
               BundleConfig(approval_token=token))
    assert done.success
    meta = materialized(done, "executive_debrief")
    assert meta is not None and verify_bundle(Path(meta["path"])).ok
    assert [(r.status, r.kind) for r in export_rows(governed.landscape)] == [
        (ExportStatus.WRITTEN, ExportKind.SOC2), (ExportStatus.WRITTEN, ExportKind.DEBRIEF)]


def test_a_tampered_landscape_blocks_the_bundle(governed: Governed) -> None:
    governed.instance.add_dynamic_partitions("landscape_runs", [governed.run_id])
    token = approved_token(governed.landscape, ExportKind.EVIDENCE, governed.run_id, "acme")
    with governed.landscape.engine.begin() as conn:
        conn.execute(text("UPDATE incidents SET summary = 'nothing happened' "
                          "WHERE incident_id = :i"), {"i": governed.incident_id})
    result = run(governed, evidence_bundle, governed.run_id, BundleConfig(approval_token=token))
    assert not result.success
    assert check_outcomes(result)["ledger_verified"] is False
    assert materialized(result, "landscape_audit") is not None
    assert materialized(result, "evidence_bundle") is None
    assert "evidence_bundle" not in {e.step_key for e in result.all_events
                                     if e.event_type_value == "STEP_START"}
    assert export_rows(governed.landscape) == []
    (view,) = ApprovalService(governed.landscape).list(tenant_id="acme")
    assert view.approval.status is ApprovalStatus.APPROVED  # the approval was not used

    # Alone (without the audit asset and its checks) the asset still refuses: exit 5's code.
    alone = materialize([evidence_bundle], partition_key=governed.run_id,
                        instance=governed.instance, resources={"landscape": governed.resource},
                        run_config=RunConfig(ops={"evidence_bundle": BundleConfig(
                            approval_token=token)}), raise_on_error=False)
    assert not alone.success
    failure = alone.failure_data_for_node("evidence_bundle")
    assert failure is not None and "GP-EXPORT-002" in failure.user_failure_data.description
    assert export_rows(governed.landscape) == []


def test_the_code_location_holds_the_bundles_checks_and_sensors() -> None:
    from governance_pipeline.definitions import defs

    repo = defs.get_repository_def()
    graph = repo.asset_graph
    keys = {k.path[-1] for k in graph.get_all_asset_keys()}
    assert {"landscape_audit", "evidence_bundle", "soc2_bundle", "executive_debrief"} <= keys
    checks = {k.name: graph.get_check_spec(k) for k in graph.asset_check_keys
              if k.asset_key == AssetKey("landscape_audit")}
    assert set(checks) == {"sweep_clean", "ledger_verified"}
    assert all(spec.blocking for spec in checks.values())
    assert {"evidence_partitions", "approval_sla", "event_delivery"} <= \
        {s.name for s in repo.sensor_defs}
    assert {"export_evidence_bundle", "export_soc2_bundle", "export_executive_debrief"} <= \
        {j.name for j in repo.get_all_jobs()}
