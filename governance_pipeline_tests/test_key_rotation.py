"""Key rotation and revocation on a real Landscape (SQLite and PostgreSQL).

Seals made before a rotation verify after it; a seal made by the retired key after the
rotation, or by a revoked key after its revocation, is a ``key`` finding (GP-KEY-010, exit 5);
each tamper has its clean twin. The rotation and revocation statements are signed, ledgered in
the global chain's operator log, and a forged one proves nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from sqlalchemy import func, select

from governance_pipeline.contracts.clock import ManualClock, to_iso
from governance_pipeline.contracts.errors import GovernanceError
from governance_pipeline.contracts.operator_records import OperatorAction, OperatorResult
from governance_pipeline.contracts.settings import Settings
from governance_pipeline.governance.exports.checkpoint import checkpoint_for
from governance_pipeline.governance.key_management import revoke_key, rotate_key
from governance_pipeline.governance.operator_log import record_operator_action
from governance_pipeline.governance.operator_reads import OperatorFilter, list_operator_events
from governance_pipeline.landscape.key_statements import Rotation
from governance_pipeline.landscape.keys import (
    PRIVATE_KEY_FILE,
    FileKeyProvider,
    KeyProvider,
    KeySource,
    PublicKey,
    Signer,
)
from governance_pipeline.landscape.schema import GLOBAL_SCOPE, ledger_checkpoints, ledger_seals
from governance_pipeline.landscape.signing_keyring import KeyStatus
from governance_pipeline.landscape.store import Landscape
from governance_pipeline.landscape.trust import pin_key
from governance_pipeline.landscape.verify import verify
from governance_pipeline_tests import tamper
from governance_pipeline_tests.bundle_dir_fixtures import record_policy_snapshot

KEY = "key"


def key_findings(landscape: Landscape) -> list[str]:
    return [f.message for f in verify(landscape).findings if f.check == KEY]


def commit_global(landscape: Landscape, clock: ManualClock, n: int = 2) -> None:
    """``n`` global commits (each sealed by the signing key), a minute apart."""
    for _ in range(n):
        clock.advance(60)
        record_policy_snapshot(landscape)


@dataclass
class Rotated:
    old: Signer
    new_key_id: str
    rotated_at: str


def rotate(landscape: Landscape, clock: ManualClock, **kw: object) -> Rotated:
    old = landscape.signer
    clock.advance(60)
    result = rotate_key(landscape, actor="ops", **kw)  # type: ignore[arg-type]
    return Rotated(old, result.new_key_id, result.rotated_at)


def test_seals_before_a_rotation_still_verify_after_it(landscape: Landscape, clock: ManualClock,
                                                      tmp_path: Path, db_url: str) -> None:
    commit_global(landscape, clock)
    assert verify(landscape).ok
    rotated = rotate(landscape, clock)
    assert landscape.signer.key_id == rotated.new_key_id != rotated.old.key_id
    # The new key is in the key file; the old private key is gone.
    on_disk = Signer(FileKeyProvider.from_pem(
        (tmp_path / "keys" / PRIVATE_KEY_FILE).read_bytes(), "test"))
    assert on_disk.key_id == rotated.new_key_id
    assert not list((tmp_path / "keys").glob("*.next"))
    commit_global(landscape, clock)
    report = verify(landscape)
    assert report.ok, report.findings
    keyring = landscape.signing_keyring()
    old, new = keyring.entry(rotated.old.key_id), keyring.entry(rotated.new_key_id)
    assert old is not None and new is not None
    assert (old.status, old.retired_at, old.successor) == (KeyStatus.RETIRED, rotated.rotated_at,
                                                          rotated.new_key_id)
    assert (new.status, new.active_from, new.trusted) == (KeyStatus.ACTIVE, rotated.rotated_at,
                                                          True)
    # Both keys really sealed something.
    with tamper.raw_connection(db_url) as db:
        sealers = {r[0] for r in db.execute("SELECT DISTINCT key_id FROM ledger_seals")}
    assert sealers == {rotated.old.key_id, rotated.new_key_id}


def test_a_seal_by_the_retired_key_after_the_rotation_is_a_key_finding(
        landscape: Landscape, clock: ManualClock, db_url: str) -> None:
    commit_global(landscape, clock)
    rotated = rotate(landscape, clock)
    commit_global(landscape, clock)
    assert verify(landscape).ok  # the twin: the same history, untouched
    with tamper.raw_connection(db_url) as db:
        # Whoever kept the old private key re-signs the newest global seal (dated after the
        # rotation) with it: the signature is valid, the time is not.
        seal_id = tamper.reseal(db, GLOBAL_SCOPE, rotated.old)
    report = verify(landscape)
    found = [f for f in report.findings if f.check == KEY]
    assert [f.key for f in found] == [seal_id], report.findings
    assert f"which was retired at {rotated.rotated_at}" in found[0].message
    assert report.as_dict()["findings"][0]["code"] == "GP-KEY-010"


def test_a_revoked_key_invalidates_what_it_signed_after_the_revocation(
        landscape: Landscape, clock: ManualClock) -> None:
    commit_global(landscape, clock, 1)
    compromised_at = to_iso(clock.advance(30))
    commit_global(landscape, clock, 1)   # sealed by the old key after the compromise
    rotated = rotate(landscape, clock)
    commit_global(landscape, clock, 1)
    result = revoke_key(landscape, rotated.old.key_id, reason="laptop stolen", actor="ops",
                        at=compromised_at)
    assert result.signed_by == rotated.new_key_id and result.revoked_at == compromised_at
    found = key_findings(landscape)
    # The commit after the compromise and the rotation's own unit were sealed by the old key.
    assert len(found) == 2 and all("revoked at" in m and "laptop stolen" in m for m in found)
    # The rotation came after the compromise: revoke pinned the new key, so the keyring holds.
    trust = orjson.loads(landscape.trust_path.read_bytes())
    assert rotated.new_key_id in {k["key_id"] for k in trust["keys"]}
    assert trust["revocations"][0]["key_id"] == rotated.old.key_id


def test_a_revocation_at_the_rotation_leaves_the_history_valid(
        landscape: Landscape, clock: ManualClock) -> None:
    commit_global(landscape, clock)
    rotated = rotate(landscape, clock)
    commit_global(landscape, clock)
    clock.advance(60)
    revoke_key(landscape, rotated.old.key_id, reason="retired for good", actor="ops")
    commit_global(landscape, clock)
    assert verify(landscape).ok
    entry = landscape.signing_keyring().entry(rotated.old.key_id)
    assert entry is not None and entry.status is KeyStatus.REVOKED


def test_a_revocation_in_the_trust_file_survives_its_deletion_from_the_database(
        landscape: Landscape, clock: ManualClock, db_url: str) -> None:
    commit_global(landscape, clock)
    compromised_at = to_iso(clock.now())
    commit_global(landscape, clock)
    rotated = rotate(landscape, clock)
    revoke_key(landscape, rotated.old.key_id, reason="leak", actor="ops", at=compromised_at)
    with tamper.raw_connection(db_url) as db:
        db.execute("DELETE FROM operator_events WHERE action = ?", ("keys.revoke",))
    report = verify(landscape)
    assert any(f.check == "record" and f.table == "operator_events" for f in report.findings)
    assert any(f.check == KEY and "revoked at" in f.message for f in report.findings)


def test_a_forged_rotation_statement_proves_nothing(landscape: Landscape,
                                                    clock: ManualClock) -> None:
    commit_global(landscape, clock)
    assert verify(landscape).ok
    pinned = landscape.signer
    attacker = Signer.generate()
    # A rotation to the attacker's key, signed by the attacker only (the pinned key's
    # signature replaced by one of the attacker's): written through the operator log, so the
    # chain itself is intact and only the statement can tell.
    honest = Rotation.make(pinned, attacker, to_iso(clock.advance(60)))
    forged = Rotation(honest.old_key_id, honest.old_public_key, honest.new_key_id,
                      honest.new_public_key, honest.rotated_at,
                      attacker.sign(honest.message()), honest.new_signature)
    record_operator_action(landscape, action=OperatorAction.KEYS_ROTATE, actor="mallory",
                           inputs=forged.as_inputs())
    report = verify(landscape)
    assert [f.check for f in report.findings] == [KEY], report.findings
    assert f"the old key {pinned.key_id} did not sign this rotation" in \
        report.findings[0].message
    assert not landscape.signing_keyring().trusts(attacker.key_id)


def test_the_retired_key_is_refused_for_signing(landscape: Landscape, clock: ManualClock,
                                                tmp_path: Path) -> None:
    commit_global(landscape, clock)
    rotated = rotate(landscape, clock, keep_old_key=True)
    kept = tmp_path / "keys" / f"ledger_ed25519.{rotated.old.key_id}.retired.pem"
    assert kept.exists()
    stale = Landscape(landscape.engine, tmp_path / "keys", clock=clock,
                      key_source=KeySource(tmp_path / "keys", key_file=kept))
    with pytest.raises(GovernanceError) as refused:
        _ = stale.signer
    assert refused.value.code.code == "GP-KEY-005"
    fresh = Landscape(landscape.engine, tmp_path / "keys", clock=clock)
    assert fresh.signer.key_id == rotated.new_key_id  # the twin: the active key loads


def test_revoke_refusals_are_logged_with_their_codes(landscape: Landscape,
                                                     clock: ManualClock) -> None:
    commit_global(landscape, clock)
    rotated = rotate(landscape, clock)
    cases = [(rotated.new_key_id, None, "GP-KEY-008"), ("0123456789abcdef", None, "GP-KEY-007"),
             (rotated.old.key_id, "2999-01-01T00:00:00Z", "GP-KEY-012"),
             (rotated.old.key_id, "yesterday", "GP-KEY-012")]
    for key_id, at, code in cases:
        with pytest.raises(GovernanceError) as refused:
            revoke_key(landscape, key_id, reason="r", actor="ops", at=at)
        assert refused.value.code.code == code
    revoke_key(landscape, rotated.old.key_id, reason="r", actor="ops")
    with pytest.raises(GovernanceError) as again:
        revoke_key(landscape, rotated.old.key_id, reason="r", actor="ops")
    assert again.value.code.code == "GP-KEY-009"
    log = list_operator_events(landscape, OperatorFilter(
        actions=(OperatorAction.KEYS_REVOKE, OperatorAction.KEYS_ROTATE)))
    assert [(e.action, e.result, e.code) for e in log] == [
        (OperatorAction.KEYS_ROTATE, OperatorResult.OK, None),
        *[(OperatorAction.KEYS_REVOKE, OperatorResult.REFUSED, c) for _, _, c in cases],
        (OperatorAction.KEYS_REVOKE, OperatorResult.OK, None),
        (OperatorAction.KEYS_REVOKE, OperatorResult.REFUSED, "GP-KEY-009")]
    assert verify(landscape).ok  # refused attempts left no statement


def test_a_checkpoint_of_a_scope_sealed_before_the_rotation_builds_after_it(
        landscape: Landscape, clock: ManualClock) -> None:
    commit_global(landscape, clock)
    with landscape.engine.connect():
        before = checkpoint_for(landscape, [GLOBAL_SCOPE])
    rotated = rotate(landscape, clock)
    assert before.seals[0].key_id == rotated.old.key_id
    after = checkpoint_for(landscape, [GLOBAL_SCOPE])  # the rotation's unit, old key
    assert after.seals[0].key_id == rotated.old.key_id
    assert after.seals[0].sealed_at == rotated.rotated_at


class RemoteKey:
    """A provider that never hands out its private key, as an HSM or KMS client would: it
    knows its public key and answers signing requests."""

    def __init__(self) -> None:
        self._device = FileKeyProvider.generate()
        self.requests = 0

    @property
    def key_id(self) -> str:
        return self._device.key_id

    @property
    def public_key(self) -> bytes:
        return self._device.public_key

    @property
    def location(self) -> str:
        return "kms:projects/p/keyRings/r/cryptoKeys/ledger/cryptoKeyVersions/1"

    def sign(self, message: bytes) -> bytes:
        self.requests += 1
        return self._device.sign(message)


def test_any_key_provider_signs_seals_that_verify(db_url: str, tmp_path: Path,
                                                  clock: ManualClock) -> None:
    remote = RemoteKey()
    assert isinstance(remote, KeyProvider) and isinstance(FileKeyProvider.generate(),
                                                          KeyProvider)
    landscape = Landscape.open(db_url, tmp_path / "keys", clock=clock)
    try:
        landscape.use_signer(Signer(remote))
        # Pin the provider's key, as an operator would pin the KMS key's public half.
        landscape.trust_path.write_bytes(orjson.dumps({"version": 1, "keys": [{
            "key_id": remote.key_id, "public_key": remote.public_key.hex(),
            "pinned_at": "2026-01-01T00:00:00+00:00"}]}))
        commit_global(landscape, clock)
        with landscape.engine.connect() as conn:
            seals = conn.execute(select(func.count()).select_from(ledger_seals)).scalar_one()
            notes = conn.execute(select(func.count()).select_from(ledger_checkpoints)).scalar_one()
        # Every seal and its C2SP checkpoint were signed by the provider, nothing else was.
        assert seals > 0 and remote.requests == seals + notes
        assert verify(landscape).ok
        assert verify(landscape, public_key=Signer.generate().public).findings  # wrong key
    finally:
        landscape.dispose()


def test_the_signing_key_can_come_from_the_environment(db_url: str, tmp_path: Path,
                                                       clock: ManualClock) -> None:
    provider = FileKeyProvider.generate()
    settings = Settings.from_env({"GOVERNANCE_HOME": str(tmp_path / "home"),
                                  "GOVERNANCE_DB_URL": db_url,
                                  "GOVERNANCE_SIGNING_KEY": provider.pem().decode()})
    assert "BEGIN PRIVATE KEY" not in repr(settings)
    landscape = Landscape.from_settings(settings, clock=clock)
    try:
        assert landscape.signer.key_id == provider.key_id
        assert landscape.signer.location == "env:GOVERNANCE_SIGNING_KEY"
        assert not (tmp_path / "home" / "keys" / PRIVATE_KEY_FILE).exists()
        # A key injected from outside is never pinned on first use: the operator pins it.
        assert not landscape.trust_path.exists()
        pin_key(landscape.trust_path, landscape.signer.public, replace=False, note="test")
        commit_global(landscape, clock)
        assert verify(landscape).ok
        with pytest.raises(GovernanceError) as nowhere:
            rotate_key(landscape, actor="ops")
        assert nowhere.value.code.code == "GP-KEY-011"
        clock.advance(60)
        target = tmp_path / "secrets" / "next.pem"
        result = rotate_key(landscape, actor="ops", new_key_file=target)
        assert target.exists() and (target.stat().st_mode & 0o777) == 0o600
        assert any("GOVERNANCE_SIGNING_KEY" in n for n in result.notes)
        new = Signer(FileKeyProvider.from_pem(target.read_bytes(), str(target)))
        assert new.key_id == result.new_key_id
        assert PublicKey.from_raw(new.public.raw).key_id in landscape.signing_keyring().entries
    finally:
        landscape.dispose()
    # Until the environment names the new key, the retired one is refused.
    stale = Landscape.from_settings(settings, clock=clock)
    try:
        with pytest.raises(GovernanceError) as refused:
            _ = stale.signer
        assert refused.value.code.code == "GP-KEY-005"
    finally:
        stale.dispose()


def test_a_second_rotation_from_the_retired_key_is_refused(landscape: Landscape,
                                                           clock: ManualClock,
                                                           tmp_path: Path) -> None:
    commit_global(landscape, clock)
    other = Landscape(landscape.engine, tmp_path / "keys", clock=clock)
    assert other.signer.key_id == landscape.signer.key_id  # loaded before the rotation
    rotate(landscape, clock)
    with pytest.raises(GovernanceError) as refused:
        rotate_key(other, actor="ops")  # would fork the keyring: two successors of one key
    assert refused.value.code.code == "GP-KEY-005"
    assert not list((tmp_path / "keys").glob("*.next"))
    assert verify(landscape).ok
