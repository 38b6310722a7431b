"""Reading the outbox (the ``events`` table) and the delivery state beside it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, and_, func, or_, select

from governance_pipeline.contracts.enums import DeliveryStatus
from governance_pipeline.contracts.errors import AuditIntegrityError
from governance_pipeline.contracts.records import EventRecord
from governance_pipeline.landscape.schema import event_deliveries, events
from governance_pipeline.landscape.store import Landscape


def _type_filter(types: Sequence[str]) -> Any:
    """Exact types, or patterns with ``*`` (``ir.*``); LIKE needs ``_`` and ``%`` escaped."""
    clauses = []
    for t in types:
        if "*" in t:
            like = t.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_").replace("*", "%")
            clauses.append(events.c.type.like(like, escape="\\"))
        else:
            clauses.append(events.c.type == t)
    return or_(*clauses)


def read_events(landscape: Landscape, *, types: Sequence[str] = (), run_id: str | None = None,
                since: str | None = None, limit: int | None = None) -> list[EventRecord]:
    """Events in id order, newest last: ``types`` (exact or ``x.*``), one run's scope, those
    after event ``since``, and with ``limit`` the newest ``limit`` of them."""
    query: Select[Any] = select(events)
    if types:
        query = query.where(_type_filter(types))
    if run_id is not None:
        query = query.where(events.c.scope == run_id)
    if since is not None:
        query = query.where(events.c.event_id > since)
    if limit is not None:
        query = query.order_by(events.c.event_id.desc()).limit(limit)
    else:
        query = query.order_by(events.c.event_id)
    with landscape.engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    records = [EventRecord.from_row(r) for r in rows]
    return sorted(records, key=lambda e: e.event_id) if limit is not None else records


@dataclass(frozen=True, slots=True)
class DeliveryState:
    subscriber: str
    event_id: str
    event_type: str
    status: DeliveryStatus
    attempts: int
    last_error: str | None
    next_attempt_at: str | None
    delivered_at: str | None
    updated_at: str

    @classmethod
    def from_row(cls, row: Any) -> DeliveryState:
        try:
            status = DeliveryStatus(row["status"])
        except ValueError as exc:
            raise AuditIntegrityError(
                f"event_deliveries {row['subscriber']}/{row['event_id']}: unknown status "
                f"{row['status']!r}") from exc
        return cls(row["subscriber"], row["event_id"], row["type"], status, int(row["attempts"]),
                   row["last_error"], row["next_attempt_at"], row["delivered_at"],
                   row["updated_at"])

    def as_dict(self) -> dict[str, Any]:
        return {"subscriber": self.subscriber, "event_id": self.event_id,
                "type": self.event_type, "status": self.status.value, "attempts": self.attempts,
                "last_error": self.last_error, "next_attempt_at": self.next_attempt_at,
                "delivered_at": self.delivered_at, "updated_at": self.updated_at}


def list_deliveries(landscape: Landscape, *, failed_only: bool = False,
                    subscriber: str | None = None, limit: int | None = None) -> list[DeliveryState]:
    """Delivery state per (subscriber, event), in event order; ``failed_only``: retries exhausted."""
    query = (select(event_deliveries, events.c.type)
             .join(events, events.c.event_id == event_deliveries.c.event_id)
             .order_by(event_deliveries.c.subscriber, event_deliveries.c.event_id))
    if failed_only:
        query = query.where(event_deliveries.c.status == DeliveryStatus.FAILED.value)
    if subscriber is not None:
        query = query.where(event_deliveries.c.subscriber == subscriber)
    if limit is not None:
        query = query.limit(limit)
    with landscape.engine.connect() as conn:
        return [DeliveryState.from_row(r) for r in conn.execute(query).mappings()]


def backlog(landscape: Landscape, subscriber: str, types: frozenset[str] | None) -> int:
    """Events not yet delivered to ``subscriber`` and not given up on (pending or never tried)."""
    joined = events.outerjoin(event_deliveries, and_(
        event_deliveries.c.event_id == events.c.event_id,
        event_deliveries.c.subscriber == subscriber))
    query = (select(func.count()).select_from(joined)
             .where(or_(event_deliveries.c.status.is_(None),
                        event_deliveries.c.status == DeliveryStatus.PENDING.value)))
    if types is not None:
        query = query.where(events.c.type.in_(sorted(types)))
    with landscape.engine.connect() as conn:
        return int(conn.execute(query).scalar_one())
