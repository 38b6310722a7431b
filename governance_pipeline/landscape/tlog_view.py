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
from sqlalchemy import Connection, select

from governance_pipeline.contracts import merkle
from governance_pipeline.contracts.signed_note import Verifier, sign_note
from governance_pipeline.contracts.tlog_checkpoint import Checkpoint
from governance_pipeline.landscape.keys import PublicKey, Signer
from governance_pipeline.landscape.schema import ledger_entries, ledger_seals
from governance_pipeline.landscape.verify_chain import STREAM, raw_select

#: The entry columns a leaf is computed from (what a proof's ``extra`` carries as the header).
HEADER_COLUMNS = ("seq", "prev_hash", "records_digest", "record_count", "created_at",
                  "entry_hash")
# PROVISIONAL until t13-tlog's ledger integration (landscape/tlog.py) lands: origins, leaves and
# checkpoints derived here from today's chain and seals.
_ORIGIN_PREFIX = "governance-pipeline.local/ledger/"


def origin(scope: str) -> str:
    """The checkpoint origin line of ``scope``'s log."""
    return _ORIGIN_PREFIX + scope


def key_name(scope: str) -> str:
    """The note key name of the log key's signatures on ``scope``'s checkpoints."""
    return origin(scope)


def scope_of(origin_line: str) -> str | None:
    """The scope whose log has ``origin_line``, or None when it is not one of ours."""
    if origin_line.startswith(_ORIGIN_PREFIX) and len(origin_line) > len(_ORIGIN_PREFIX):
        return origin_line[len(_ORIGIN_PREFIX):]
    return None


def entry_leaf_hash(scope: str, header: Mapping[str, Any]) -> bytes:
    """RFC 6962 leaf hash of one ledger entry (``header``: the ``HEADER_COLUMNS``)."""
    return merkle.leaf_hash(bytes.fromhex(str(header["entry_hash"])))


def leaf_hashes(conn: Connection, scope: str) -> list[bytes]:
    """The leaf hashes of every entry of ``scope`` in seq order, recomputed from the entries."""
    result = conn.execution_options(yield_per=STREAM).execute(
        raw_select(ledger_entries).where(ledger_entries.c.scope == scope)
        .order_by(ledger_entries.c.seq))
    try:
        return [entry_leaf_hash(scope, row) for row in result.mappings()]
    finally:
        result.close()


def latest_checkpoint(conn: Connection, scope: str, signer: Signer) -> str | None:
    """The note text of ``scope``'s latest signed checkpoint (None: never sealed)."""
    seq = conn.execute(select(ledger_seals.c.seq).where(ledger_seals.c.scope == scope)
                       .order_by(ledger_seals.c.seq.desc()).limit(1)).scalar()
    if seq is None:
        return None
    leaves = leaf_hashes(conn, scope)[:seq]
    body = Checkpoint(origin(scope), len(leaves), merkle.root_hash(leaves)).body()
    return sign_note(body, key_name(scope), signer.private_key.sign, raw_public(signer.public))


def consistency_proof(conn: Connection, scope: str, old_size: int, new_size: int) -> list[bytes]:
    return merkle.consistency_proof(leaf_hashes(conn, scope)[:new_size], old_size)


def inclusion_proof(conn: Connection, scope: str, seq: int, size: int) -> list[bytes]:
    return merkle.inclusion_proof(leaf_hashes(conn, scope)[:size], seq - 1)


def raw_public(key: PublicKey) -> bytes:
    return key.key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def log_verifiers(key: PublicKey, scopes: Iterable[str]) -> list[Verifier]:
    """The note verifiers of the checkpoints ``key`` signs for ``scopes``."""
    names = sorted({key_name(scope) for scope in scopes})
    return [Verifier.ed25519(name, raw_public(key)) for name in names]
