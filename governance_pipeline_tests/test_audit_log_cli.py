"""The operator audit log through the installed console script, on both backends: real
subprocesses run a pipeline (twice, the second under the kill switch), have an export approved,
export refused then granted, and ``audit-log`` lists each action with its actor, inputs' hashes
and result; its filters, and bad filters answered with a GP code and a fix."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

CLI = Path(sys.executable).with_name("governance-pipeline")
ROWS = [{"id": i, "cell": f"row {i}"} for i in range(5)]


@dataclass(frozen=True)
class Env:
    base: dict[str, str]
    pipeline: Path

    def run(self, *args: str, actor: str | None = None, expect: int = 0,
            **extra: str) -> subprocess.CompletedProcess[str]:
        env = dict(self.base, **extra)
        if actor:
            env["GOVERNANCE_ACTOR"] = actor
        done = subprocess.run([str(CLI), *args], env=env, capture_output=True, text=True,
                              timeout=300, stdin=subprocess.DEVNULL)
        assert done.returncode == expect, (args, done.stdout, done.stderr)
        return done

    def json(self, *args: str, **kw: Any) -> Any:
        return json.loads(self.run(*args, "--json", **kw).stdout)

    def log(self, *args: str) -> list[dict[str, Any]]:
        return list(self.json("audit-log", *args)["events"])


@pytest.fixture
def env(tmp_path: Path, db_url: str) -> Env:
    work = tmp_path / "work"
    work.mkdir()
    (work / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS),
                                   encoding="utf-8")
    pipeline = work / "p.yaml"
    pipeline.write_text(
        "name: ops_log\ntenant: acme\nchunk_size: 10\n"
        "source:\n  plugin: jsonl\n  options: {path: in.jsonl}\n  on_success: out\n"
        "sinks:\n  out:\n    plugin: csv\n    options: {path: out.csv}\n", encoding="utf-8")
    base = {k: v for k, v in os.environ.items() if not k.startswith("GOVERNANCE_")}
    base.update(GOVERNANCE_HOME=str(tmp_path / "home"), GOVERNANCE_DB_URL=db_url)
    return Env(base, pipeline)


def test_runs_are_logged_with_the_pipeline_hash_and_the_policy_mode_in_force(env: Env) -> None:
    first = env.json("run", str(env.pipeline), actor="alice")["run_id"]
    second = env.json("run", str(env.pipeline), "--policy-mode", "enforced", actor="bob",
                      GOVERNANCE_POLICY_KILL_SWITCH="1")["run_id"]
    refused = env.run("resume", first, "--json", actor="carol", expect=2)
    assert json.loads(refused.stdout)["code"] == "GP-RUN-002"  # a completed run is final

    runs = env.log("--action", "run.start")
    assert [(e["actor"], e["subject"], e["result"], e["surface"]) for e in runs] == [
        ("alice", first, "ok", "cli"), ("bob", second, "ok", "cli")]
    sha = hashlib.sha256(env.pipeline.read_bytes()).hexdigest()
    assert {e["inputs"]["pipeline_sha256"] for e in runs} == {sha}
    assert [(e["inputs"]["policy_mode"], e["inputs"]["kill_switch"]) for e in runs] == [
        ("advisory", False), ("enforced", True)]
    assert all(len(e["inputs"]["policy_snapshot_hash"]) == 64 for e in runs)
    assert [e["scope"] for e in runs] == [first, second]  # in each run's own first transaction
    (resume,) = env.log("--action", "run.resume")
    assert (resume["actor"], resume["result"], resume["subject"]) == ("carol", "refused", first)
    assert resume["code"] == json.loads(refused.stdout)["code"]
    assert env.json("verify")["ok"] is True


def test_approvals_and_exports_are_logged_and_filtered(env: Env, tmp_path: Path) -> None:
    run_id = env.json("run", str(env.pipeline), actor="alice")["run_id"]
    blocked = env.run("export", "evidence", run_id, "--out", str(tmp_path / "b1"), "--json",
                      actor="eve", expect=4)
    block_code = json.loads(blocked.stdout)["code"]
    made = env.json("approvals", "request", "--export", "evidence", "--subject", run_id,
                    "--tenant", "acme", actor="rita")
    token, approval_id = made["token"], made["approval"]["approval_id"]
    for role, actor in (("compliance", "compliance-officer"), ("security", "security-officer")):
        env.json("approvals", "decide", approval_id, "approve", "--role", role, actor=actor)
    written = env.json("export", "evidence", run_id, "--out", str(tmp_path / "b2"),
                       "--approval-token", token, actor="eve")

    exports = env.log("--action", "export")
    assert [(e["actor"], e["result"], e["code"], e["surface"]) for e in exports] == [
        ("eve", "refused", block_code, "cli"), ("eve", "ok", None, "cli")]
    assert exports[1]["inputs"]["bundle_digest"] == written["bundle_digest"]
    assert exports[1]["inputs"]["approval_id"] == approval_id
    assert exports[0]["subject"] == exports[1]["subject"] == f"evidence {run_id}"
    approvals = env.log("--action", "approval")
    assert [(e["action"], e["actor"]) for e in approvals] == [
        ("approval.request", "rita"), ("approval.approve", "compliance-officer"),
        ("approval.approve", "security-officer")]
    (consumed,) = env.log("--action", "token")
    assert (consumed["actor"], consumed["result"], consumed["subject"]) == ("eve", "ok",
                                                                            approval_id)
    everything = env.run("audit-log", "--json").stdout
    assert token not in everything

    assert [e["action"] for e in env.log("--actor", "security-officer")] == ["approval.approve"]
    assert env.log("--actor", "nobody") == []
    assert [e["result"] for e in env.log("--result", "refused")] == ["refused"]
    assert len(env.log("--since", "1h")) == len(env.log()) == 7  # run, 2 exports, request,
    # 2 approvals, consume
    assert env.log("--until", "2000-01-01") == []
    assert len(env.log("--limit", "2")) == 2
    text = env.run("audit-log", "--actor", "eve").stdout
    assert "export" in text and "refused " + block_code in text


@pytest.mark.parametrize("args,code", [(("--since", "yesterday"), "GP-OPS-001"),
                                       (("--until", "12/01/2026"), "GP-OPS-001"),
                                       (("--action", "approvals"), "GP-OPS-002")])
def test_bad_filters_are_refused_with_a_code_and_a_fix(env: Env, args: tuple[str, ...],
                                                       code: str) -> None:
    done = env.run("audit-log", *args, expect=2)
    assert f"error {code}:" in done.stderr and "fix:" in done.stderr
    assert "Traceback" not in done.stderr
    problem = json.loads(env.run("audit-log", *args, "--json", expect=2).stdout)
    assert problem["code"] == code and problem["fix"]


def test_an_empty_log_says_so(env: Env) -> None:
    assert "no operator actions match" in env.run("audit-log").stdout
    assert env.log() == []
