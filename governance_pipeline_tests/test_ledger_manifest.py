"""The ledger manifest's stored form: format 2 (binary: sections, a key block, raw digests) is
written, format 1 (zlib'd JSON, older databases) is still read; every truncation or alteration
of a binary manifest is refused; a chain holding both formats verifies and proves its records."""

from __future__ import annotations

import hashlib
import zlib
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from governance_pipeline.contracts.enums import RunStatus, TerminationReason
from governance_pipeline.contracts.records import SourceRow, Token
from governance_pipeline.governance.exports.checkpoint import checkpoint_for
from governance_pipeline.governance.exports.proofs import inclusion_proofs, verify_proof
from governance_pipeline.landscape import ledger
from governance_pipeline.landscape.database import write_transaction
from governance_pipeline.landscape.recorder import Recorder, UnitOfWork
from governance_pipeline.landscape.schema import GLOBAL_SCOPE
from governance_pipeline.landscape.store import Landscape
from governance_pipeline.landscape.verify import verify
from governance_pipeline_tests.tamper import raw_connection


def legacy(items: list[ledger.ManifestItem]) -> tuple[bytes, str]:
    """Format 1, as the recorder wrote it before format 2: zlib of the compact JSON list, the
    digest over the JSON."""
    raw = orjson.dumps(items)
    return zlib.compress(raw, 1), hashlib.sha256(raw).hexdigest()


def digest(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


ITEMS: list[ledger.ManifestItem] = [
    ("rows", "run_a.r000000001", digest(1)),
    ("rows", "run_a.r000000002", digest(2)),
    ("nodes", '["run_a","gate é\\n"]', digest(3)),
    ("rows", "run_a.r000000001", digest(4)),  # the same record again, later: the latest wins
]


# --- the format -----------------------------------------------------------------------------------
def test_format_2_round_trips_and_its_digest_is_over_the_stored_bytes() -> None:
    blob, records_digest = ledger.encode_manifest(ITEMS)
    assert blob[:4] == b"GPM\x02"
    assert records_digest == hashlib.sha256(blob).hexdigest()
    assert ledger.decode_manifest(blob) == (ITEMS, records_digest)
    # Three sections (rows, nodes, rows), one key block, 32 raw bytes per record at the end.
    assert int.from_bytes(blob[4:6], "big") == 3
    assert blob[-32:] == bytes.fromhex(digest(4))
    assert ledger.read_portable(*ledger.portable_manifest(blob)) == (ITEMS, records_digest)


def test_format_1_is_still_read() -> None:
    blob, records_digest = legacy(ITEMS)
    assert ledger.decode_manifest(blob) == (ITEMS, records_digest)
    assert ledger.portable_manifest(blob) == (1, orjson.dumps(ITEMS).decode())
    assert ledger.read_portable(*ledger.portable_manifest(blob)) == (ITEMS, records_digest)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["rows", "tokens", "node_states"]),
                          st.text(st.characters(exclude_categories=("Cs",)), max_size=12),
                          st.binary(min_size=32, max_size=32).map(bytes.hex)), max_size=12))
def test_any_items_round_trip(items: list[ledger.ManifestItem]) -> None:
    blob, records_digest = ledger.encode_manifest(items)
    assert ledger.decode_manifest(blob) == (items, records_digest)


# --- must reject ----------------------------------------------------------------------------------
def test_every_truncation_of_a_binary_manifest_is_refused() -> None:
    blob, _ = ledger.encode_manifest(ITEMS)
    for size in range(len(blob)):
        with pytest.raises(ledger.ManifestError):
            ledger.decode_manifest(blob[:size])


def _at_count(blob: bytes) -> int:
    return 6 + 1 + blob[6]  # magic, section count, the first section's name length and name


def _at_key_block(blob: bytes) -> int:
    at = 6
    for _ in range(int.from_bytes(blob[4:6], "big")):
        at += 5 + blob[at]
    return at


def _add(blob: bytes, at: int, width: int, delta: int) -> bytes:
    value = int.from_bytes(blob[at:at + width], "big") + delta
    return blob[:at] + value.to_bytes(width, "big") + blob[at + width:]


