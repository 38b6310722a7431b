"""Delivering the outbox to subscribers: claimed, sent in order, retried with backoff, recorded.

Guarantees (docs/events.md#delivery):
- **Never in the way.** Business operations only write the outbox row, in their own transaction;
  delivery runs later (``events deliver``, the Dagster sensor). A subscriber that is down, slow or
  answering errors is recorded in ``event_deliveries`` and reported, never raised.
- **At least once, no duplicates from races.** Before sending, a deliverer claims each event for
  the subscriber with a conditional write (an insert that yields to an existing row, or an update
  that applies only if the row is still due), holding a lease until ``lease_s`` from now. Two
  deliverers therefore never send the same event to the same subscriber; only a deliverer that
  dies between sending and recording leaves a lease that expires and a resend (subscribers
  deduplicate on the event id, also sent as the ``Idempotency-Key`` header).
- **In order.** Per subscriber, events go out in event-id order; an event being retried holds
  back the ones after it until it is delivered or has failed for good (``max_attempts``).
- **Visible.** Status, attempts, the last error and the next attempt time are kept per
  (subscriber, event); ``events deliveries --failed`` lists what was given up on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, and_, bindparam, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from governance_pipeline.contracts.clock import Clock, to_iso
from governance_pipeline.contracts.enums import DeliveryStatus
from governance_pipeline.contracts.records import EventRecord
from governance_pipeline.governance.events.subscribers import (
    JsonlSubscriber,
    OpenLineageSubscriber,
    WebhookSubscriber,
)
from governance_pipeline.governance.events.transports import Sender, SendResult, build_sender
from governance_pipeline.landscape.database import write_transaction
from governance_pipeline.landscape.schema import event_deliveries, events
from governance_pipeline.landscape.store import Landscape

AnySubscriber = JsonlSubscriber | WebhookSubscriber | OpenLineageSubscriber

DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_BACKOFF_S = 30.0
MAX_BACKOFF_S = 3600.0
DEFAULT_LEASE_S = 600.0

_PENDING = DeliveryStatus.PENDING.value
_t = event_deliveries.c


@dataclass(frozen=True, slots=True)
class SubscriberReport:
    subscriber: str
    delivered: int = 0
    retrying: int = 0      # failed this pass, will be tried again after its backoff
    failed: int = 0        # failed this pass for the last time (max_attempts reached)
    held: bool = False     # stopped at an event that is backing off or claimed by another deliverer
    errors: tuple[tuple[str, str], ...] = ()   # (event id, error) of this pass

    def as_dict(self) -> dict[str, Any]:
        return {"subscriber": self.subscriber, "delivered": self.delivered,
                "retrying": self.retrying, "failed": self.failed, "held": self.held,
                "errors": [{"event_id": e, "error": m} for e, m in self.errors]}


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    subscribers: tuple[SubscriberReport, ...] = field(default_factory=tuple)

    @property
    def delivered(self) -> int:
        return sum(s.delivered for s in self.subscribers)

    @property
    def failed(self) -> int:
        return sum(s.failed for s in self.subscribers)

    @property
    def retrying(self) -> int:
        return sum(s.retrying for s in self.subscribers)

    @property
    def ok(self) -> bool:
        return not any(s.errors for s in self.subscribers)

    def as_dict(self) -> dict[str, Any]:
        return {"delivered": self.delivered, "retrying": self.retrying, "failed": self.failed,
                "ok": self.ok, "subscribers": [s.as_dict() for s in self.subscribers]}


def backoff_seconds(attempts: int, base_s: float = DEFAULT_BACKOFF_S) -> float:
    """Wait after the ``attempts``-th failed attempt: base, 2×base, 4×base, … capped at an hour."""
    return min(base_s * 2 ** max(attempts - 1, 0), MAX_BACKOFF_S)


@dataclass(frozen=True, slots=True)
class _Candidate:
    event: EventRecord
    attempts: int | None        # None: no delivery row yet
    next_attempt_at: str | None


@dataclass
class _Pass:
    landscape: Landscape
    subscriber: AnySubscriber
    sender: Sender
    clock: Clock
    max_attempts: int
    backoff_s: float
    lease_s: float
    types: frozenset[str] | None = None

    def candidates(self, limit: int) -> list[_Candidate]:
        joined = events.outerjoin(event_deliveries, and_(
            _t.event_id == events.c.event_id, _t.subscriber == self.subscriber.name))
        query = (select(events, _t.attempts.label("d_attempts"),
                        _t.next_attempt_at.label("d_next"), _t.status.label("d_status"))
                 .select_from(joined)
                 .where(or_(_t.status.is_(None), _t.status == _PENDING))
                 .order_by(events.c.event_id).limit(limit))
        if self.types is not None:
            query = query.where(events.c.type.in_(sorted(self.types)))
        with self.landscape.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [_Candidate(EventRecord.from_row(r), r["d_attempts"], r["d_next"]) for r in rows]

    def _claim_one(self, conn: Connection, cand: _Candidate, now: str, lease: str) -> bool:
        name, event_id = self.subscriber.name, cand.event.event_id
        if cand.attempts is None:
            values = {"subscriber": name, "event_id": event_id, "status": _PENDING,
                      "attempts": 0, "last_error": None, "next_attempt_at": lease,
                      "delivered_at": None, "updated_at": now}
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            # RETURNING, not rowcount: psycopg reports -1 for INSERT .. ON CONFLICT DO NOTHING
            stmt = (dialect.insert(event_deliveries).values(values).on_conflict_do_nothing()
                    .returning(_t.event_id))
            return conn.execute(stmt).first() is not None
        if cand.next_attempt_at is not None and cand.next_attempt_at > now:
            return False  # backing off, or leased by another deliverer
        stmt = (update(event_deliveries)
                .where(_t.subscriber == name, _t.event_id == event_id, _t.status == _PENDING,
                       _t.attempts == cand.attempts,
                       or_(_t.next_attempt_at.is_(None), _t.next_attempt_at <= now))
                .values(next_attempt_at=lease, updated_at=now))
        return conn.execute(stmt).rowcount == 1

    def claim(self, cands: Sequence[_Candidate]) -> list[_Candidate]:
        """Claim the longest due prefix of ``cands``, in one transaction."""
        now = self.clock.now()
        now_iso, lease = to_iso(now), to_iso(now + timedelta(seconds=self.lease_s))
        claimed = []
        with write_transaction(self.landscape.engine) as conn:
            for cand in cands:
                if not self._claim_one(conn, cand, now_iso, lease):
                    break
                claimed.append(cand)
        return claimed

    def record(self, claimed: Sequence[_Candidate], result: SendResult) -> SubscriberReport:
        """Delivered, failed-with-backoff and released rows, in one transaction."""
        now = self.clock.now()
        now_iso = to_iso(now)
        name = self.subscriber.name
        sent = claimed[:result.sent]
        report = SubscriberReport(name, delivered=len(sent))
        key = and_(_t.subscriber == bindparam("b_sub"), _t.event_id == bindparam("b_event"))
        with write_transaction(self.landscape.engine) as conn:
            if sent:
                conn.execute(update(event_deliveries).where(key).values(
                    status=DeliveryStatus.DELIVERED.value, attempts=_t.attempts + 1,
                    last_error=None, next_attempt_at=None, delivered_at=now_iso,
                    updated_at=now_iso), [{"b_sub": name, "b_event": c.event.event_id}
                                          for c in sent])
            if result.error is None or result.sent >= len(claimed):
                return report
            failed = claimed[result.sent]
            attempts = (failed.attempts or 0) + 1
            final = attempts >= self.max_attempts
            retry_at = None if final else to_iso(
                now + timedelta(seconds=backoff_seconds(attempts, self.backoff_s)))
            conn.execute(update(event_deliveries).where(
                _t.subscriber == name, _t.event_id == failed.event.event_id).values(
                status=DeliveryStatus.FAILED.value if final else _PENDING, attempts=attempts,
                last_error=result.error, next_attempt_at=retry_at, updated_at=now_iso))
            rest = claimed[result.sent + 1:]
            if rest:  # not tried: hand them back, due at once
                conn.execute(update(event_deliveries).where(key).values(
                    next_attempt_at=None, updated_at=now_iso),
                    [{"b_sub": name, "b_event": c.event.event_id} for c in rest])
        return SubscriberReport(name, delivered=len(sent), retrying=0 if final else 1,
                                failed=1 if final else 0,
                                errors=((failed.event.event_id, result.error),))

    def run(self, batch: int) -> SubscriberReport:
        total = SubscriberReport(self.subscriber.name)
        while total.delivered < batch:
            cands = self.candidates(batch - total.delivered)
            if not cands:
                return total
            claimed = self.claim(cands)
            if not claimed:
                return _merge(total, SubscriberReport(total.subscriber, held=True))
            step = self.record(claimed, self.sender.send([c.event for c in claimed]))
            total = _merge(total, step)
            if step.errors:
                return total
            if len(claimed) < len(cands):
                return _merge(total, SubscriberReport(total.subscriber, held=True))
        return total


def _merge(a: SubscriberReport, b: SubscriberReport) -> SubscriberReport:
    return SubscriberReport(a.subscriber, a.delivered + b.delivered, a.retrying + b.retrying,
                            a.failed + b.failed, a.held or b.held, a.errors + b.errors)


def deliver_pending(landscape: Landscape, subscribers: Sequence[AnySubscriber], *,
                    clock: Clock | None = None, max_attempts: int = DEFAULT_MAX_ATTEMPTS,
                    batch: int = 500, backoff_s: float = DEFAULT_BACKOFF_S,
                    lease_s: float = DEFAULT_LEASE_S) -> DeliveryReport:
    """One delivery pass: up to ``batch`` events per subscriber, oldest first.

    Delivery failures are recorded per (subscriber, event) and reported, never raised; a
    database failure (the outbox cannot be read or the state written) does raise.
    """
    if max_attempts < 1 or batch < 1:
        raise ValueError("max_attempts and batch must be at least 1")
    reports = []
    for sub in subscribers:
        worker = _Pass(landscape, sub, build_sender(sub, landscape), clock or landscape.clock,
                       max_attempts, backoff_s, lease_s, sub.accepted_types())
        reports.append(worker.run(batch))
    return DeliveryReport(tuple(reports))


def retry_failed(landscape: Landscape, *, subscriber: str | None = None,
                 clock: Clock | None = None) -> int:
    """Give failed deliveries a fresh set of attempts (after the subscriber is fixed)."""
    now = to_iso((clock or landscape.clock).now())
    stmt = (update(event_deliveries).where(_t.status == DeliveryStatus.FAILED.value)
            .values(status=_PENDING, attempts=0, next_attempt_at=None, updated_at=now))
    if subscriber is not None:
        stmt = stmt.where(_t.subscriber == subscriber)
    with write_transaction(landscape.engine) as conn:
        return int(conn.execute(stmt).rowcount)
