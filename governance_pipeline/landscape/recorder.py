"""The recorder: the only writer of the Landscape.

Work is collected in a ``UnitOfWork`` and written in one transaction: payloads, then each
table's records with one ``executemany`` in foreign-key order, then updates, then one ledger
entry committing to everything written. Nothing is committed per row. Invariants are checked
before insert (record ``__post_init__`` and the unit's own checks) and again by the database;
a constraint the database rejects becomes an ``AuditIntegrityError`` and nothing of the unit
is kept.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Table, and_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError

from governance_pipeline.contracts.clock import to_iso
from governance_pipeline.contracts.enums import Outcome, RunStatus, TerminationReason
from governance_pipeline.contracts.errors import (
    AUDIT_WRITE_FAILED,
    AuditIntegrityError,
    OperationalError,
)
from governance_pipeline.contracts.hashing import CANONICAL_VERSION, canonical_json, sha256_hex
from governance_pipeline.contracts.ids import new_id
from governance_pipeline.contracts.records import (
    AuditRecord,
    Run,
    Token,
    TokenOutcome,
    TokenParent,
)
from governance_pipeline.landscape import ledger
from governance_pipeline.landscape.schema import LEDGERED, metadata, payloads, runs
from governance_pipeline.landscape.store import Landscape

_INSERT_ORDER: tuple[Table, ...] = tuple(t for t in metadata.sorted_tables if t.name in LEDGERED)


class UnitOfWork:
    """The audit records of one transaction, collected in memory until the unit commits."""

    def __init__(self, scope: str, now: str) -> None:
        self.scope = scope
        self.now = now
        self._inserts: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._payloads: dict[str, bytes] = {}
        self._updates: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
        self._terminal: set[str] = set()

    # -- collecting ----------------------------------------------------------------------------
    def add(self, record: AuditRecord) -> None:
        if type(record) is TokenOutcome and record.is_terminal:
            if record.token_id in self._terminal:
                raise AuditIntegrityError(
                    f"token {record.token_id} given a second terminal outcome ({record.outcome})",
                    details={"token_id": record.token_id})
            self._terminal.add(record.token_id)
        self._inserts[record.TABLE].append(record.to_row())

    def add_all(self, records: Iterable[AuditRecord]) -> None:
        for record in records:
            self.add(record)

    def payload(self, value: Any) -> str:
        """Store ``value``'s canonical JSON by content; returns its hash."""
        data = canonical_json(value)
        digest = sha256_hex(data)
        self._payloads.setdefault(digest, data)
        return digest

    def payload_bytes(self, data: bytes) -> str:
        """Store raw bytes (e.g. a malformed source line) by content; returns their hash."""
        digest = sha256_hex(data)
        self._payloads.setdefault(digest, data)
        return digest

    def update(self, table: str, key: Mapping[str, Any], values: Mapping[str, Any]) -> None:
        """Change one existing ledgered record; its new content is committed to the ledger."""
        if table not in LEDGERED:
            raise ValueError(f"{table} is not a ledgered table")
        self._updates.append((table, dict(key), dict(values)))

    def fork(self, parent: Token, branches: Iterable[str], *, fork_group_id: str | None = None,
             sink_name: str | None = None) -> list[Token]:
        """Children of ``parent`` for each branch, their parent links and the parent's FORKED outcome.

        All of it lands in this unit's single transaction: there is no state in which children
        exist without parents or a parent is forked without children.
        """
        branch_list = list(branches)
        if not branch_list:
            raise AuditIntegrityError("fork without branches", details={"token_id": parent.token_id})
        group = fork_group_id or new_id("fg_")
        children = [Token(new_id("tok_"), parent.run_id, parent.row_id, branch, group, None, None,
                          self.now) for branch in branch_list]
        assert len(children) == len(branch_list)
        for ordinal, child in enumerate(children):
            self.add(child)
            self.add(TokenParent(child.token_id, parent.token_id, parent.run_id, ordinal))
        self.add(TokenOutcome(new_id("out_"), parent.run_id, parent.token_id, Outcome.FORKED, True,
                              sink_name, None, group, None, None, None, None, self.now))
        return children

    @property
    def is_empty(self) -> bool:
        return not (self._inserts or self._updates or self._payloads)

    # -- writing -------------------------------------------------------------------------------
    def _write(self, conn: Connection) -> list[ledger.ManifestItem]:
        if self._payloads:
            conn.execute(_payload_insert(conn), [
                {"content_hash": h, "size_bytes": len(d), "data": d, "created_at": self.now}
                for h, d in self._payloads.items()])
        items: list[ledger.ManifestItem] = []
        for table in _INSERT_ORDER:
            rows = self._inserts.get(table.name)
            if rows:
                conn.execute(table.insert(), rows)
                items.extend(ledger.manifest_for(table.name, rows))
        for name, key, values in self._updates:
            items.append(_apply_update(conn, name, key, values))
        return items


