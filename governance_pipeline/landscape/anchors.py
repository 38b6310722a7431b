"""Anchoring run chains in the global chain, and sealing the global chain at every commit.

A run's chain proves its records were not altered, but a chain that is deleted whole proves
nothing. So whenever a run opens or its chain is sealed, the same transaction appends a
``RunAnchor`` (run id, seq, head hash) to the global chain and seals the global head. The global
chain is sealed at every commit, so its records cannot be edited or rewritten without the key;
verify then checks every anchored run against its chain (``verify_anchors``).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Connection, Engine, inspect, select

from governance_pipeline.contracts.anchor_records import RunAnchor
from governance_pipeline.contracts.clock import SYSTEM_CLOCK, to_iso
from governance_pipeline.contracts.enums import AnchorReason
from governance_pipeline.contracts.ids import new_id
from governance_pipeline.landscape import ledger, migrate, witness
from governance_pipeline.landscape.database import write_transaction
from governance_pipeline.landscape.keys import Signer, load_or_create_signer
from governance_pipeline.landscape.schema import (
    GLOBAL_SCOPE,
    ledger_entries,
    ledger_seals,
    run_anchors,
)


def anchor_record(conn: Connection, run_id: str, reason: AnchorReason,
                  now: str) -> RunAnchor | None:
    """The anchor of ``run_id``'s current head, or None when it has no entry or is anchored at
    that head already (a seal of an unchanged chain adds nothing to what the anchor proves)."""
    head = ledger.read_head(conn, run_id)
    if head.seq == 0:
        return None
    known = conn.execute(select(run_anchors.c.anchor_id).where(
        run_anchors.c.run_id == run_id, run_anchors.c.run_seq == head.seq,
        run_anchors.c.run_head_hash == head.entry_hash).limit(1)).first()
    if known is not None:
        return None
    return RunAnchor(new_id("anc_"), run_id, head.seq, head.entry_hash, reason, now)


def global_chain_id(conn: Connection, head: ledger.ChainHead) -> str:
    """The global chain's identity for the witness: the hash of its first entry."""
    if head.seq == 1:
        return head.entry_hash
    first = conn.execute(select(ledger_entries.c.entry_hash).where(
        ledger_entries.c.scope == GLOBAL_SCOPE, ledger_entries.c.seq == 1)).scalar()
    return str(first)


def global_sealed_through(conn: Connection) -> int:
    return conn.execute(select(ledger_seals.c.seq).where(ledger_seals.c.scope == GLOBAL_SCOPE)
                        .order_by(ledger_seals.c.seq.desc()).limit(1)).scalar() or 0


def upgrade_sealing_legacy(engine: Engine, keys_dir: Path) -> str:
    """Migrate to head; a database from before per-commit global sealing gets its global head
    sealed once, so the tail it wrote unsealed is covered from then on (it was unprotected
    before the upgrade, and stays exactly as trustworthy as it was)."""
    legacy = (migrate.current_revision(engine) is not None
              and not inspect(engine).has_table(run_anchors.name))
    after = migrate.upgrade(engine)
    if legacy:
        seal_global_head(engine, load_or_create_signer(keys_dir), keys_dir)
    return after


def seal_global_head(engine: Engine, signer: Signer, keys_dir: Path) -> None:
    with write_transaction(engine) as conn:
        ledger.lock_scope(conn, GLOBAL_SCOPE)
        head = ledger.read_head(conn, GLOBAL_SCOPE)
        if head.seq == 0:
            return
        if global_sealed_through(conn) < head.seq:
            ledger.seal(conn, GLOBAL_SCOPE, signer, to_iso(SYSTEM_CLOCK.now()))
        chain_id = global_chain_id(conn, head)
    witness.record(keys_dir, chain_id, head.seq, head.entry_hash)
