"""Erasure by subject (crypto-shredding) on a real Landscape, SQLite file and PostgreSQL.

Payloads naming a declared subject are stored as ciphertext; ``erase`` destroys the subject's
data keys and records who, why, when and what (the value's keyed HMAC, never the value). After
it the payloads are unreadable, ``verify`` stays clean and reports them as erased, ``explain``
says "erased on <date> (<reason>)" and a bundle built later carries the erasure record. Refused
erasures (unknown field, value, run or row; nothing left to erase) change nothing at all.
"""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest
from pypdf import PdfReader
from sqlalchemy import select, update

from governance_pipeline.contracts.clock import ManualClock
from governance_pipeline.contracts.errors import GovernanceError
from governance_pipeline.governance.data_protection.erase import erase
from governance_pipeline.governance.exports.evidence import build_evidence
from governance_pipeline.governance.exports.render_pdf import render_pdf
from governance_pipeline.landscape.explain import explain
from governance_pipeline.landscape.payloads import PayloadRedacted, load_payload
from governance_pipeline.landscape.schema import payloads, rows
from governance_pipeline.landscape.schema_data_protection import subject_index, subject_keys
from governance_pipeline.landscape.store import Landscape
from governance_pipeline.landscape.verify import verify
from governance_pipeline_tests.data_protection_fixtures import (
    CLAIMS,
    claims_pipeline,
    run_claims,
    state_snapshot,
)


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOVERNANCE_HOME", str(tmp_path))


def _stored_bytes(landscape: Landscape) -> bytes:
    with landscape.engine.connect() as conn:
        return b"".join(bytes(d) for d in conn.execute(select(payloads.c.data)).scalars())


def _source_hashes(landscape: Landscape, run_id: str) -> dict[int, str]:
    with landscape.engine.connect() as conn:
        return dict(conn.execute(select(rows.c.row_index, rows.c.source_data_hash)
                                 .where(rows.c.run_id == run_id)).all())


def test_subject_payloads_are_stored_encrypted(landscape: Landscape, clock: ManualClock,
                                               tmp_path: Path) -> None:
    run_claims(landscape, clock, claims_pipeline(tmp_path, subject_fields=["customer"]))
    stored = _stored_bytes(landscape)
    assert b"customer-1" not in stored and b"hail" not in stored
    with landscape.engine.connect() as conn:
        sealed = conn.execute(select(payloads.c.key_id).where(payloads.c.key_id.is_not(None))
                              ).scalars().all()
        keys = conn.execute(select(subject_keys.c.key_id)).scalars().all()
    assert len(set(keys)) == 3  # one per customer, shared by customer-1's two claims
    assert set(sealed) == set(keys)
    assert verify(landscape).ok


def test_without_subject_fields_payloads_stay_in_clear(landscape: Landscape, clock: ManualClock,
                                                       tmp_path: Path) -> None:
    run_claims(landscape, clock, claims_pipeline(tmp_path))
    assert b"customer-1" in _stored_bytes(landscape)
    with landscape.engine.connect() as conn:
        assert conn.execute(select(subject_keys)).first() is None


def test_erase_by_subject_shreds_keys_and_leaves_a_clean_verify(
        landscape: Landscape, clock: ManualClock, tmp_path: Path) -> None:
    run_id = run_claims(landscape, clock, claims_pipeline(tmp_path, subject_fields=["customer"]))
    hashes = _source_hashes(landscape, run_id)
    clock.advance(3600)
    result = erase(landscape, actor="dpo@example.org", reason="GDPR request 7",
                   field="customer", value="customer-1").as_dict()
    assert result["row_count"] == 2 and result["key_count"] == 1
    assert result["payload_count"] >= 4  # two source rows and their derived rows
    assert result["runs"] == [run_id] and "customer-1" not in orjson.dumps(result).decode()
    with landscape.engine.connect() as conn:
        key = conn.execute(select(subject_keys).where(
            subject_keys.c.key_id == result["key_ids"][0])).mappings().one()
    assert key["wrapped_key"] is None and key["erasure_id"] == result["erasure_id"]
    for index in (0, 2):  # customer-1's claims: unreadable, said to be erased
        with pytest.raises(PayloadRedacted) as gone:
            load_payload(landscape, hashes[index])
        assert gone.value.redaction.action == "erased"
        view = explain(landscape, run_id, row_index=index).source_payload
        assert view["note"] == "erased on 2026-01-01 (GDPR request 7)"
    assert orjson.loads(load_payload(landscape, hashes[1]))["customer"] == "customer-2"
    report = verify(landscape)
    assert report.ok, report.findings
    assert report.redacted.counts["erased"] == result["payload_count"]
    assert verify(landscape, run_id).ok