def _payload_insert(conn: Connection) -> Any:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(payloads).on_conflict_do_nothing(index_elements=["content_hash"])


def _apply_update(conn: Connection, name: str, key: dict[str, Any],
                  values: dict[str, Any]) -> ledger.ManifestItem:
    spec = LEDGERED[name]
    table = spec.table
    where = and_(*(table.c[k] == v for k, v in key.items()))
    result = conn.execute(update(table).where(where).values(**values))
    if result.rowcount != 1:
        raise AuditIntegrityError(f"update of {name} {key} matched {result.rowcount} records",
                                  details={"table": name, "key": key})
    row = conn.execute(select(table).where(where)).mappings().one()
    return (name, ledger.record_key(spec, row), ledger.record_hash(spec, row))


class Recorder:
    def __init__(self, landscape: Landscape) -> None:
        self.landscape = landscape

    def now(self) -> str:
        return to_iso(self.landscape.clock.now())

    @contextmanager
    def unit(self, scope: str, *, seal: bool = False) -> Iterator[UnitOfWork]:
        """Collect a transaction's records; they are written when the block exits normally.

        An exception inside the block discards the unit: nothing of it reaches the database.
        """
        uow = UnitOfWork(scope, self.now())
        yield uow
        self.commit(uow, seal=seal)

    def commit(self, uow: UnitOfWork, *, seal: bool = False) -> None:
        try:
            with self.landscape.engine.begin() as conn:
                ledger.lock_scope(conn, uow.scope)
                items = uow._write(conn)
                if items:
                    ledger.append_entry(conn, uow.scope, items, uow.now)
                if seal:
                    ledger.seal(conn, uow.scope, self.landscape.signer, uow.now)
        except IntegrityError as exc:
            raise AuditIntegrityError(
                f"the database refused the audit transaction (scope {uow.scope}): {exc.orig}",
                details={"scope": uow.scope}) from exc
        except DBAPIError as exc:
            raise OperationalError(f"audit write failed (scope {uow.scope}): {exc.orig}",
                                   code=AUDIT_WRITE_FAILED) from exc

    # -- run lifecycle ---------------------------------------------------------------------------
    def begin_run(self, *, pipeline_name: str, tenant_id: str, config: Mapping[str, Any],
                  policy_snapshot_id: str | None = None, run_id: str | None = None) -> Run:
        now = self.now()
        run = Run(
            run_id=run_id or new_id("run_"), pipeline_name=pipeline_name, tenant_id=tenant_id,
            config_hash=sha256_hex(canonical_json(config)),
            config_json=canonical_json(config).decode(), canonical_version=CANONICAL_VERSION,
            policy_snapshot_id=policy_snapshot_id, status=RunStatus.RUNNING,
            termination_reason=None, started_at=now, ended_at=None, heartbeat_at=now,
            dagster_run_id=None, resume_count=0, last_resumed_at=None)
        with self.unit(run.run_id) as uow:
            uow.add(run)
        return run

    def finish_run(self, run_id: str, status: RunStatus,
                   reason: TerminationReason | None) -> None:
        """Close a run and seal its chain with a signed checkpoint."""
        if status is RunStatus.RUNNING:
            raise ValueError("finish_run needs a final status")
        with self.unit(run_id, seal=True) as unit:
            unit.update("runs", {"run_id": run_id},
                        {"status": status, "termination_reason": reason, "ended_at": unit.now})

    def heartbeat(self, run_id: str) -> None:
        """Liveness only: not an audit fact, so not ledgered (see schema._UNHASHED)."""
        with self.landscape.engine.begin() as conn:
            conn.execute(update(runs).where(runs.c.run_id == run_id)
                         .values(heartbeat_at=self.now()))
