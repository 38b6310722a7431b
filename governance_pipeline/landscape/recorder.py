"""The recorder: the only writer of the Landscape.

Work is collected in a ``UnitOfWork`` and written in one transaction: payloads, then each
table's records with one bulk insert in foreign-key order (``bulk``: ``executemany`` on SQLite,
binary ``COPY`` on PostgreSQL), then updates, then one ledger entry committing to everything
written. Nothing is committed per row. Invariants are checked before insert (record
``__post_init__`` and the unit's own checks) and again by the database; a constraint the database
rejects becomes an ``AuditIntegrityError`` and nothing of the unit is kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields
from operator import attrgetter
from typing import Any, get_type_hints

from sqlalchemy import Connection, Table, and_, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from governance_pipeline.contracts.clock import to_iso
from governance_pipeline.contracts.enums import (
    AnchorReason,
    Outcome,
    RunStatus,
    TerminationReason,
)
from governance_pipeline.contracts.errors import (
    AUDIT_WRITE_FAILED,
    AuditIntegrityError,
    OperationalError,
    StaleStateError,
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
from governance_pipeline.landscape import anchors, bulk, ledger, witness
from governance_pipeline.landscape.database import write_failure_code, write_transaction
from governance_pipeline.landscape.schema import GLOBAL_SCOPE, LEDGERED, metadata, runs
from governance_pipeline.landscape.sealing import PayloadProtection, Subject, subject_of
from governance_pipeline.landscape.store import Landscape

_INSERT_ORDER: tuple[Table, ...] = tuple(t for t in metadata.sorted_tables if t.name in LEDGERED)

Row = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class _Layout:
    """How records of one class become rows: values in table column order, flags as 0/1."""

    table: str
    columns: tuple[str, ...]
    values: Callable[[AuditRecord], Row]
    flags: tuple[int, ...]
    scope_at: int | None
    manifest: ledger.RowsManifest
    #: The record's fields are its table's columns in order: its constructor's arguments are a row.
    in_column_order: bool
    #: For token outcomes: where a row holds token_id, is_terminal and outcome.
    terminal_at: tuple[int, int, int] | None

    def with_flags(self, row: Row) -> Row:
        cells = list(row)
        for i in self.flags:
            if cells[i] is not None:
                cells[i] = int(cells[i])
        return tuple(cells)


_LAYOUTS: dict[type, _Layout] = {}


def _layout(cls: type[AuditRecord]) -> _Layout:
    layout = _LAYOUTS.get(cls)
    if layout is not None:
        return layout
    spec = LEDGERED.get(getattr(cls, "TABLE", ""))
    if spec is None:
        raise TypeError(f"{cls.__name__} is not a ledgered audit record "
                        "(payloads are added with payload() / payload_bytes())")
    columns = tuple(c.name for c in spec.table.columns)
    names = tuple(f.name for f in fields(cls))  # type: ignore[arg-type]
    if set(names) != set(columns):
        raise TypeError(f"{cls.__name__} fields do not match the columns of {spec.name}")
    hints = get_type_hints(cls)
    flags = tuple(i for i, c in enumerate(columns) if hints[c] in (bool, bool | None))
    scope_at = columns.index(spec.scope_column) if spec.scope_column else None
    layout = _Layout(spec.name, columns, attrgetter(*columns), flags, scope_at,
                     ledger.rows_manifest(spec, columns), names == columns,
                     tuple(map(columns.index, ("token_id", "is_terminal", "outcome")))
                     if cls is TokenOutcome else None)
    _LAYOUTS[cls] = layout
    return layout


class UnitOfWork:
    """The audit records of one transaction, collected in memory until the unit commits.

    Records are validated as they are added (their own ``__post_init__``, the unit's scope, one
    terminal outcome per token) and kept as row tuples in table column order, the form both the
    driver's bulk insert and the ledger's record hash take without further conversion.
    """

    def __init__(self, scope: str, now: str) -> None:
        self.scope = scope
        self.now = now
        self._rows: dict[str, list[Row]] = {}
        self._manifest: dict[str, ledger.RowsManifest] = {}
        self._payloads: dict[str, bytes] = {}
        #: Declared subject fields (set by the engine for a pipeline's ``subject_fields``): a
        #: payload naming one is encrypted under its subject's data key at commit (sealing.py).
        self.subject_fields: tuple[str, ...] = ()
        self._subjects: dict[str, Subject] = {}
        self._updates: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]] = []
        self._guards: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
        self._effects: list[Callable[[Connection], None]] = []
        self._terminal: set[str] = set()

    # -- collecting ----------------------------------------------------------------------------
    def add(self, record: AuditRecord) -> None:
        cls = type(record)
        layout = _LAYOUTS.get(cls) or _layout(cls)
        row = layout.values(record)
        if layout.flags:
            row = layout.with_flags(row)
        self._append(cls, layout, row)

    def add_row(self, cls: type[AuditRecord], values: Row) -> None:
        """Add a record the engine built itself, given as ``cls``'s constructor arguments.

        The record object is not built and its ``__post_init__`` not run: every invariant it
        checks is also a CHECK constraint of its table, enforced when the unit commits, where a
        violation discards the whole unit as ``AuditIntegrityError``. The scope (which no
        constraint knows) and one terminal outcome per token are still checked here, as ``add``
        checks them. Records of external input go through ``add``.
        """
        layout = _LAYOUTS.get(cls) or _layout(cls)
        if not layout.in_column_order:
            self.add(cls(*values))
            return
        self._append(cls, layout, layout.with_flags(values) if layout.flags else values)

    def _append(self, cls: type[AuditRecord], layout: _Layout, row: Row) -> None:
        """Keep ``row`` for the commit, after the checks no table constraint can make."""
        # A record must sit in the chain verify will look for it in: its run's, or the global one.
        scope = GLOBAL_SCOPE if layout.scope_at is None else row[layout.scope_at]
        if scope != self.scope:
            raise AuditIntegrityError(
                f"{cls.__name__} belongs to scope {scope}, not to this unit's scope {self.scope}",
                details={"scope": self.scope, "record_scope": scope})
        if layout.terminal_at is not None:
            self._one_terminal(layout.terminal_at, row)
        rows = self._rows.get(layout.table)
        if rows is None:
            rows = self._rows[layout.table] = []
            self._manifest[layout.table] = layout.manifest
        rows.append(row)

    def _one_terminal(self, at: tuple[int, int, int], row: Row) -> None:
        """One terminal outcome per token: checked here and by the unique index
        (token_id, is_terminal)."""
        token_at, terminal_at, outcome_at = at
        if not row[terminal_at]:
            return
        token_id = row[token_at]
        if token_id in self._terminal:
            raise AuditIntegrityError(
                f"token {token_id} given a second terminal outcome ({row[outcome_at]})",
                details={"token_id": token_id})
        self._terminal.add(token_id)

    def add_all(self, records: Iterable[AuditRecord]) -> None:
        for record in records:
            self.add(record)

    def payload(self, value: Any) -> str:
        """Store ``value``'s canonical JSON by content; returns its hash."""
        data = canonical_json(value)
        digest = sha256_hex(data)
        self._payloads.setdefault(digest, data)
        if self.subject_fields:
            subject = subject_of(self.subject_fields, value)
            if subject is not None:
                self._subjects[digest] = subject
        return digest

    def inherit_subject(self, digest: str | None, subject: Subject) -> None:
        """Seal a payload of this unit under ``subject``'s key unless it names a subject of its
        own: a row's derived payloads (a transform's output without the identifier, a call's
        request) belong to the row's subject through the lineage the trail records."""
        if digest is not None and digest in self._payloads and digest not in self._subjects:
            self._subjects[digest] = subject

    def subject_of_payload(self, digest: str) -> Subject | None:
        return self._subjects.get(digest)

    def payload_bytes(self, data: bytes) -> str:
        """Store raw bytes (e.g. a malformed source line) by content; returns their hash."""
        digest = sha256_hex(data)
        self._payloads.setdefault(digest, data)
        return digest

    def update(self, table: str, key: Mapping[str, Any], values: Mapping[str, Any], *,
               expect: Mapping[str, Any] | None = None) -> None:
        """Change one existing ledgered record; its new content is committed to the ledger.

        With ``expect``, the change applies only if the record still holds those column values
        when the transaction writes (compare-and-set); otherwise the whole unit is discarded and
        ``StaleStateError`` raised. Of several processes racing for the same change, exactly one
        succeeds: the check and the write are one statement inside the scope's write lock.
        """
        if table not in LEDGERED:
            raise ValueError(f"{table} is not a ledgered table")
        self._updates.append((table, dict(key), dict(values), dict(expect or {})))

    def guard(self, table: str, key: Mapping[str, Any], expect: Mapping[str, Any]) -> None:
        """Write this unit only if the record ``key`` of ``table`` holds the ``expect``-ed values
        at commit time (checked inside the transaction); else ``StaleStateError``, nothing kept."""
        self._guards.append((table, dict(key), dict(expect)))

    def effect(self, fn: Callable[[Connection], None]) -> None:
        """Run ``fn(conn)`` in this unit's transaction, after its inserts and updates.

        For changes outside the ledgered tables that must commit or roll back with the records
        that account for them: a purge blanking payload contents, an erasure destroying keys.
        """
        self._effects.append(fn)

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
        return not (self._rows or self._updates or self._payloads)

    @property
    def has_updates(self) -> bool:
        return bool(self._updates)

    def pending_rows(self) -> dict[str, list[Row]]:
        """The rows commit will insert, per table, as tuples in table column order."""
        return {name: list(rows) for name, rows in self._rows.items()}

    def pending_payloads(self) -> dict[str, bytes]:
        """The payloads commit will store, by content hash."""
        return dict(self._payloads)

    # -- writing -------------------------------------------------------------------------------
    def _insert_manifest(self) -> list[ledger.Section]:
        """Manifest sections of the inserts, in write order. They depend on the rows alone, so
        the recorder computes them before it takes the write lock."""
        return [self._manifest[table.name](rows) for table in _INSERT_ORDER
                if (rows := self._rows.get(table.name))]

    def _write(self, conn: Connection,
               protection: PayloadProtection | None = None) -> list[ledger.Section]:
        """Check the guards, insert everything, apply the updates; returns the updates'
        manifest sections."""
        for name, key, expect in self._guards:
            _check_guard(conn, name, key, expect)
        if self._payloads:
            now = self.now
            if self._subjects and protection is not None:
                payload_rows = protection.seal_rows(conn, self._payloads, self._subjects, now)
            else:
                payload_rows = [(h, len(d), d, now, None) for h, d in self._payloads.items()]
            bulk.insert_payloads(conn, payload_rows)
        for table in _INSERT_ORDER:
            rows = self._rows.get(table.name)
            if rows:
                bulk.insert_rows(conn, table, rows)
        items = [_apply_update(conn, self.scope, name, key, values, expect)
                 for name, key, values, expect in self._updates]
        for fn in self._effects:
            fn(conn)
        return ledger.sections_of(items)


