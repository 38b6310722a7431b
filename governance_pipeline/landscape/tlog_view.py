"""The Landscape's transparency-log view, as the witness and the bundle proofs use it.

One place that says, for a scope (a run id, or ``global``): its checkpoint origin, the RFC 6962
leaf hash of each of its ledger entries, its latest signed checkpoint, and the verifier of the
checkpoints a log key signs. The tree and the checkpoints themselves are ``landscape.tlog``'s;
this module only adapts them to what a *checker* needs, and recomputes every leaf from the
entries' own columns, so nothing it hands a verifier is taken from a stored tree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from cryptography.hazmat.primitives import serialization
from sqlalchemy import Connection

from governance_pipeline.contracts import merkle
from governance_pipeline.contracts.signed_note import Verifier
from governance_pipeline.landscape import tlog
from governance_pipeline.landscape.keys import PublicKey, Signer
from governance_pipeline.landscape.schema import ledger_entries
from governance_pipeline.landscape.verify_chain import STREAM, raw_select

#: The entry columns a leaf is computed from (what a proof's ``extra`` carries as the header).
HEADER_COLUMNS = ("seq", "prev_hash", "records_digest", "record_count", "created_at",
                  "entry_hash")


def origin(scope: str) -> str:
    """The checkpoint origin line of ``scope``'s log."""
    return tlog.origin(scope)


def scope_of(origin_line: str) -> str | None:
    """The scope whose log has ``origin_line``, or None when it is not one of ours."""
    return tlog.scope_of_origin(origin_line)


def entry_leaf_hash(scope: str, header: Mapping[str, Any]) -> bytes:
    """RFC 6962 leaf hash of one ledger entry (``header``: the ``HEADER_COLUMNS``)."""
    return merkle.leaf_hash(tlog.leaf_data(scope, header))


def leaf_hashes(conn: Connection, scope: str) -> list[bytes]:
    """The leaf hashes of every entry of ``scope`` in seq order, recomputed from the entries."""
    result = conn.execution_options(yield_per=STREAM).execute(
        raw_select(ledger_entries).where(ledger_entries.c.scope == scope)
        .order_by(ledger_entries.c.seq))
    try:
        return [entry_leaf_hash(scope, row) for row in result.mappings()]
    finally:
        result.close()


def latest_checkpoint(conn: Connection, scope: str) -> str | None:
    """The note text of ``scope``'s latest signed checkpoint (None: never sealed)."""
    return tlog.latest_checkpoint_note(conn, scope)


def consistency_proof(conn: Connection, scope: str, old_size: int, new_size: int) -> list[bytes]:
    return tlog.consistency_proof(conn, scope, old_size, new_size)


def inclusion_proof(conn: Connection, scope: str, seq: int, size: int) -> list[bytes]:
    return tlog.inclusion_proof(conn, scope, seq, size)


def raw_public(key: PublicKey) -> bytes:
    return key.key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def log_verifiers(key: PublicKey, scopes: Iterable[str]) -> list[Verifier]:
    """The note verifiers of the checkpoints ``key`` signs for ``scopes``."""
    names = sorted({tlog.key_name(scope) for scope in scopes})
    return [Verifier.ed25519(name, raw_public(key)) for name in names]


def signer_verifier(signer: Signer, scope: str) -> Verifier:
    return Verifier.ed25519(tlog.key_name(scope), raw_public(signer.public))
