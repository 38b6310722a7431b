"""The SOC 2 bundle materialised from a real dagster-webserver, as an operator would from the UI.

A run of the screening example stopped by its enforced policy (with its incident) is recorded by
the engine into a GOVERNANCE_HOME (SQLite) on the system clock, so it falls in the month in
progress; the webserver serves the repository's workspace over it and launches runs itself.
Through GraphQL the ``export_soc2_bundle`` job is launched for the month in progress: without an
approval token the run fails and the export is recorded as blocked, nothing is written; with an
approved token the bundle is written, verifies against the Landscape's key, and the run's
blocking checks of the audit trail are recorded as passed.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRunStatus
from dagster_graphql import DagsterGraphQLClient
from sqlalchemy import select

from governance_pipeline.contracts.enums import Decision, ExportKind, ExportStatus
from governance_pipeline.contracts.hashing import sha256_hex
from governance_pipeline.contracts.records import ExportRecord
from governance_pipeline.governance.approvals import ApprovalService
from governance_pipeline.governance.approvals.export_guard import export_subject_hash
from governance_pipeline.governance.exports.verify_bundle import verify_bundle
from governance_pipeline.landscape.schema import exports
from governance_pipeline.landscape.store import Landscape
from governance_pipeline.orchestration import webserver
from governance_pipeline_tests import policy_fixtures as pf
from governance_pipeline_tests.engine_fixtures import EXAMPLES, ROOT

pytestmark = [pytest.mark.slow,
              # dagster_graphql still calls gql the pre-4.0 way; not ours to fix.
              pytest.mark.filterwarnings("ignore::DeprecationWarning:gql.client")]

SERVER_START_S = 180.0
RUN_FINISH_S = 180.0
JOB = "export_soc2_bundle"
TENANT = "default"  # a SOC 2 bundle of every tenant is approved by the default tenant


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    log: Path
    port: int
    home: Path
    db_url: str
    dagster_home: Path

    def landscape(self) -> Landscape:
        return Landscape.open(self.db_url, self.home / "keys")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    home, dagster_home = tmp_path / "home", tmp_path / "dagster"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text(webserver.INSTANCE_YAML, encoding="utf-8")
    db_url = f"sqlite:///{tmp_path / 'landscape.db'}"
    env = {k: v for k, v in os.environ.items() if k not in (
        "GOVERNANCE_LADDERS_FILE", "GOVERNANCE_APPROVAL_TOKEN", "GOVERNANCE_CRASH_AT")}
    env.update(GOVERNANCE_HOME=str(home), GOVERNANCE_DB_URL=db_url,
               DAGSTER_HOME=str(dagster_home),
               GOVERNANCE_PIPELINES_DIR=str(EXAMPLES / "pipelines"))
    ls = Landscape.open(db_url, home / "keys")
    try:
        assert pf.execute(ls, pf.screening(tmp_path / "pipeline")).stopped is not None
    finally:
        ls.dispose()
    port = webserver.free_port()
    log_path = tmp_path / "webserver.log"
    with log_path.open("wb") as log:
        proc = webserver.start(ROOT / "workspace.yaml", port, cwd=tmp_path, env=env, output=log)
        try:
            webserver.wait_for(proc, "the webserver", SERVER_START_S,
                               lambda: webserver.is_up(port), log_path)
            yield Served(proc, log_path, port, home, db_url, dagster_home)
        finally:
            webserver.stop(proc)


def launch(served: Served, partition: str, config: dict[str, Any]) -> tuple[str, DagsterRunStatus]:
    client = DagsterGraphQLClient("127.0.0.1", port_number=served.port)
    run_id = client.submit_job_execution(
        JOB, run_config={"ops": {"soc2_bundle": {"config": config}}},
        tags={"dagster/partition": partition})

    def finished() -> DagsterRunStatus | None:
        status = client.get_run_status(run_id)
        return status if status in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE,
                                    DagsterRunStatus.CANCELED) else None
    return run_id, webserver.wait_for(served.proc, f"run {run_id}", RUN_FINISH_S, finished,
                                      served.log)


def export_rows(landscape: Landscape) -> list[ExportRecord]:
    with landscape.engine.connect() as conn:
        rows = conn.execute(select(exports).order_by(exports.c.created_at,
                                                     exports.c.export_id)).mappings().all()
    return [ExportRecord.from_row(r) for r in rows]


def approved_token(landscape: Landscape, period: str) -> str:
    service = ApprovalService(landscape)
    approval, token = service.request(
        tenant_id=TENANT, subject_type="export",
        subject_hash=export_subject_hash(ExportKind.SOC2, period, TENANT),
        subject_ref=f"soc2 {period}", requested_by="rita", ladder="export")
    for role, actor in (("compliance", "compliance-officer"), ("security", "security-officer")):
        service.decide(approval.approval_id, actor=actor, role=role, decision=Decision.APPROVE)
    return token


def run_events(served: Served, run_id: str, kind: DagsterEventType) -> list[Any]:
    with DagsterInstance.from_config(str(served.dagster_home)) as instance:
        return [e.dagster_event for e in instance.all_logs(run_id, of_type=kind)]


def test_the_soc2_bundle_is_gated_then_materialised_through_the_webserver(
        served: Served) -> None:
    month = datetime.now(UTC).strftime("%Y-%m")
    partition = f"{month}-01"
    exports_dir = served.home / "exports" / "dagster" / "soc2"

    blocked_run, status = launch(served, partition, {"actor": "auditor"})
    assert status is DagsterRunStatus.FAILURE
    failures = run_events(served, blocked_run, DagsterEventType.STEP_FAILURE)
    assert [e.step_key for e in failures] == ["soc2_bundle"]
    assert "GP-APPROVAL-020" in failures[0].step_failure_data.user_failure_data.description
    assert not exports_dir.exists()

    ls = served.landscape()
    try:
        (blocked,) = export_rows(ls)
        assert (blocked.status, blocked.kind, blocked.subject, blocked.surface) == \
            (ExportStatus.BLOCKED, ExportKind.SOC2, month, "dagster:soc2_bundle")
        token = approved_token(ls, month)
    finally:
        ls.dispose()

    done_run, status = launch(served, partition, {"actor": "auditor", "approval_token": token})
    assert status is DagsterRunStatus.SUCCESS, served.log.read_text()[-3000:]

    checks = {e.event_specific_data.check_name: e.event_specific_data.passed
              for e in run_events(served, done_run, DagsterEventType.ASSET_CHECK_EVALUATION)}
    assert checks == {"sweep_clean": True, "ledger_verified": True}
    (materialised,) = [e for e in run_events(served, done_run,
                                             DagsterEventType.ASSET_MATERIALIZATION)
                       if e.asset_key == AssetKey("soc2_bundle")]
    assert materialised.partition == partition
    meta = {k: v.value for k, v in materialised.event_specific_data.materialization
            .metadata.items()}
    path = Path(meta["path"])
    assert path == exports_dir / month / done_run
    assert meta["bundle_digest"] == "sha256:" + sha256_hex((path / "manifest.json").read_bytes())
    assert meta["tenant_id"] == TENANT and "GP-CC7.3" in meta["preview"]

    ls = served.landscape()
    try:
        verification = verify_bundle(path, trusted_key=ls.signer.public)
        assert verification.findings == []
        written = export_rows(ls)[-1]
    finally:
        ls.dispose()
    assert (written.status, written.requested_by, written.path) == \
        (ExportStatus.WRITTEN, "auditor", str(path))
    assert f"sha256:{written.bundle_digest}" == meta["bundle_digest"]
