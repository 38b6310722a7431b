"""``governance-pipeline export`` on both backends: gated by the export ladder, written as a
signed bundle that ``verify-bundle`` accepts (and rejects once a byte changes), refused before
any approval is used when the subject, the output directory or the Landscape is wrong.

The Landscape holds a real run of the screening example stopped by its enforced policy (with its
incident). The command line's own entry point (``run_cli``) drives the flows; the installed
console script runs once as a real subprocess for the blocked exit and its message.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader
from sqlalchemy import select, text

from governance_pipeline.cli.main import run_cli
from governance_pipeline.contracts.enums import ExportStatus
from governance_pipeline.contracts.records import ExportRecord
from governance_pipeline.landscape.schema import exports
from governance_pipeline.landscape.store import Landscape
from governance_pipeline_tests import policy_fixtures as pf
from governance_pipeline_tests.approval_fixtures import events_of

CLI = Path(sys.executable).with_name("governance-pipeline")


@dataclass(frozen=True)
class Stopped:
    landscape: Landscape
    home: Path
    run_id: str
    incident_id: str
    key: Path


@pytest.fixture
def stopped(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch,
            clock: Any) -> Iterator[Stopped]:
    """A Landscape whose home is GOVERNANCE_HOME, holding one policy-stopped run (January 2026)."""
    home = tmp_path / "home"
    for var in ("GOVERNANCE_LADDERS_FILE", "GOVERNANCE_ACTOR", "GOVERNANCE_APPROVAL_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("GOVERNANCE_HOME", str(home))
    monkeypatch.setenv("GOVERNANCE_DB_URL", db_url)
    landscape = Landscape.open(db_url, home / "keys", clock=clock)
    outcome = pf.execute(landscape, pf.screening(tmp_path / "pipeline"))
    assert outcome.stopped is not None
    with landscape.engine.connect() as conn:
        incident_id = conn.execute(text("SELECT incident_id FROM incidents WHERE run_id = :r"),
                                   {"r": outcome.run_id}).scalar_one()
    key = tmp_path / "published.pem"
    assert run_cli(["keys", "public", "--out", str(key)]) == 0
    yield Stopped(landscape, home, outcome.run_id, incident_id, key)
    landscape.dispose()


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    capsys.readouterr()
    code = run_cli([*args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def approve(capsys: pytest.CaptureFixture[str], kind: str, subject: str, tenant: str) -> str:
    """An export approval through both stages of the export ladder; returns its token."""
    code, doc = cli(capsys, "approvals", "request", "--export", kind, "--subject", subject,
                    "--tenant", tenant, "--actor", "rita")
    assert code == 0, doc
    aid = doc["approval"]["approval_id"]
    for role, actor in (("compliance", "compliance-officer"), ("security", "security-officer")):
        code, decided = cli(capsys, "approvals", "decide", aid, "approve", "--role", role,
                            "--actor", actor)
        assert code == 0, decided
    return str(doc["token"])


def export_rows(landscape: Landscape) -> list[ExportRecord]:
    with landscape.engine.connect() as conn:
        rows = conn.execute(select(exports).order_by(exports.c.created_at,
                                                     exports.c.export_id)).mappings().all()
    return [ExportRecord.from_row(r) for r in rows]


def pdf_text(path: Path) -> str:
    reader = PdfReader(BytesIO(path.read_bytes()))
    return " ".join((page.extract_text() or "") for page in reader.pages).replace("\n", " ")


def test_soc2_export_is_gated_then_written_once_and_verifies(
        stopped: Stopped, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "soc2"
    code, problem = cli(capsys, "export", "soc2", "--period", "2026-01", "--out", str(out))
    assert code == 4 and problem["code"] == "GP-APPROVAL-020"
    assert ("approvals request --export soc2 --subject 2026-01 --tenant default"
            in problem["detail"])
    assert not out.exists()
    (blocked,) = export_rows(stopped.landscape)
    assert (blocked.status, blocked.reason, blocked.surface, blocked.tenant_id) == \
        (ExportStatus.BLOCKED, "approval_required", "cli:export soc2", "default")
    assert [e["payload"]["export_id"] for e in events_of(stopped.landscape, "export.blocked")] \
        == [blocked.export_id]

    token = approve(capsys, "soc2", "2026-01", "default")
    code, doc = cli(capsys, "export", "soc2", "--period", "2026-01", "--out", str(out),
                    "--approval-token", token, "--actor", "auditor")
    assert code == 0, doc
    assert Path(doc["path"]) == out.resolve()
    assert {"bundle.json", "bundle.pdf", "proofs.json", "VERIFY.md"} <= set(doc["files"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["kind"], manifest["subject"], manifest["export_id"]) == \
        ("soc2", "2026-01", doc["export_id"])
    assert stopped.run_id in json.loads((out / "bundle.json").read_text())["run_ids"]
    written = export_rows(stopped.landscape)[-1]
    assert (written.status, written.bundle_digest, written.path, written.requested_by) == \
        (ExportStatus.WRITTEN, doc["bundle_digest"], str(out.resolve()), "auditor")
    assert doc["content_digest"] in pdf_text(out / "bundle.pdf").replace(" ", "")

    code, verified = cli(capsys, "verify-bundle", str(out), "--key", str(stopped.key))
    assert code == 0 and verified["ok"], verified
    data = bytearray((out / "bundle.pdf").read_bytes())
    data[len(data) // 2] ^= 0x01
    (out / "bundle.pdf").write_bytes(bytes(data))
    code, verified = cli(capsys, "verify-bundle", str(out), "--key", str(stopped.key))
    assert code == 5 and not verified["ok"]
    assert any("bundle.pdf" in f["key"] for f in verified["findings"])

    again = tmp_path / "again"
    code, problem = cli(capsys, "export", "soc2", "--period", "2026-01", "--out", str(again),
                        "--approval-token", token)
    assert code == 4 and problem["code"] == "GP-APPROVAL-005"
    assert not again.exists()
    assert [(r.status, r.reason) for r in export_rows(stopped.landscape)] == [
        (ExportStatus.BLOCKED, "approval_required"), (ExportStatus.WRITTEN, None),
        (ExportStatus.BLOCKED, "already_consumed")]


def test_evidence_and_debrief_of_a_policy_stop(stopped: Stopped, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    token = approve(capsys, "evidence", stopped.run_id, "acme")
    monkeypatch.setenv("GOVERNANCE_APPROVAL_TOKEN", token)  # the token from the environment
    code, doc = cli(capsys, "export", "evidence", stopped.run_id)
    assert code == 0, doc
    default = stopped.home / "exports" / "evidence" / stopped.run_id
    assert Path(doc["path"]) == default.resolve() and doc["tenant_id"] == "acme"
    evidence = json.loads((default / "bundle.json").read_text())
    assert evidence["run"]["status"] == "failed_policy"
    assert [i["incident_id"] for i in evidence["incidents"]] == [stopped.incident_id]
    assert stopped.run_id in pdf_text(default / "bundle.pdf").replace(" ", "")
    monkeypatch.delenv("GOVERNANCE_APPROVAL_TOKEN")

    token = approve(capsys, "debrief", stopped.incident_id, "acme")
    out = tmp_path / "debrief"
    code, doc = cli(capsys, "export", "debrief", stopped.incident_id, "--out", str(out),
                    "--approval-token", token)
    assert code == 0, doc
    debrief = json.loads((out / "bundle.json").read_text())
    assert (debrief["subject"], debrief["run_id"]) == (stopped.incident_id, stopped.run_id)
    text_ = pdf_text(out / "bundle.pdf").replace(" ", "")
    assert stopped.incident_id in text_ and doc["content_digest"] in text_
    for bundle in (default, out):
        code, verified = cli(capsys, "verify-bundle", str(bundle), "--key", str(stopped.key))
        assert code == 0 and verified["proofs_checked"] >= 1, verified


def test_refusals_before_the_guard_keep_the_approval(stopped: Stopped, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    token = approve(capsys, "evidence", stopped.run_id, "acme")
    code, problem = cli(capsys, "export", "evidence", "run_nope", "--approval-token", token)
    assert code == 2 and problem["code"] == "GP-INPUT-001"
    full = tmp_path / "full"
    full.mkdir()
    (full / "old.txt").write_text("an older bundle")
    code, problem = cli(capsys, "export", "evidence", stopped.run_id, "--out", str(full),
                        "--approval-token", token)
    assert code == 2 and problem["code"] == "GP-BUNDLE-002"
    code, problem = cli(capsys, "export", "soc2", "--period", "2026-13", "--approval-token", token)
    assert code == 2 and problem["code"] == "GP-INPUT-002"

    # A tampered row in the run's scope: exit 5 before the guard, the approval is kept.
    with stopped.landscape.engine.begin() as conn:
        conn.execute(text("UPDATE incidents SET summary = 'nothing happened' "
                          "WHERE incident_id = :i"), {"i": stopped.incident_id})
    out = tmp_path / "evidence"
    code, problem = cli(capsys, "export", "evidence", stopped.run_id, "--out", str(out),
                        "--approval-token", token)
    assert code == 5 and problem["code"] == "GP-EXPORT-002"
    assert problem["details"]["finding_count"] >= 1 and not out.exists()
    assert export_rows(stopped.landscape) == []
    code, shown = cli(capsys, "approvals", "list", "--tenant", "acme")
    assert code == 0 and [a["status"] for a in shown["approvals"]] == ["approved"], shown


def test_console_script_blocks_with_exit_4_and_the_command_to_run(stopped: Stopped,
                                                                  tmp_path: Path) -> None:
    out = tmp_path / "debrief"
    proc = subprocess.run([str(CLI), "export", "debrief", stopped.incident_id, "--out", str(out)],
                          check=False, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ))
    assert proc.returncode == 4, proc.stderr
    assert "error GP-APPROVAL-020" in proc.stderr
    assert (f"approvals request --export debrief --subject {stopped.incident_id} --tenant acme"
            in proc.stderr)
    assert not out.exists()
    (blocked,) = export_rows(stopped.landscape)
    assert (blocked.status, blocked.surface) == (ExportStatus.BLOCKED, "cli:export debrief")
