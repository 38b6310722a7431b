"""``governance-pipeline approvals`` on both backends: the command line's own entry point
(``run_cli``, as the console script calls it) for the flows, and the installed console script
as a real subprocess for the token-once output and exit 4."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from governance_pipeline.cli.main import run_cli

ROOT = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).with_name("governance-pipeline")


@pytest.fixture
def home(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("GOVERNANCE_HOME", str(home))
    monkeypatch.setenv("GOVERNANCE_DB_URL", db_url)
    monkeypatch.delenv("GOVERNANCE_LADDERS_FILE", raising=False)
    monkeypatch.delenv("GOVERNANCE_ACTOR", raising=False)
    return home


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    capsys.readouterr()
    code = run_cli([*args, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out)


def tier2_pipeline(tmp_path: Path) -> Path:
    """The shipped linear example with declared personal data: risk tier 2."""
    text = (ROOT / "examples/pipelines/claims_linear.yaml").read_text(encoding="utf-8")
    text = text.replace("../data/claims.csv", str(ROOT / "examples/data/claims.csv"))
    path = tmp_path / "claims_pii.yaml"
    path.write_text(text + "\npii_fields: [customer]\n", encoding="utf-8")
    return path


def test_pipeline_approval_through_a_two_stage_ladder(home: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    pipeline = str(tier2_pipeline(tmp_path))
    code, doc = cli(capsys, "approvals", "request", pipeline, "--actor", "rita")
    assert code == 0
    token, approval = doc["token"], doc["approval"]
    aid = approval["approval_id"]
    assert token.startswith("gpa_") and "shown once" in doc["warning"]
    assert approval["ladder"] == "pipeline_tier2" and approval["tenant_id"] == "acme"
    assert approval["subject_hash"].startswith("sha256:")
    assert [s["status"] for s in approval["stages"]] == ["active", "waiting"]

    code, problem = cli(capsys, "approvals", "consume", token, pipeline, "--actor", "ci")
    assert code == 4 and problem["code"] == "GP-APPROVAL-007"
    assert problem["details"]["reason"] == "not_approved"

    code, problem = cli(capsys, "approvals", "decide", aid, "approve", "--role", "compliance",
                        "--actor", "compliance-officer")
    assert code == 2 and problem["code"] == "GP-APPROVAL-010"  # not the active stage's role
    code, doc = cli(capsys, "approvals", "decide", aid, "approve", "--role", "data_owner",
                    "--actor", "data-owner", "--reason", "ok")
    assert code == 0 and doc["approval"]["stages"][0]["status"] == "approved"
    code, doc = cli(capsys, "approvals", "decide", aid, "approve", "--role", "compliance",
                    "--actor", "compliance-officer")
    assert code == 0 and doc["approval"]["status"] == "approved"

    code, doc = cli(capsys, "approvals", "consume", token, pipeline, "--actor", "ci",
                    "--for", "run_1")
    assert code == 0
    assert doc["approval"]["status"] == "consumed" and doc["approval"]["consumed_for"] == "run_1"
    code, problem = cli(capsys, "approvals", "consume", token, pipeline, "--actor", "ci")
    assert code == 4 and problem["code"] == "GP-APPROVAL-005"
    assert problem["details"] == {"reason": "already_consumed", "approval_id": aid}

    code, listed = cli(capsys, "approvals", "list", "--status", "consumed")
    assert code == 0 and [a["approval_id"] for a in listed["approvals"]] == [aid]


def test_export_approval_with_delegation_reset_and_refusals(
        home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    ladders = tmp_path / "ladders.yaml"
    ladders.write_text("ladders:\n  export:\n    stages:\n"
                       "      - {name: compliance, role: compliance, approvers: [carl, rita]}\n"
                       "      - {name: security, role: security, approvers: [sam], "
                       "sla_seconds: 60}\n", encoding="utf-8")
    monkeypatch.setenv("GOVERNANCE_LADDERS_FILE", str(ladders))
    monkeypatch.setenv("GOVERNANCE_ACTOR", "rita")
    code, doc = cli(capsys, "approvals", "request", "--export", "soc2", "--subject", "2026-01",
                    "--tenant", "acme")
    assert code == 0
    aid, token = doc["approval"]["approval_id"], doc["token"]
    assert doc["approval"]["requested_by"] == "rita"
    assert doc["approval"]["stages"][1]["approvers"] == ["sam"]

    code, problem = cli(capsys, "approvals", "decide", aid, "approve", "--role", "compliance")
    assert code == 2 and "cannot approve" in problem["detail"]  # rita requested it
    code, doc = cli(capsys, "approvals", "decide", aid, "reject", "--role", "compliance",
                    "--actor", "carl", "--reason", "period not closed")
    assert code == 0 and doc["approval"]["status"] == "rejected"
    code, doc = cli(capsys, "approvals", "reset", aid, "--reason", "period closed")
    assert code == 0 and doc["approval"]["round"] == 1
    code, doc = cli(capsys, "approvals", "decide", aid, "approve", "--role", "compliance",
                    "--actor", "carl")
    assert code == 0
    code, doc = cli(capsys, "approvals", "delegate", aid, "--role", "security", "--to", "sue",
                    "--actor", "sam", "--reason", "holiday")
    assert code == 0 and doc["approval"]["delegations"][0]["to_actor"] == "sue"
    code, doc = cli(capsys, "approvals", "decide", aid, "approve", "--role", "security",
                    "--actor", "sue")
    assert code == 0 and doc["approval"]["status"] == "approved"
    assert doc["approval"]["decisions"][-1]["delegated_from"] == "sam"

    code, problem = cli(capsys, "approvals", "consume", token, "--export", "soc2", "--subject",
                        "2026-01", "--tenant", "other")
    assert code == 4 and problem["details"]["reason"] == "tenant_mismatch"
    code, doc = cli(capsys, "approvals", "show", aid)
    assert code == 0 and doc["approval"]["status"] == "approved"
    code, problem = cli(capsys, "approvals", "show", "appr_missing")
    assert code == 2 and problem["code"] == "GP-APPROVAL-012"
    code, problem = cli(capsys, "approvals", "request", "--export", "soc2")
    assert code == 2 and problem["code"] == "GP-INPUT-002"


def test_the_console_script_shows_the_token_once_and_exits_4(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("GOVERNANCE_DB_URL", "GOVERNANCE_LADDERS_FILE", "GOVERNANCE_ACTOR")}
    env["GOVERNANCE_HOME"] = str(tmp_path / "home")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(CLI), "approvals", *args], env=env, capture_output=True,
                              text=True, timeout=120, stdin=subprocess.DEVNULL)

    made = run("request", "--export", "evidence", "--subject", "run_1", "--actor", "rita")
    assert made.returncode == 0, made.stderr
    (token_line,) = [line for line in made.stdout.splitlines() if line.startswith("token: ")]
    token = token_line.removeprefix("token: ")
    assert "shown once" in made.stderr
    listed = run("list", "--json")
    assert token not in listed.stdout and json.loads(listed.stdout)["approvals"][0][
        "status"] == "pending"
    refused = run("consume", token, "--export", "evidence", "--subject", "run_1")
    assert refused.returncode == 4
    assert "GP-APPROVAL-007" in refused.stderr and "fix:" in refused.stderr
