"""The data-protection section of the evidence bundle: the erasures, purges and legal holds
that concern the run, so a bundle built after an erasure says what was erased, when and why."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ErasureInfo(_Model):
    erasure_id: str
    actor: str
    reason: str
    at: str
    selector: str = Field(description="'subject' (field and value) or 'row' (run and row).")
    field_name: str | None
    value_hmac: str | None = Field(description="Keyed HMAC of the value; never the value.")
    hmac_key_id: str
    run_id: str | None
    row_index: int | None
    key_count: int
    payload_count: int = Field(description="Payloads made unreadable, in every run.")
    payloads_digest: str = Field(description="SHA-256 over their sorted content hashes.")
    row_count: int


class PurgeInfo(_Model):
    purge_id: str
    actor: str
    reason: str | None
    at: str
    scope: str = Field(description="'payloads' (contents past retention) or 'run' (tombstone).")
    retention_days: int
    payload_count: int = Field(description="This run's payloads whose contents were removed.")
    payloads_digest: str
    ledger_seq: int = Field(description="Head of the run's chain when it was purged.")
    ledger_head: str


class HoldInfo(_Model):
    hold_id: str
    target: str
    reason: str
    placed_by: str
    placed_at: str
    released_by: str | None
    release_reason: str | None
    released_at: str | None


class DataProtectionInfo(_Model):
    subject_fields: list[str] = Field(default_factory=list)
    retention: dict[str, str] = Field(default_factory=dict,
                                      description="The run's declared retention, if any.")
    erasures: list[ErasureInfo] = Field(default_factory=list)
    purges: list[PurgeInfo] = Field(default_factory=list)
    holds: list[HoldInfo] = Field(default_factory=list)