@dataclass(frozen=True, slots=True)
class Not:
    """In an ``expect`` mapping: the column must hold anything but ``value``."""

    value: Any

    def __str__(self) -> str:
        return f"not {self.value}"


def _match(column: Any, v: Any) -> Any:
    if isinstance(v, Not):
        return column.is_not(None) if v.value is None else column != v.value
    return column.is_(None) if v is None else column == v


def _matches(table: Table, values: Mapping[str, Any]) -> list[Any]:
    return [_match(table.c[k], v) for k, v in values.items()]


def _stale(name: str, key: dict[str, Any], expect: dict[str, Any]) -> StaleStateError:
    return StaleStateError(
        f"{name} {key} no longer holds {expect}: another process changed it first",
        details={"table": name, "key": {k: str(v) for k, v in key.items()},
                 "expected": {k: None if v is None else str(v) for k, v in expect.items()}})


def _check_guard(conn: Connection, name: str, key: dict[str, Any],
                 expect: dict[str, Any]) -> None:
    table = metadata.tables[name]
    found = conn.execute(select(table.c[next(iter(key))])
                         .where(*_matches(table, key), *_matches(table, expect))).first()
    if found is None:
        raise _stale(name, key, expect)


def _apply_update(conn: Connection, scope: str, name: str, key: dict[str, Any],
                  values: dict[str, Any], expect: dict[str, Any]) -> ledger.ManifestItem:
    spec = LEDGERED[name]
    table = spec.table
    where = and_(*_matches(table, key))
    result = conn.execute(update(table).where(where, *_matches(table, expect)).values(**values))
    if result.rowcount != 1:
        if expect and result.rowcount == 0:
            raise _stale(name, key, expect)
        raise AuditIntegrityError(f"update of {name} {key} matched {result.rowcount} records",
                                  details={"table": name, "key": key})
    row = conn.execute(select(table).where(where)).mappings().one()
    record_scope = row[spec.scope_column] if spec.scope_column else GLOBAL_SCOPE
    if record_scope != scope:
        raise AuditIntegrityError(f"update of {name} {key} (scope {record_scope}) in a unit of "
                                  f"scope {scope}", details={"table": name, "key": key})
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
        # Hashing the records and encoding the manifest is most of the recorder's own work; done
        # before the transaction, it does not lengthen the time the write lock is held.
        sections = uow._insert_manifest()
        encoded = ledger.encode_sections(sections) if sections and not uow.has_updates else None
        global_head: tuple[str, ledger.ChainHead] | None = None
        sealing = self.landscape.protection if uow._subjects else None
        committed = False
        try:
            with write_transaction(self.landscape.engine) as conn:
                ledger.lock_scope(conn, uow.scope)
                sections += uow._write(conn, self.landscape.protection)
                head = (ledger.append_sections(conn, uow.scope, sections, uow.now,
                                               encoded=encoded) if sections else None)
                if uow.scope == GLOBAL_SCOPE:
                    # Every global commit is sealed: its tail cannot be rewritten without the key.
                    if sections or seal:
                        ledger.seal(conn, uow.scope, self.landscape.signer, uow.now, head=head)
                    if head is not None:
                        global_head = (anchors.global_chain_id(conn, head), head)
                else:
                    if seal:
                        ledger.seal(conn, uow.scope, self.landscape.signer, uow.now, head=head)
                    reason = (AnchorReason.SEALED if seal else
                              AnchorReason.OPENED if "runs" in uow._rows else None)
                    if reason is not None:
                        global_head = self._anchor(conn, uow.scope, reason, uow.now)
            committed = True
        except IntegrityError as exc:
            raise AuditIntegrityError(
                f"the database refused the audit transaction (scope {uow.scope}): {exc.orig}",
                details={"scope": uow.scope}) from exc
        except DBAPIError as exc:
            raise OperationalError(f"audit write failed (scope {uow.scope}): {exc.orig}",
                                   code=write_failure_code(exc, AUDIT_WRITE_FAILED)) from exc
        finally:
            if sealing is not None:  # the subject index entries this unit wrote, if it did
                sealing.committed(committed)
        if global_head is not None:  # committed: the witness may now move forward
            chain_id, head = global_head
            witness.record(self.landscape.keys_dir, chain_id, head.seq, head.entry_hash)

    def _anchor(self, conn: Connection, run_id: str, reason: AnchorReason,
                now: str) -> tuple[str, ledger.ChainHead] | None:
        """Commit the run's new head to the global chain, in the run unit's transaction;
        returns the global chain's id and new head, if an anchor was written.

        Lock order is always run scope, then global: no global unit ever takes a run's lock.
        """
        ledger.lock_scope(conn, GLOBAL_SCOPE)
        anchor = anchors.anchor_record(conn, run_id, reason, now)
        if anchor is None:
            return None
        unit = UnitOfWork(GLOBAL_SCOPE, now)
        unit.add(anchor)
        sections = unit._insert_manifest() + unit._write(conn)
        head = ledger.append_sections(conn, GLOBAL_SCOPE, sections, now)
        ledger.seal(conn, GLOBAL_SCOPE, self.landscape.signer, now, head=head)
        return anchors.global_chain_id(conn, head), head

    # -- run lifecycle ---------------------------------------------------------------------------
    def begin_run(self, *, pipeline_name: str, tenant_id: str, config: Mapping[str, Any],
                  policy_snapshot_id: str | None = None, run_id: str | None = None,
                  pipeline_path: str | None = None, worker: str | None = None,
                  records: Iterable[AuditRecord] = ()) -> Run:
        """Record a new running run, with ``records`` (its nodes, edges…) in the same transaction."""
        now = self.now()
        config_bytes = canonical_json(config)
        run = Run(
            run_id=run_id or new_id("run_"), pipeline_name=pipeline_name, tenant_id=tenant_id,
            config_hash=sha256_hex(config_bytes), config_json=config_bytes.decode(),
            canonical_version=CANONICAL_VERSION, policy_snapshot_id=policy_snapshot_id,
            status=RunStatus.RUNNING, termination_reason=None, started_at=now, ended_at=None,
            pipeline_path=pipeline_path, heartbeat_at=now, worker=worker, dagster_run_id=None,
            resume_count=0, last_resumed_at=None)
        with self.unit(run.run_id) as uow:
            uow.add(run)
            uow.add_all(records)
        return run

    def finish_run(self, run_id: str, status: RunStatus,
                   reason: TerminationReason | None) -> None:
        """Close a run and seal its chain with a signed checkpoint."""
        if status is RunStatus.RUNNING:
            raise ValueError("finish_run needs a final status")
        with self.unit(run_id, seal=True) as unit:
            unit.update("runs", {"run_id": run_id},
                        {"status": status, "termination_reason": reason, "ended_at": unit.now})

    def heartbeat(self, run_id: str, worker: str | None = None) -> None:
        """Liveness only: not an audit fact, so not ledgered (see schema._UNHASHED)."""
        values: dict[str, Any] = {"heartbeat_at": self.now()}
        if worker is not None:
            values["worker"] = worker
        with self.landscape.engine.begin() as conn:
            conn.execute(update(runs).where(runs.c.run_id == run_id).values(**values))
