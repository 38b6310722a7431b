"""``verify`` trusts the pinned key, not the key file in GOVERNANCE_HOME.

The attack: replace keys/ with a new key and re-sign every seal with it, consistently. Trusting
the key file, verify would pass; trusting the key pinned when the home was created, it exits 5
naming every seal. Run on SQLite and PostgreSQL, through the real CLI.
"""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import update

from governance_pipeline.contracts.signed_note import parse_note, sign_note
from governance_pipeline.landscape import ledger
from governance_pipeline.landscape.checkpoints import public_key_raw
from governance_pipeline.landscape.database import create_landscape_engine
from governance_pipeline.landscape.keys import PRIVATE_KEY_FILE, Signer
from governance_pipeline.landscape.schema import ledger_checkpoints, ledger_seals
from governance_pipeline.landscape.verify_chain import raw_select
from governance_pipeline_tests.test_cli import demo, run


def _swap_key_and_resign(home: Path, db_url: str) -> Signer:
    """What an attacker with write access to the DB and keys/ does: a new key, every seal and
    checkpoint re-signed with it, so the Landscape is consistent with the key file again."""
    attacker = Signer.generate()
    pem = attacker.private_key.private_bytes(serialization.Encoding.PEM,
                                             serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption())
    (home / "keys" / PRIVATE_KEY_FILE).write_bytes(pem)
    engine = create_landscape_engine(db_url)
    try:
        with engine.begin() as conn:
            seals = list(conn.execute(raw_select(ledger_seals)).mappings())
            assert seals, "the demo sealed its run"
            for seal in seals:
                message = ledger.seal_message(scope=seal["scope"], seq=seal["seq"],
                                              head_hash=seal["head_hash"],
                                              key_id=attacker.key_id,
                                              sealed_at=seal["sealed_at"])
                conn.execute(update(ledger_seals)
                             .where(ledger_seals.c.seal_id == seal["seal_id"])
                             .values(key_id=attacker.key_id, signature=attacker.sign(message)))
            # ... and every C2SP checkpoint: the same text, signed under the same origin.
            for cp in list(conn.execute(raw_select(ledger_checkpoints)).mappings()):
                body, _ = parse_note(cp["note"])
                origin = body.split("\n", 1)[0]
                note = sign_note(body, origin, lambda m: bytes.fromhex(attacker.sign(m)),
                                 public_key_raw(attacker.public))
                conn.execute(update(ledger_checkpoints).where(
                    ledger_checkpoints.c.scope == cp["scope"],
                    ledger_checkpoints.c.tree_size == cp["tree_size"]).values(note=note))
    finally:
        engine.dispose()
    return attacker


def _write_public(path: Path, signer: Signer) -> Path:
    path.write_bytes(signer.public.pem())
    return path


def test_a_consistently_swapped_key_fails_verify_against_the_pinned_key(
        tmp_path: Path, db_url: str) -> None:
    home = tmp_path / "home"
    demo(home, db_url)
    clean = run(home, "verify", "--json", db_url=db_url)
    assert clean.code == 0, clean.err
    pinned = json.loads((home / "trusted_keys.json").read_text())["keys"][0]["key_id"]
    assert clean.json()["trust"] == {"key_id": pinned, "source": "pinned",
                                     "location": str(home / "trusted_keys.json"),
                                     "local_signing_key": pinned}
    human = run(home, "verify", db_url=db_url)
    assert f"seals checked against key {pinned} (pinned in {home / 'trusted_keys.json'})" \
        in human.out

    attacker = _swap_key_and_resign(home, db_url)
    # The twin: against the attacker's own key the re-signed Landscape is consistent ...
    own = run(home, "verify", "--public-key", str(_write_public(tmp_path / "a.pem", attacker)),
              db_url=db_url)
    assert own.code == 0, own.out + own.err
    assert "given by --public-key" in own.out
    # ... so only the pin tells: verify by default exits 5, naming every seal and both keys.
    swapped = run(home, "verify", "--json", db_url=db_url)
    assert swapped.code == 5, swapped.err
    doc = swapped.json()
    assert doc["problem"]["code"] == "GP-AUDIT-005"
    seals = [f for f in doc["findings"] if f["table"] == "ledger_seals"]
    assert seals and all(f"sealed by unknown key {attacker.key_id} (trusted key is {pinned})"
                         in f["message"] for f in seals)
    assert doc["trust"]["local_signing_key"] == attacker.key_id != doc["trust"]["key_id"]
    human = run(home, "verify", db_url=db_url)
    assert human.code == 5 and "not the trusted key" in human.err


