"""Signed approval decisions travel in the bundle and ``verify-bundle`` checks them offline.

On both backends: the export ladder is replaced (``GOVERNANCE_LADDERS_FILE``) by one whose
approvers have OpenSSH keys; both stages approve with ``--key``; the SOC 2 bundle of the month
carries the approval with its ladder copy and signatures and verifies. Then someone holding the
ledger key — who can re-sign manifest and attestation, but not the approvers' keys — edits a
decision: only the approval check catches it. Its twin (re-signing without an edit) verifies.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from governance_pipeline.cli.main import run_cli
from governance_pipeline.governance.exports.attestation import ATTESTATION_FILE, envelope_bytes
from governance_pipeline.governance.exports.bundle_format import json_bytes
from governance_pipeline.landscape.keys import Signer, load_or_create_signer

ACTORS = {"compliance": "carl", "security": "sam"}


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    capsys.readouterr()
    code = run_cli([*args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def resign_all(bundle: Path, signer: Signer, edit: Any = None) -> None:
    """What the ledger key's holder can do: edit bundle.json, then re-sign the whole bundle."""
    content = json.loads((bundle / "bundle.json").read_bytes())
    if edit is not None:
        edit(content)
        (bundle / "bundle.json").write_bytes(json_bytes(content))
    manifest = json.loads((bundle / "manifest.json").read_bytes())
    for name in manifest["files"]:
        data = (bundle / name).read_bytes()
        manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    body = json_bytes(manifest)
    (bundle / "manifest.json").write_bytes(body)
    (bundle / "manifest.sig").write_bytes((signer.sign(body) + "\n").encode())
    statement = json.loads(base64.b64decode(json.loads(
        (bundle / ATTESTATION_FILE).read_bytes())["payload"]))
    for subject in statement["subject"]:
        subject["digest"]["sha256"] = hashlib.sha256(
            (bundle / subject["name"]).read_bytes()).hexdigest()
    (bundle / ATTESTATION_FILE).write_bytes(envelope_bytes(statement, signer))


def test_signed_decisions_in_a_soc2_bundle_are_checked_offline(
        tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    keys = {actor: Ed25519PrivateKey.generate() for actor in ACTORS.values()}
    files = {}
    for actor, key in keys.items():
        files[actor] = tmp_path / f"{actor}_ed25519"
        files[actor].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                   serialization.PrivateFormat.OpenSSH,
                                                   serialization.NoEncryption()))
    ladders = tmp_path / "ladders.yaml"
    ladders.write_text(json.dumps({"ladders": {"export": {"stages": [
        {"name": role, "role": role, "approvers": [actor], "keys": {
            actor: keys[actor].public_key().public_bytes(
                serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()}}
        for role, actor in ACTORS.items()]}}}))
    home = tmp_path / "home"
    monkeypatch.setenv("GOVERNANCE_HOME", str(home))
    monkeypatch.setenv("GOVERNANCE_DB_URL", db_url)
    monkeypatch.setenv("GOVERNANCE_LADDERS_FILE", str(ladders))
    monkeypatch.delenv("GOVERNANCE_APPROVAL_TOKEN", raising=False)
    period = datetime.now(UTC).strftime("%Y-%m")  # the CLI runs on the system clock

    code, req = cli(capsys, "approvals", "request", "--export", "soc2", "--subject", period,
                    "--tenant", "default", "--actor", "rita")
    assert code == 0, req
    for role, actor in ACTORS.items():
        code, doc = cli(capsys, "approvals", "decide", req["approval"]["approval_id"],
                        "approve", "--role", role, "--actor", actor, "--key", str(files[actor]))
        assert code == 0, doc
    out = tmp_path / "soc2"
    code, doc = cli(capsys, "export", "soc2", "--period", period, "--out", str(out),
                    "--approval-token", req["token"])
    assert code == 0, doc

    (approval,) = json.loads((out / "bundle.json").read_bytes())["approvals"]
    assert approval["signatures"] == "required"
    assert all(d["signature"] is not None for d in approval["decisions"])
    code, verified = cli(capsys, "verify-bundle", str(out))
    assert code == 0 and verified["ok"], verified

    signer = load_or_create_signer(home / "keys")
    resign_all(out, signer)  # the twin: a re-signed, unedited bundle still verifies
    assert cli(capsys, "verify-bundle", str(out))[0] == 0

    def swap_actor(content: dict[str, Any]) -> None:
        content["approvals"][0]["decisions"][1]["actor"] = "carl"
    resign_all(out, signer, swap_actor)
    code, verified = cli(capsys, "verify-bundle", str(out))
    assert code == 5
    assert [f["check"] for f in verified["findings"]] == ["approval"], verified
    assert "another decision" in verified["findings"][0]["message"]
