"""Records and rules of data protection: legal holds, purges, erasures, redacted payloads.

These records are ledgered in the global scope: a purge or an erasure is an audit fact like any
other, and ``verify`` accepts a payload without contents only when one of them accounts for it.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, ClassVar

from governance_pipeline.contracts.errors import RETENTION_INVALID, ConfigError
from governance_pipeline.contracts.record_base import AuditRecord, _require

_DURATION = re.compile(r"^([1-9][0-9]{0,5})([dwy])$")
_UNIT_DAYS = {"d": 1, "w": 7, "y": 365}


def parse_days(text: str, *, where: str) -> int:
    """Days in a retention such as ``90d``, ``26w`` or ``1y`` (a year counts 365 days)."""
    match = _DURATION.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ConfigError(f"{where}: {text!r} is not a retention (write e.g. 200d, 30w or 2y)",
                          code=RETENTION_INVALID, details={"path": where, "value": str(text)})
    return int(match.group(1)) * _UNIT_DAYS[match.group(2)]


class HoldTarget(StrEnum):
    RUN = "run"
    INCIDENT = "incident"


class RedactionAction(StrEnum):
    """Why a payload's contents are gone while its hash stays referenced."""

    PURGED = "purged"   # past retention
    ERASED = "erased"   # an erasure request (a row's payloads stored in clear)


class PurgeScope(StrEnum):
    PAYLOADS = "payloads"  # payload contents past the payload retention
    RUN = "run"            # the whole run past the run retention: contents gone, run tombstoned


class ErasureSelector(StrEnum):
    SUBJECT = "subject"  # --field F --value V
    ROW = "row"          # --run R --row N


@dataclass(frozen=True, slots=True)
class LegalHold(AuditRecord):
    TABLE: ClassVar[str] = "legal_holds"
    hold_id: str
    target_kind: HoldTarget
    target_id: str
    reason: str
    placed_by: str
    placed_at: str
    released_by: str | None
    release_reason: str | None
    released_at: str | None

    def __post_init__(self) -> None:
        _require(bool(self.reason.strip()), "LegalHold", "a hold says why (reason)")
        released = (self.released_by, self.release_reason, self.released_at)
        _require(all(v is None for v in released) or all(v is not None for v in released),
                 "LegalHold", "a release names who, why and when")

    @property
    def active(self) -> bool:
        return self.released_at is None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "target_kind": self.target_kind.value, "active": self.active}


@dataclass(frozen=True, slots=True)
class PurgeRecord(AuditRecord):
    """One purge: what it removed (count and digest of the content hashes) and what it spared."""

    TABLE: ClassVar[str] = "purges"
    purge_id: str
    actor: str
    reason: str | None
    floor_days: int
    run_count: int
    payload_count: int
    payloads_digest: str
    held_json: str
    created_at: str


@dataclass(frozen=True, slots=True)
class PurgedRun(AuditRecord):
    """What one purge did to one run; a ``run`` scope entry is the run's tombstone, bound to
    the head of its sealed chain at the time."""

    TABLE: ClassVar[str] = "purged_runs"
    purge_id: str
    run_id: str
    scope: PurgeScope
    retention_days: int
    payload_count: int
    payloads_digest: str
    ledger_seq: int
    ledger_head: str
    created_at: str


@dataclass(frozen=True, slots=True)
class PayloadRedaction(AuditRecord):
    TABLE: ClassVar[str] = "payload_redactions"
    content_hash: str
    action: RedactionAction
    event_id: str
    redacted_at: str


@dataclass(frozen=True, slots=True)
class ErasureRecord(AuditRecord):
    """An erasure request carried out: who, why, when, what (never the value: its keyed HMAC)."""

    TABLE: ClassVar[str] = "erasures"
    erasure_id: str
    actor: str
    reason: str
    selector: ErasureSelector
    field_name: str | None
    value_hmac: str | None
    run_id: str | None
    row_index: int | None
    hmac_key_id: str
    key_ids_json: str
    key_count: int
    payload_count: int
    payloads_digest: str
    row_count: int
    runs_json: str
    created_at: str

    def __post_init__(self) -> None:
        _require(bool(self.reason.strip()), "ErasureRecord", "an erasure says why (reason)")
        if self.selector is ErasureSelector.SUBJECT:
            _require(self.field_name is not None and self.value_hmac is not None,
                     "ErasureRecord", "a subject erasure names its field and value HMAC")
        else:
            _require(self.run_id is not None and self.row_index is not None,
                     "ErasureRecord", "a row erasure names its run and row")
