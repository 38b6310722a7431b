"""The ledger checkpoint a bundle is built from: the latest signed seal of each scope it covers.

A seal signs the head of one scope's chain (``landscape.ledger``). A bundle names the seals it was
built from, and its inclusion proofs lead from each sampled record up to one of those heads, so a
third party who trusts the sealing key can check the records without the database.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from governance_pipeline.contracts.errors import (
    LEDGER_TAMPERED,
    SEAL_UNTRUSTED,
    AuditIntegrityError,
    ConfigError,
    ExitCode,
    register,
)
from governance_pipeline.landscape import ledger
from governance_pipeline.landscape.recorder import Recorder
from governance_pipeline.landscape.schema import ledger_checkpoints, ledger_entries, ledger_seals
from governance_pipeline.landscape.store import Landscape

SCOPE_UNSEALED = register(
    "GP-BUNDLE-003", "A scope of the export has no ledger seal to build a checkpoint from",
    "Runs are sealed when they finish: export a finished run. For the global scope (policies, "
    "approvals, exports) call exports.checkpoint.seal_scopes before building the checkpoint.",
    ExitCode.INVALID_INPUT)

_HEX64 = r"^[0-9a-f]{64}$"


class Seal(BaseModel):
    """One scope's signed ledger state, as a bundle carries it (the ``ledger_seals`` row)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scope: str = Field(min_length=1)
    seq: int = Field(ge=0)
    head_hash: str = Field(pattern=_HEX64)
    key_id: str = Field(min_length=1)
    signature: str = Field(pattern=r"^[0-9a-f]{128}$")
    sealed_at: str = Field(min_length=1)
    seal_id: str = Field(min_length=1)

    def message(self) -> bytes:
        """The exact bytes the seal's signature covers."""
        return ledger.seal_message(scope=self.scope, seq=self.seq, head_hash=self.head_hash,
                                   key_id=self.key_id, sealed_at=self.sealed_at)


class Checkpoint(BaseModel):
    """The seals a bundle was built from, one per scope, sorted by scope."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seals: tuple[Seal, ...]

    @property
    def scopes(self) -> list[str]:
        return [s.scope for s in self.seals]

    def seal(self, scope: str) -> Seal | None:
        return next((s for s in self.seals if s.scope == scope), None)

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def checkpoint_for(landscape: Landscape, scopes: Iterable[str]) -> Checkpoint:
    """The latest seal of each scope, each checked against the chain and the Landscape's key.

    Raises ``ConfigError`` (GP-BUNDLE-003) for a scope without a seal, and
    ``AuditIntegrityError`` for a seal that is not signed by a key of this Landscape's keyring
    (valid at its ``sealed_at``) or no longer matches its chain: a bundle is never built from a
    checkpoint that does not verify.
    """
    keyring = landscape.own_keyring()
    seals: list[Seal] = []
    with landscape.engine.connect() as conn:
        for scope in sorted(set(scopes)):
            row = conn.execute(
                select(ledger_seals).where(ledger_seals.c.scope == scope)
                .order_by(ledger_seals.c.seq.desc(), ledger_seals.c.sealed_at.desc(),
                          ledger_seals.c.seal_id.desc()).limit(1)).mappings().first()
            if row is None:
                raise ConfigError(f"scope {scope} has never been sealed", code=SCOPE_UNSEALED,
                                  details={"scope": scope})
            seal = Seal(**{k: row[k] for k in Seal.model_fields})
            public = keyring.public(seal.key_id)
            outside = keyring.check(seal.key_id, seal.sealed_at)
            if public is None or outside is not None \
                    or not public.verify(seal.signature, seal.message()):
                raise AuditIntegrityError(
                    f"the latest seal of scope {scope} ({seal.seal_id}) is not signed by this "
                    f"Landscape's key or a key its keyring links to, valid at its time: "
                    f"{outside or 'bad signature'}",
                    code=SEAL_UNTRUSTED, details={"scope": scope, "seal_id": seal.seal_id})
            head = conn.execute(select(ledger_entries.c.entry_hash).where(
                ledger_entries.c.scope == scope, ledger_entries.c.seq == seal.seq)).scalar()
            if seal.seq == 0:
                head = ledger.GENESIS_HASH
            if head != seal.head_hash:
                raise AuditIntegrityError(
                    f"the latest seal of scope {scope} covers seq {seal.seq}, which no longer "
                    "holds the sealed entry; run `governance-pipeline verify`",
                    code=LEDGER_TAMPERED, details={"scope": scope, "seal_id": seal.seal_id})
            seals.append(seal)
    return Checkpoint(seals=tuple(seals))


def seal_scopes(landscape: Landscape, scopes: Iterable[str]) -> None:
    """Seal the current head of every scope whose head no seal (with its C2SP checkpoint)
    covers yet.

    The global scope is never closed like a run, so an export seals it first: the checkpoint then
    covers the approval and policy records it proves. A head sealed before checkpoints existed
    (revision 0008) is sealed again, so the bundle's tlog-proof files have a checkpoint to cite.
    """
    recorder = Recorder(landscape)
    for scope in sorted(set(scopes)):
        with landscape.engine.connect() as conn:
            head = ledger.read_head(conn, scope)
            covered = conn.execute(select(ledger_seals.c.seal_id).where(
                ledger_seals.c.scope == scope, ledger_seals.c.seq == head.seq,
                ledger_seals.c.head_hash == head.entry_hash).limit(1)).first()
            checkpointed = conn.execute(select(ledger_checkpoints.c.tree_size).where(
                ledger_checkpoints.c.scope == scope,
                ledger_checkpoints.c.tree_size == head.seq)).first()
        if covered is None or checkpointed is None:
            with recorder.unit(scope, seal=True):
                pass  # an empty unit writes no entry; it only seals the head
