"""Signed approval decisions (issue 13 point 6), on both backends.

Refused, each with its must-pass twin: an unsigned decision under a signed ladder, a decision
signed by a key not listed for that stage/approver, a signature replayed from another approval
or round, a signature that does not verify. A refusal changes nothing and is recorded. Signed
decisions land in the ledger and in the bundle JSON, where they are checked offline; the real
CLI signs with an OpenSSH key generated here.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from governance_pipeline.contracts.enums import Decision
from governance_pipeline.contracts.errors import ConfigError, GovernanceError
from governance_pipeline.governance.approvals import ApprovalService
from governance_pipeline.governance.approvals.decision_keys import (
    SignedDecision,
    fingerprint,
    load_public_key,
    sign_decision,
)
from governance_pipeline.governance.approvals.ladders import (
    LadderCatalog,
    LadderSpec,
    StageSpec,
    parse_ladders,
)
from governance_pipeline.governance.exports.reads import approval_info
from governance_pipeline.governance.exports.verify_approvals import approval_problems
from governance_pipeline.landscape.schema import GLOBAL_SCOPE
from governance_pipeline.landscape.store import Landscape
from governance_pipeline.landscape.verify import verify
from governance_pipeline_tests.approval_fixtures import REQUESTER, TENANT, events_of, subject

CLI = Path(sys.executable).with_name("governance-pipeline")
KEYS = {name: Ed25519PrivateKey.generate() for name in ("olga", "oscar", "carl")}


def openssh(name: str) -> str:
    return KEYS[name].public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode() + f" {name}@x"


def pem(name: str) -> str:
    return KEYS[name].public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def signed_ladder(**extra: Any) -> LadderSpec:
    return LadderSpec(stages=[
        StageSpec(name="data_owner", role="data_owner", approvers=["olga", "oscar"],
                  keys={"olga": openssh("olga"), "oscar": pem("oscar")}),
        StageSpec(name="compliance", role="compliance", approvers=["carl"],
                  keys={"carl": openssh("carl")})], **extra)


@pytest.fixture
def service(landscape: Landscape) -> ApprovalService:
    return ApprovalService(landscape, ladders=LadderCatalog({
        "signed": signed_ladder(), "demo": signed_ladder(signatures="unsigned")}))


def request(service: ApprovalService, ladder: str = "signed", text: str = "v1") -> str:
    approval, _ = service.request(tenant_id=TENANT, subject_type="pipeline",
                                  subject_hash=subject(text), subject_ref=text,
                                  requested_by=REQUESTER, ladder=ladder)
    return approval.approval_id


def signed_by(service: ApprovalService, aid: str, actor: str, role: str, key: str,
              decision: Decision = Decision.APPROVE) -> SignedDecision:
    return sign_decision(service.decision_statement(aid, actor=actor, role=role,
                                                    decision=decision), KEYS[key])


def refused(service: ApprovalService, aid: str, code: str, **kw: Any) -> None:
    before = service.get(aid)
    with pytest.raises(GovernanceError) as err:
        service.decide(aid, decision=Decision.APPROVE, **kw)
    assert err.value.code.code == code, err.value
    after = service.get(aid)
    assert after.decisions == before.decisions and after.stages == before.stages  # unchanged
    last = events_of(service.landscape, "approval.decision_refused")[-1]["payload"]
    assert last["code"] == code and last["approval_id"] == aid


def test_a_signed_approval_is_stored_ledgered_and_checkable_offline(
        service: ApprovalService, landscape: Landscape) -> None:
    aid = request(service)
    signed = signed_by(service, aid, "olga", "data_owner", "olga")
    view = service.decide(aid, actor="olga", role="data_owner", decision=Decision.APPROVE,
                          signed=signed)
    assert view.stages[0].status.value == "approved"
    (stored,) = view.signatures
    assert stored.key_fingerprint == fingerprint(KEYS["olga"].public_key())
    assert json.loads(stored.statement_json)["approval_id"] == aid
    assert view.as_dict()["decisions"][0]["key_fingerprint"] == stored.key_fingerprint
    assert verify(landscape, GLOBAL_SCOPE).ok  # written through the recorder: in the ledger
    with landscape.engine.connect() as conn:
        info = approval_info(conn, view.approval)
    assert info.signatures == "required" and info.decisions[0].signature is not None
    assert approval_problems({"approvals": [info.model_dump(mode="json")]}) == []


def test_an_unsigned_decision_under_a_signed_ladder_is_refused(service: ApprovalService) -> None:
    aid = request(service)
    refused(service, aid, "GP-SIGN-001", actor="olga", role="data_owner")
    service.decide(aid, actor="olga", role="data_owner", decision=Decision.APPROVE,  # twin
                   signed=signed_by(service, aid, "olga", "data_owner", "olga"))


def test_a_signature_by_a_key_not_listed_for_the_approver_is_refused(
        service: ApprovalService) -> None:
    aid = request(service)
    # oscar's key is listed, but for oscar: it does not prove olga
    refused(service, aid, "GP-SIGN-002", actor="olga", role="data_owner",
            signed=signed_by(service, aid, "olga", "data_owner", "oscar"))
    # carl's key is listed for carl in another stage only
    refused(service, aid, "GP-SIGN-002", actor="olga", role="data_owner",
            signed=signed_by(service, aid, "olga", "data_owner", "carl"))
    service.decide(aid, actor="oscar", role="data_owner", decision=Decision.APPROVE,  # twin
                   signed=signed_by(service, aid, "oscar", "data_owner", "oscar"))


def test_a_signature_replayed_from_another_approval_is_refused(service: ApprovalService) -> None:
    first, second = request(service, text="a"), request(service, text="b")
    from_first = signed_by(service, first, "olga", "data_owner", "olga")
    refused(service, second, "GP-SIGN-003", actor="olga", role="data_owner", signed=from_first)
    service.decide(first, actor="olga", role="data_owner", decision=Decision.APPROVE,
                   signed=from_first)  # twin: where it was made for, it holds
    service.decide(second, actor="olga", role="data_owner", decision=Decision.APPROVE,
                   signed=signed_by(service, second, "olga", "data_owner", "olga"))


def test_a_signature_replayed_from_another_round_is_refused(service: ApprovalService) -> None:
    aid = request(service)
    round0 = signed_by(service, aid, "olga", "data_owner", "olga")
    service.decide(aid, actor="olga", role="data_owner", decision=Decision.APPROVE, signed=round0)
    service.reset(aid, actor=REQUESTER, reason="the subject changed")
    refused(service, aid, "GP-SIGN-003", actor="olga", role="data_owner", signed=round0)
    view = service.decide(aid, actor="olga", role="data_owner", decision=Decision.APPROVE,
                          signed=signed_by(service, aid, "olga", "data_owner", "olga"))
    assert [d.round for d in view.decisions] == [0, 1]


def test_a_statement_for_another_decision_or_a_broken_signature_is_refused(
        service: ApprovalService) -> None:
    aid = request(service)
    reject = signed_by(service, aid, "olga", "data_owner", "olga", Decision.REJECT)
    refused(service, aid, "GP-SIGN-003", actor="olga", role="data_owner", signed=reject)
    good = signed_by(service, aid, "olga", "data_owner", "olga")
    raw = bytearray(base64.b64decode(good.signature))
    raw[0] ^= 1
    broken = SignedDecision(good.statement, base64.b64encode(bytes(raw)).decode(),
                            good.key_fingerprint)
    refused(service, aid, "GP-SIGN-004", actor="olga", role="data_owner", signed=broken)
    service.decide(aid, actor="olga", role="data_owner", decision=Decision.APPROVE, signed=good)


def test_the_unsigned_demo_mode_accepts_claims_and_says_so(service: ApprovalService,
                                                           landscape: Landscape) -> None:
    aid = request(service, "demo")
    view = service.decide(aid, actor="olga", role="data_owner", decision=Decision.APPROVE)
    assert view.signatures == () and view.as_dict()["signatures"] == "unsigned"
    with landscape.engine.connect() as conn:
        info = approval_info(conn, view.approval).model_dump(mode="json")
    assert info["signatures"] == "unsigned" and approval_problems({"approvals": [info]}) == []
    info["signatures"] = "required"  # a bundle cannot upgrade its claim...
    assert approval_problems({"approvals": [info]})
    stored = json.loads(info["ladder_json"])
    info["ladder_json"] = json.dumps({**stored, "signatures": "required"})
    problems = approval_problems({"approvals": [info]})  # ...and a signed ladder needs signatures
    assert [m for _, m in problems] == ["unsigned decision under a signed ladder"]


def test_offline_check_rejects_an_edited_signed_decision(service: ApprovalService,
                                                         landscape: Landscape) -> None:
    aid = request(service)
    view = service.decide(aid, actor="olga", role="data_owner", decision=Decision.APPROVE,
                          signed=signed_by(service, aid, "olga", "data_owner", "olga"))
    with landscape.engine.connect() as conn:
        good = approval_info(conn, view.approval).model_dump(mode="json")
    assert approval_problems({"approvals": [good]}) == []
    for edit, text in [
            (lambda d: d.update(actor="oscar"), "for another decision"),
            (lambda d: d["signature"].update(key_fingerprint="SHA256:x"), "does not list"),
            (lambda d: d.update(signature=None), "unsigned decision")]:
        doc = json.loads(json.dumps(good))
        edit(doc["decisions"][0])
        assert any(text in m for _, m in approval_problems({"approvals": [doc]})), text


def test_ladder_keys_are_validated() -> None:
    assert load_public_key(openssh("olga")) is not None and load_public_key(pem("olga"))
    for stage in ({"keys": {"zed": openssh("olga")}}, {"keys": {"olga": "ssh-rsa AAAA"}}):
        with pytest.raises(ConfigError):
            parse_ladders({"ladders": {"x": {"stages": [
                {"name": "s", "role": "r", "approvers": ["olga"], **stage}]}}}, source="t")
    with pytest.raises(ConfigError, match="have no key"):
        parse_ladders({"ladders": {"x": {"signatures": "required", "stages": [
            {"name": "s", "role": "r", "approvers": ["olga", "oscar"],
             "keys": {"olga": openssh("olga")}}]}}}, source="t")
    ok = parse_ladders({"ladders": {"x": {"stages": [
        {"name": "s", "role": "r", "approvers": ["olga"], "keys": {"olga": openssh("olga")}}]}}},
        source="t")
    assert ok["x"].signature_mode == "required"


def test_cli_subprocess_signs_with_an_openssh_key(tmp_path: Path, db_url: str) -> None:
    key_file = tmp_path / "id_ed25519"
    key_file.write_bytes(KEYS["carl"].private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption()))
    ladders = tmp_path / "ladders.yaml"
    ladders.write_text(json.dumps({"ladders": {"signed_export": {"stages": [
        {"name": "compliance", "role": "compliance", "approvers": ["carl"],
         "keys": {"carl": openssh("carl")}}]}}}))
    env = {**os.environ, "GOVERNANCE_HOME": str(tmp_path / "home"), "GOVERNANCE_DB_URL": db_url,
           "GOVERNANCE_LADDERS_FILE": str(ladders)}

    def run(*args: str) -> tuple[int, Any, str]:
        proc = subprocess.run([str(CLI), *args, "--json"], env=env, capture_output=True,
                              text=True, timeout=120, check=False)
        return proc.returncode, json.loads(proc.stdout), proc.stderr

    code, doc, _ = run("approvals", "request", "--export", "evidence", "--subject", "run_1",
                       "--tenant", TENANT, "--ladder", "signed_export", "--actor", REQUESTER)
    assert code == 0, doc
    aid = doc["approval"]["approval_id"]
    code, doc, _ = run("approvals", "decide", aid, "approve", "--role", "compliance",
                       "--actor", "carl")
    assert code == 2 and doc["code"] == "GP-SIGN-001" and doc["fix"], doc
    code, doc, _ = run("approvals", "decide", aid, "approve", "--role", "compliance",
                       "--actor", "carl", "--key", str(key_file))
    assert code == 0 and doc["approval"]["status"] == "approved", doc
    assert doc["approval"]["decisions"][0]["key_fingerprint"] == fingerprint(
        KEYS["carl"].public_key())


def test_private_keys_load_from_openssh_and_pem_and_bad_ones_are_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    from governance_pipeline.governance.approvals.decision_keys import load_private_key

    key = KEYS["olga"]
    good = {"openssh": key.private_bytes(serialization.Encoding.PEM,
                                         serialization.PrivateFormat.OpenSSH,
                                         serialization.NoEncryption()),
            "pkcs8": key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())}
    for name, data in good.items():
        (tmp_path / name).write_bytes(data)
        assert fingerprint(load_private_key(tmp_path / name).public_key()) == \
            fingerprint(key.public_key())
    bad = {"passphrase": key.private_bytes(  # (OpenSSH encryption would need bcrypt)
               serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
               serialization.BestAvailableEncryption(b"secret")),
           "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
               serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
               serialization.NoEncryption()),
           "garbage": b"not a key\n"}
    for name, data in bad.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ConfigError) as err:
            load_private_key(tmp_path / name)
        assert err.value.code.code == "GP-SIGN-005", name
    with pytest.raises(ConfigError):
        load_private_key(tmp_path / "missing")