def test_a_bundle_built_after_an_erasure_carries_it(landscape: Landscape, clock: ManualClock,
                                                    tmp_path: Path) -> None:
    run_id = run_claims(landscape, clock, claims_pipeline(tmp_path, subject_fields=["customer"]))
    before = build_evidence(landscape, run_id)
    assert before.data_protection.erasures == []
    done = erase(landscape, actor="dpo", reason="request 9", field="customer",
                 value="customer-3").as_dict()
    bundle = build_evidence(landscape, run_id)
    (info,) = bundle.data_protection.erasures
    assert (info.erasure_id, info.reason, info.field_name, info.value_hmac) == (
        done["erasure_id"], "request 9", "customer", done["value_hmac"])
    assert bundle.data_protection.subject_fields == ["customer"]
    assert "customer-3" not in bundle.model_dump_json()
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(
        render_pdf(bundle, bundle_digest="0" * 64))).pages)
    assert "Data protection" in text and done["erasure_id"] in text.replace("\n", "")


def test_erase_by_row(landscape: Landscape, clock: ManualClock, tmp_path: Path) -> None:
    run_id = run_claims(landscape, clock, claims_pipeline(tmp_path, subject_fields=["customer"]))
    hashes = _source_hashes(landscape, run_id)
    result = erase(landscape, actor="dpo", reason="row request", run_id=run_id,
                   row_index=3).as_dict()
    assert (result["selector"], result["row_index"], result["row_count"]) == ("row", 3, 1)
    with pytest.raises(PayloadRedacted):
        load_payload(landscape, hashes[3])
    load_payload(landscape, hashes[0])
    assert verify(landscape).ok


def test_erase_by_row_empties_payloads_recorded_in_clear(
        landscape: Landscape, clock: ManualClock, tmp_path: Path) -> None:
    run_id = run_claims(landscape, clock, claims_pipeline(tmp_path))  # no subject fields
    hashes = _source_hashes(landscape, run_id)
    result = erase(landscape, actor="dpo", reason="legacy row", run_id=run_id,
                   row_index=1).as_dict()
    assert result["key_count"] == 0 and result["payload_count"] >= 1
    assert b"customer-2" not in _stored_bytes(landscape)
    assert b"customer-1" in _stored_bytes(landscape)
    view = explain(landscape, run_id, row_index=1).source_payload
    assert view["status"] == "erased" and view["reason"] == "legacy row"
    report = verify(landscape)
    assert report.ok, report.findings
    assert report.redacted.counts["erased"] == result["payload_count"]


@pytest.mark.parametrize("selector, code", [
    ({"field": "email", "value": "customer-1"}, "GP-ERASE-001"),
    ({"field": "customer", "value": "customer-404"}, "GP-ERASE-002"),
    ({"run_id": "run_missing", "row_index": 0}, "GP-ERASE-003"),
    ({"row_index": 99}, "GP-ERASE-003"),
    ({"field": "customer"}, "GP-ERASE-005"),
    ({}, "GP-ERASE-005"),
])
def test_bad_erase_input_is_refused_and_changes_nothing(
        landscape: Landscape, clock: ManualClock, tmp_path: Path, selector: dict[str, object],
        code: str) -> None:
    run_id = run_claims(landscape, clock, claims_pipeline(tmp_path, subject_fields=["customer"]))
    if selector.keys() == {"row_index"}:
        selector = {**selector, "run_id": run_id}
    before = state_snapshot(landscape)
    with pytest.raises(GovernanceError) as refused:
        erase(landscape, actor="dpo", reason="r", **selector)  # type: ignore[arg-type]
    assert refused.value.code.code == code and refused.value.code.fix
    assert state_snapshot(landscape) == before