def test_pinning_the_new_key_on_purpose_is_what_makes_it_trusted(
        tmp_path: Path, db_url: str) -> None:
    home = tmp_path / "home"
    demo(home, db_url)
    rotated = _swap_key_and_resign(home, db_url)
    refused = run(home, "keys", "pin", db_url=db_url)
    assert refused.code == 2 and refused.err.startswith("error GP-KEY-003: ")
    assert rotated.key_id in refused.err
    assert run(home, "verify", db_url=db_url).code == 5
    assert run(home, "keys", "pin", "--replace", db_url=db_url).code == 0
    result = run(home, "verify", db_url=db_url)
    assert result.code == 0, result.out + result.err
    assert f"key {rotated.key_id} (pinned in" in result.out


def test_a_deleted_trust_file_is_not_a_fallback_to_the_key_file(tmp_path: Path,
                                                                db_url: str) -> None:
    home = tmp_path / "home"
    demo(home, db_url)
    (home / "trusted_keys.json").unlink()
    result = run(home, "verify", db_url=db_url)
    assert result.code == 5 and result.err.startswith("error GP-KEY-004: ")
    assert "\nfix: " in result.err and "keys pin" in result.err
    assert run(home, "keys", "pin", db_url=db_url).code == 0
    assert run(home, "verify", db_url=db_url).code == 0


def test_the_published_key_can_be_pinned_in_an_operator_trust_file(tmp_path: Path) -> None:
    home, trust = tmp_path / "home", tmp_path / "operator" / "trusted.json"
    demo(home)  # its first key is pinned in the home's default trust file
    published = tmp_path / "published.pem"
    assert run(home, "keys", "public", "--out", str(published)).code == 0
    assert run(home, "verify", GOVERNANCE_TRUSTED_KEYS=str(trust)).code == 5  # nothing pinned
    pinned = run(home, "keys", "pin", "--public-key", str(published), "--json",
                 GOVERNANCE_TRUSTED_KEYS=str(trust))
    assert pinned.code == 0 and pinned.json()["trust_file"] == str(trust)
    result = run(home, "verify", GOVERNANCE_TRUSTED_KEYS=str(trust))
    assert result.code == 0 and f"(pinned in {trust})" in result.out
    other = tmp_path / "other.pem"
    other.write_bytes(Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    assert run(home, "keys", "pin", "--public-key", str(other), "--replace",
               GOVERNANCE_TRUSTED_KEYS=str(trust)).code == 0
    assert run(home, "verify", GOVERNANCE_TRUSTED_KEYS=str(trust)).code == 5


def test_a_first_key_is_pinned_where_the_operator_keeps_the_trust_file(tmp_path: Path) -> None:
    home, trust = tmp_path / "home", tmp_path / "operator" / "trusted.json"
    demo_result = run(home, "demo", GOVERNANCE_TRUSTED_KEYS=str(trust))
    assert demo_result.code == 0, demo_result.err
    assert trust.is_file() and not (home / "trusted_keys.json").exists()
    assert run(home, "verify", GOVERNANCE_TRUSTED_KEYS=str(trust)).code == 0


def test_a_corrupt_trust_file_is_named_with_its_fix(tmp_path: Path) -> None:
    home = tmp_path / "home"
    demo(home)
    (home / "trusted_keys.json").write_text('{"version": 1, "keys": [{"key_id": "x"}]}')
    result = run(home, "verify")
    assert result.code == 2 and result.err.startswith("error GP-KEY-002: ")
    assert "Traceback" not in result.err
