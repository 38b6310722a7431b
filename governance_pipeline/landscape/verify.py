"""Verify the audit trail against its ledger: say exactly which record was altered, and how.

Nothing stored is trusted. For each scope (a run id, or ``global``) verify recomputes every
entry hash of the chain and every manifest digest, checks every seal's signature against a
trusted public key, checks every C2SP checkpoint against the chain's Merkle tree
(``verify_checkpoints``), replays the manifests (latest version of a record wins: an update re-emits
it) and compares the result with a record hash recomputed from every row of the scope. Payloads
are checked against their content hash. Each discrepancy becomes a ``Finding``; ``verify`` never
stops at the first one.

Everything is read in one snapshot (REPEATABLE READ on PostgreSQL, a deferred read transaction
on SQLite in WAL mode), so a pipeline writing meanwhile neither blocks on verify nor makes it
report records committed after the ledger was read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, column, select, union

from governance_pipeline.contracts.errors import (
    LEDGER_TAMPERED,
    PAYLOAD_CORRUPT,
    SEAL_UNTRUSTED,
    Finding,
    NotFoundError,
)
from governance_pipeline.contracts.tlog_errors import CHECKPOINT_INVALID
from governance_pipeline.landscape import witness
from governance_pipeline.landscape.checkpoints import read_origin_prefix
from governance_pipeline.landscape.database import read_snapshot
from governance_pipeline.landscape.key_errors import KEY_FINDING
from governance_pipeline.landscape.keys import PublicKey
from governance_pipeline.landscape.schema import (
    GLOBAL_SCOPE,
    LEDGERED,
    ledger_checkpoints,
    ledger_entries,
    ledger_seals,
    payloads,
    rows,
    run_anchors,
    runs,
    validation_errors,
)
from governance_pipeline.landscape.verify_anchors import check_anchors, check_witness
from governance_pipeline.landscape.verify_checkpoints import CHECKPOINT, check_checkpoints
from governance_pipeline.landscape.verify_witness import (
    WITNESS,
    WITNESS_MISMATCH,
    WitnessInput,
    check_witnessed,
)
from governance_pipeline.landscape.store import Landscape
from governance_pipeline.landscape.verify_payloads import PayloadJudge, Redacted
from governance_pipeline.landscape.verify_records import RecordCheck, check_unowned_records
from governance_pipeline.landscape.verify_chain import (
    CHAIN,
    KEY,
    PAYLOAD,
    RECORD,
    SEAL,
    STREAM,
    Chain,
    Tally,
    check_chain,
    check_keyring,
    check_seals,
)

_CODES = {CHAIN: LEDGER_TAMPERED, SEAL: SEAL_UNTRUSTED, RECORD: LEDGER_TAMPERED,
          PAYLOAD: PAYLOAD_CORRUPT, CHECKPOINT: CHECKPOINT_INVALID, WITNESS: WITNESS_MISMATCH,
          KEY: KEY_FINDING}


@dataclass(frozen=True)
class VerifyReport:
    scopes: list[str]
    entries_checked: int
    records_checked: int
    payloads_checked: int
    findings: list[Finding]
    #: Payloads without contents that a purge or erasure accounts for (not findings).
    redacted: Redacted = field(default_factory=Redacted)
    #: What ``verify --witness`` checked (None: no witness directory was given).
    witness: WitnessInput | None = None

    @property
    def ok(self) -> bool:
        return not self.findings

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "scopes": list(self.scopes), "entries_checked": self.entries_checked,
            "records_checked": self.records_checked, "payloads_checked": self.payloads_checked,
            "findings": [{**f.as_dict(), "code": _CODES[f.check].code} for f in self.findings],
            "redacted_payloads": self.redacted.as_dict(),
            "witness": self.witness.as_dict() if self.witness is not None else None,
        }


def verify(landscape: Landscape, run_id: str | None = None, *,
           public_key: PublicKey | None = None, witness_dir: Path | None = None,
           cosigners: Sequence[Any] = ()) -> VerifyReport:
    """Verify one run's scope (``run_id``; ``"global"`` names the global scope) or every scope.

    Seals are trusted only when made by a key of the keyring that ``public_key`` (default:
    the keys pinned in the Landscape's trust file, never the key file in keys/ as such) and the
    signed rotation statements prove, within that key's validity (``signing_keyring``).
    ``witness_dir``: a directory of witnessed checkpoints (``ledger witness``) the ledger must
    still agree with; ``cosigners`` (note ``Verifier``s of tlog-cosignature keys) must each have
    cosigned every one of them (``verify_witness``).
    Raises ``NotFoundError`` when ``run_id`` leaves no trace at all in the database.
    """
    anchors = landscape.trust_anchors(public_key)  # pinned, not the key file (trust.py)
    witnessed = witness.snapshot(landscape.keys_dir)  # before the snapshot: it may only lag it
    outside = WitnessInput.read(witness_dir, cosigners) if witness_dir is not None else None
    with _read_snapshot(landscape.engine) as conn:
        scopes = _all_scopes(conn) if run_id is None else [run_id]
        if run_id is not None and not _scope_exists(conn, run_id):
            raise NotFoundError(f"no run {run_id} in this Landscape (no run record, no ledger)",
                                details={"run_id": run_id})
        state = Tally()
        prefix = read_origin_prefix(conn)
        keyring = landscape.signing_keyring(conn, anchors)
        check_keyring(keyring, state)
        chains: dict[str, Chain] = {}
        judge = PayloadJudge(conn, state, landscape.protection)
        for scope in scopes:
            records = RecordCheck(conn, scope)
            chain = chains[scope] = check_chain(conn, scope, state, records)
            check_seals(conn, scope, chain, keyring, state)
            check_checkpoints(conn, scope, chain, keyring, state, prefix)
            if scope == GLOBAL_SCOPE:
                check_witness(chain, witnessed, state)
            records.finish(state)
            _check_payloads(conn, scope, judge, with_data=run_id is not None)
        if run_id != GLOBAL_SCOPE:
            check_anchors(conn, chains, state, run_id)
        if outside is not None:
            trusted = [e.public for e in keyring.trusted()]
            check_witnessed(conn, scopes, outside, trusted, state, every_scope=run_id is None)
        if run_id is None:
            check_unowned_records(conn, state)
            judge.check_all(conn)
    return VerifyReport(scopes, state.entries, state.records, state.payloads, state.findings,
                        judge.redacted, outside)


# --- snapshot and scopes ------------------------------------------------------------------------
_read_snapshot = read_snapshot  # its old name (metrics, proofs)


def _all_scopes(conn: Connection) -> list[str]:
    """Every scope that has a chain, a seal or a record: a record in a scope with no chain is
    itself a finding (inserted), so scopes are taken from the tables too, not only the ledger."""
    found = {GLOBAL_SCOPE}
    found.update(conn.execute(select(ledger_entries.c.scope).distinct()).scalars())
    found.update(conn.execute(select(ledger_seals.c.scope).distinct()).scalars())
    found.update(conn.execute(select(ledger_checkpoints.c.scope).distinct()).scalars())
    for spec in LEDGERED.values():
        if spec.scope_column is not None:
            column = spec.table.c[spec.scope_column]
            found.update(conn.execute(select(column).distinct()).scalars())
    found.discard(None)  # rows of no scope: check_unowned_records
    return sorted(str(s) for s in found - {GLOBAL_SCOPE}) + [GLOBAL_SCOPE]


def _scope_exists(conn: Connection, scope: str) -> bool:
    if scope == GLOBAL_SCOPE:
        return True
    for where in (runs.c.run_id, ledger_entries.c.scope, ledger_seals.c.scope,
                  ledger_checkpoints.c.scope,
                  run_anchors.c.run_id):
        if conn.execute(select(where).where(where == scope).limit(1)).first() is not None:
            return True
    return False


# --- 4. payloads ----------------------------------------------------------------------------------
def _check_payloads(conn: Connection, scope: str, judge: PayloadJudge, *, with_data: bool) -> None:
    """Payloads referenced by ``scope``: present, and (``with_data``) matching their hash."""
    refs = union(
        select(rows.c.source_data_hash.label("ref")).where(rows.c.run_id == scope),
        select(validation_errors.c.raw_payload_hash.label("ref"))
        .where(validation_errors.c.run_id == scope)).subquery()
    if with_data:
        query = select(refs.c.ref, *judge.columns()).select_from(
            judge.joined(refs.outerjoin(payloads, payloads.c.content_hash == refs.c.ref)))
    else:  # the whole-database verify checks every payload's bytes once, at the end
        query = select(refs.c.ref, column("content_hash")).select_from(
            refs.outerjoin(payloads, payloads.c.content_hash == refs.c.ref)
        ).where(payloads.c.content_hash.is_(None))
    result = conn.execution_options(yield_per=STREAM).execute(query)
    if with_data:
        judge.judge_all(result, scope)
        return
    for row in result.mappings():
        judge.state.add(PAYLOAD, "payloads", str(row["ref"]),
                        "missing: a record of this scope references a payload that is not "
                        "stored", scope)