def test_erasing_twice_is_refused_and_changes_nothing(
        landscape: Landscape, clock: ManualClock, tmp_path: Path) -> None:
    run_claims(landscape, clock, claims_pipeline(tmp_path, subject_fields=["customer"]))
    first = erase(landscape, actor="dpo", reason="r1", field="customer", value="customer-2")
    before = state_snapshot(landscape)
    with pytest.raises(GovernanceError) as refused:
        erase(landscape, actor="dpo", reason="r2", field="customer", value="customer-2")
    assert refused.value.code.code == "GP-ERASE-004"
    assert first.record.erasure_id in refused.value.message
    assert state_snapshot(landscape) == before


def test_a_key_destroyed_without_an_erasure_is_a_finding(
        landscape: Landscape, clock: ManualClock, tmp_path: Path) -> None:
    run_claims(landscape, clock, claims_pipeline(tmp_path, subject_fields=["customer"]))
    with landscape.engine.begin() as conn:
        key_id = conn.execute(select(subject_keys.c.key_id).limit(1)).scalar_one()
        conn.execute(update(subject_keys).where(subject_keys.c.key_id == key_id).values(
            wrapped_key=None, destroyed_at="2026-01-01T00:00:00.000000Z",
            erasure_id="erasure_forged"))
    findings = verify(landscape).findings
    assert findings and all("no erasure record names it" in f.message for f in findings)


def test_a_deleted_key_is_a_finding(landscape: Landscape, clock: ManualClock,
                                    tmp_path: Path) -> None:
    run_claims(landscape, clock, claims_pipeline(tmp_path, subject_fields=["customer"]))
    with landscape.engine.begin() as conn:
        key_id = conn.execute(select(subject_keys.c.key_id).limit(1)).scalar_one()
        conn.execute(subject_index.delete().where(subject_index.c.key_id == key_id))
        conn.execute(subject_keys.delete().where(subject_keys.c.key_id == key_id))
    findings = verify(landscape).findings
    assert findings and all(f"data key {key_id} is missing" in f.message for f in findings)


def test_altered_ciphertext_is_a_finding(landscape: Landscape, clock: ManualClock,
                                         tmp_path: Path) -> None:
    run_id = run_claims(landscape, clock, claims_pipeline(tmp_path, subject_fields=["customer"]))
    target = _source_hashes(landscape, run_id)[0]
    with landscape.engine.begin() as conn:
        data = bytes(conn.execute(select(payloads.c.data).where(
            payloads.c.content_hash == target)).scalar_one())
        flipped = data[:-1] + bytes([data[-1] ^ 1])
        conn.execute(update(payloads).where(payloads.c.content_hash == target)
                     .values(data=flipped))
    (finding,) = verify(landscape).findings
    assert finding.key == target and "does not authenticate" in finding.message


def test_new_data_of_an_erased_subject_gets_a_new_key(
        landscape: Landscape, clock: ManualClock, tmp_path: Path) -> None:
    path = claims_pipeline(tmp_path, subject_fields=["customer"])
    first = run_claims(landscape, clock, path)
    erase(landscape, actor="dpo", reason="r", field="customer", value="customer-1")
    changed = [(9, "customer-1", "north", 42.0, "new claim"), *CLAIMS[1:]]
    second = run_claims(landscape, clock, claims_pipeline(tmp_path, subject_fields=["customer"],
                                                          claims=changed, name="again"))
    assert orjson.loads(load_payload(landscape, _source_hashes(landscape, second)[0]))[
        "description"] == "new claim"
    with pytest.raises(PayloadRedacted):  # recorded before the erasure: stays erased
        load_payload(landscape, _source_hashes(landscape, first)[0])
    with landscape.engine.connect() as conn:
        live = conn.execute(select(subject_keys.c.key_id).where(
            subject_keys.c.wrapped_key.is_not(None))).scalars().all()
    assert len(live) == 3  # customer-1 has a new key; the other two keep theirs
    assert verify(landscape).ok
