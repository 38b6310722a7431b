"""``hold``, ``purge``, ``erase``, ``explain``, ``verify`` and ``export evidence`` as real
subprocesses of the console script, on both backends. The run is recorded in-process with a
clock set years back, so the commands (on the system clock) find it past its retention."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader

from governance_pipeline.contracts.clock import ManualClock
from governance_pipeline.landscape.store import Landscape
from governance_pipeline_tests.data_protection_fixtures import (
    claims_pipeline,
    run_claims,
    state_snapshot,
)

CLI = Path(sys.executable).with_name("governance-pipeline")


@pytest.fixture
def recorded(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, dict]:
    monkeypatch.setenv("GOVERNANCE_HOME", str(tmp_path))
    clock = ManualClock(datetime(2020, 1, 1, tzinfo=UTC))
    landscape = Landscape.open(db_url, tmp_path / "keys", clock=clock)
    try:
        run_id = run_claims(landscape, clock, claims_pipeline(
            tmp_path, subject_fields=["customer"], retention={"payloads": "200d"}))
    finally:
        landscape.dispose()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVERNANCE_RETENTION")}
    env.update(GOVERNANCE_HOME=str(tmp_path), GOVERNANCE_DB_URL=db_url,
               GOVERNANCE_ACTOR="dpo@example.org")
    return run_id, env


def cli(env: dict[str, str], *args: str, code: int = 0) -> Any:
    proc = subprocess.run([str(CLI), *args], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    if "--json" in args:
        return json.loads(proc.stdout)
    return proc


def test_hold_erase_purge_and_verify_from_the_command_line(
        recorded: tuple[str, dict], db_url: str, tmp_path: Path) -> None:
    run_id, env = recorded
    hold = cli(env, "hold", "add", "--run", run_id, "--reason", "case 1", "--json")
    assert hold["placed_by"] == "dpo@example.org" and hold["active"]
    refused = cli(env, "purge", "--run", run_id, code=4)
    assert "error GP-RETENTION-005" in refused.stderr and "fix: " in refused.stderr
    listed = cli(env, "hold", "list", "--json")["holds"]
    assert [h["hold_id"] for h in listed] == [hold["hold_id"]]
    cli(env, "hold", "remove", hold["hold_id"], "--reason", "case closed")

    erased = cli(env, "erase", "--field", "customer", "--value", "customer-1",
                 "--reason", "GDPR request 1", "--json")
    assert erased["actor"] == "dpo@example.org" and erased["row_count"] == 2
    note = cli(env, "explain", run_id, "--row", "0", "--json")["source_payload"]["note"]
    assert note == f"erased on {erased['at'][:10]} (GDPR request 1)"
    text = cli(env, "explain", run_id, "--row", "0").stdout
    assert "erased on" in text and "customer-1" not in text

    plan = cli(env, "purge", "--dry-run", "--json")
    assert plan["dry_run"] and [r["run_id"] for r in plan["runs"]] == [run_id]
    done = cli(env, "purge", "--reason", "retention", "--json")
    assert done["purge_id"] and done["payload_count"] == plan["payload_count"] > 0

    report = cli(env, "verify", "--json")
    assert report["ok"]
    redacted = report["redacted_payloads"]
    assert redacted["purged"]["count"] == done["payload_count"]
    assert redacted["erased"]["count"] == erased["payload_count"]
    summary = cli(env, "verify").stdout
    assert f"{done['payload_count']} purged" in summary and "; OK" in summary

    out = tmp_path / "bundle"
    cli(env, "export", "evidence", run_id, "--out", str(out), "--approval-token",
        _approval(env, run_id))
    assert cli(env, "verify-bundle", str(out), "--json")["ok"]
    bundle = json.loads((out / "bundle.json").read_text(encoding="utf-8"))
    dp = bundle["data_protection"]
    assert [e["erasure_id"] for e in dp["erasures"]] == [erased["erasure_id"]]
    assert [p["purge_id"] for p in dp["purges"]] == [done["purge_id"]]
    assert "customer-1" not in (out / "bundle.json").read_text(encoding="utf-8")
    pdf = PdfReader(io.BytesIO((out / "bundle.pdf").read_bytes()))
    text = "".join(page.extract_text() for page in pdf.pages).replace("\n", "")
    assert "Data protection" in text and erased["erasure_id"] in text
    assert "GDPR request 1" in text


def _approval(env: dict[str, str], run_id: str) -> str:
    """An evidence-export approval through both stages of the export ladder; its token."""
    doc = cli(env, "approvals", "request", "--export", "evidence", "--subject", run_id,
              "--tenant", "acme", "--actor", "rita", "--json")
    for role, actor in (("compliance", "compliance-officer"), ("security", "security-officer")):
        cli(env, "approvals", "decide", doc["approval"]["approval_id"], "approve", "--role", role,
            "--actor", actor, "--json")
    return str(doc["token"])


@pytest.mark.parametrize("args, extra_env, code, error", [
    (("erase", "--field", "email", "--value", "x", "--reason", "r"), {}, 2, "GP-ERASE-001"),
    (("erase", "--run", "run_missing", "--row", "0", "--reason", "r"), {}, 2, "GP-ERASE-003"),
    (("purge", "--run", "run_missing"), {}, 2, "GP-RETENTION-003"),
    (("purge",), {"GOVERNANCE_RETENTION_PAYLOADS": "30d"}, 2, "GP-RETENTION-002"),
])  # every code is tested in-process (test_erasure, test_retention); here: the CLI contract
def test_bad_input_exits_with_code_and_fix_and_changes_nothing(
        recorded: tuple[str, dict], db_url: str, tmp_path: Path, args: tuple[str, ...],
        extra_env: dict[str, str], code: int, error: str) -> None:
    _, env = recorded
    landscape = Landscape.open(db_url, tmp_path / "keys")
    try:
        before = state_snapshot(landscape)
        proc = cli({**env, **extra_env}, *args, code=code)
        assert f"error {error}:" in proc.stderr and "\nfix: " in proc.stderr
        assert "Traceback" not in proc.stderr
        problem = cli({**env, **extra_env}, *args, "--json", code=code)
        assert problem["code"] == error and problem["fix"]
        assert state_snapshot(landscape) == before
    finally:
        landscape.dispose()