ALTERATIONS: dict[str, Any] = {
    "a byte appended": lambda b: b + b"\x00",
    "a record count raised": lambda b: _add(b, _at_count(b), 4, 1),
    "a record count lowered": lambda b: _add(b, _at_count(b), 4, -1),
    "a section count raised": lambda b: _add(b, 4, 2, 1),
    "the key block length lowered": lambda b: _add(b, _at_key_block(b), 4, -1),
    "the key block length raised": lambda b: _add(b, _at_key_block(b), 4, 1),
    "a key block byte altered": lambda b: _add(b, _at_key_block(b) + 6, 1, 1),
    "a name length zeroed": lambda b: b[:6] + b"\x00" + b[7:],
    "the magic altered": lambda b: b"GPM\x03" + b[4:],
}


@pytest.mark.parametrize("name", list(ALTERATIONS))
def test_an_altered_binary_manifest_is_refused(name: str) -> None:
    blob, _ = ledger.encode_manifest(ITEMS)
    altered = ALTERATIONS[name](blob)
    assert altered != blob
    with pytest.raises(ledger.ManifestError):
        ledger.decode_manifest(altered)


def test_a_flipped_digest_bit_parses_but_changes_the_digest() -> None:
    """What the records_digest is for: the manifest still reads, verify sees the change."""
    blob, records_digest = ledger.encode_manifest(ITEMS)
    items, altered = ledger.decode_manifest(blob[:-1] + bytes((blob[-1] ^ 1,)))
    assert altered != records_digest and items[-1][2] != ITEMS[-1][2]


def test_bad_input_to_the_encoder_is_refused() -> None:
    with pytest.raises(ValueError):
        ledger.encode_manifest([("rows", "k", "ab" * 31)])  # 31 bytes: not a SHA-256
    with pytest.raises(ValueError):
        ledger.encode_sections([("rows", ["k"], b"\x00" * 31)])


# --- a chain holding both formats -----------------------------------------------------------------
def commit_as_format_1(landscape: Landscape, uow: UnitOfWork) -> None:
    """Write ``uow`` as the recorder did before format 2: same rows, a format-1 manifest."""
    sections = uow._insert_manifest()
    with write_transaction(landscape.engine) as conn:
        ledger.lock_scope(conn, uow.scope)
        sections += uow._write(conn)
        ledger.append_sections(conn, uow.scope, sections, uow.now,
                               encoded=legacy(ledger.items_of(sections)))


def test_a_chain_of_both_formats_verifies_proves_and_detects(landscape: Landscape,
                                                              db_url: str) -> None:
    recorder = Recorder(landscape)
    run = recorder.begin_run(pipeline_name="mixed", tenant_id="t", config={"x": 1})
    uow = UnitOfWork(run.run_id, recorder.now())
    row_id = f"{run.run_id}.r000000000"
    uow.add(SourceRow(row_id, run.run_id, "source", 0, uow.payload({"a": 1}), uow.now))
    uow.add(Token(f"{row_id}.t0", run.run_id, row_id, None, None, None, None, uow.now))
    commit_as_format_1(landscape, uow)
    recorder.finish_run(run.run_id, RunStatus.COMPLETED, TerminationReason.COMPLETED)
    with raw_connection(db_url) as db:
        magics = [bytes(m)[:4] for (m,) in db.execute(
            "SELECT manifest FROM ledger_entries WHERE scope = ? ORDER BY seq", (run.run_id,))]
    assert magics[0] == magics[2] == b"GPM\x02" and magics[1] != b"GPM\x02"
    assert verify(landscape, run.run_id).ok

    checkpoint = checkpoint_for(landscape, [run.run_id, GLOBAL_SCOPE])
    (proof,) = inclusion_proofs(landscape, [("tokens", f"{row_id}.t0", run.run_id)], checkpoint)
    assert proof["entry"]["manifest_format"] == 1 and proof["entry"]["seq"] == 2
    seal = checkpoint.seal(run.run_id)
    assert seal is not None
    assert verify_proof(proof, seal.model_dump(mode="json"), landscape.signer.public) == []

    with raw_connection(db_url) as db:
        db.execute("UPDATE tokens SET branch_name = 'edited' WHERE token_id = ?",
                   (f"{row_id}.t0",))
    report = verify(landscape, run.run_id)
    assert any(f.table == "tokens" and f.key == f"{row_id}.t0" and "modified" in f.message
               for f in report.findings), report.findings
