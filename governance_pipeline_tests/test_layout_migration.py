"""Revision 0009 (the indexes of the bulk tables) on a database that already holds runs, on both
backends: a triage run recorded by the engine (forks, coalesce, batches buffered across chunks)
and the synthetic run, stored at 0008, upgrade; afterwards every record is unchanged and still
matches the ledger (verify), explain shows the same lineage, the sweep is clean, and the
database itself still refuses a second terminal outcome of a token. The downgrade restores the
0008 indexes. A database holding a token with two outcomes of one kind is refused before
anything changes (GP-DB-101)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Engine, insert, inspect, select

from governance_pipeline.contracts.errors import AuditIntegrityError
from governance_pipeline.engine.config import load_pipeline
from governance_pipeline.engine.runner import Runner
from governance_pipeline.landscape import migrate
from governance_pipeline.landscape.database import create_landscape_engine
from governance_pipeline.landscape.explain import explain
from governance_pipeline.landscape.recorder import Recorder
from governance_pipeline.landscape.schema import metadata, token_outcomes, tokens
from governance_pipeline.landscape.store import Landscape
from governance_pipeline.landscape.sweep import sweep
from governance_pipeline.landscape.verify import verify
from governance_pipeline_tests.engine_fixtures import triage_variant, write_claims, write_pipeline
from governance_pipeline_tests.migration_copy import copy_into_revision
from governance_pipeline_tests.synthetic import record_synthetic_run
from governance_pipeline_tests.tamper import raw_connection
from governance_pipeline_tests.test_migrations import empty_db_url  # noqa: F401 - fixture

OLD, NEW = "0008", "0009"
BULK = ("rows", "tokens", "token_parents", "node_states", "token_outcomes", "routing_events",
        "payloads", "calls", "batch_members", "compact_states")
INDEXES_0008 = {
    "token_outcomes": {("ix_token_outcomes_run_id_outcome", ("run_id", "outcome"), False),
                       ("ix_token_outcomes_token_id_outcome", ("token_id", "outcome"), False),
                       ("uq_token_terminal_outcome", ("token_id",), True)},
    "tokens": {("ix_tokens_run_id_row_id", ("run_id", "row_id"), False)}}
INDEXES_0009 = {
    "token_outcomes": {("ix_token_outcomes_run_id_outcome", ("run_id", "outcome"), False),
                       ("uq_token_terminal_outcome", ("token_id", "is_terminal"), True)},
    "tokens": {("ix_tokens_run_id_row_id", ("run_id", "row_id"), False),
               ("ix_tokens_join_group_id", ("join_group_id",), False)}}


# How each backend names the index a second outcome of a token runs into (not the primary key).
_BY_TOKEN = r"uq_token_terminal_outcome|UNIQUE constraint failed: token_outcomes\.token_id"


def _indexes(engine: Engine) -> dict[str, set[tuple[str, tuple[str, ...], bool]]]:
    found = inspect(engine)
    return {t: {(i["name"], tuple(i["column_names"]), bool(i["unique"]))
                for i in found.get_indexes(t)} for t in INDEXES_0008}


def _downgrade(engine: Engine, revision: str) -> None:
    cfg = migrate._config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A head Landscape (SQLite) holding an engine triage run and the synthetic run."""
    root = tmp_path_factory.mktemp("layout")
    data = write_claims(root / "claims.csv", 60, seed=20261204)
    doc = triage_variant(data, chunk_size=20, batch_count=4, reject_below=150, fail_every_n=9)
    for sink in doc["sinks"].values():
        sink["options"]["path"] = sink["options"]["path"].replace("${GOVERNANCE_HOME}", str(root))
    path = write_pipeline(root / "triage.yaml", doc)
    landscape = Landscape.open(f"sqlite:///{root / 'recorded.db'}", root / "keys")
    result = Runner.start(landscape, load_pipeline(path), base_dir=path.parent,
                          pipeline_path=path).execute()
    assert result.status.value == "completed", result
    record_synthetic_run(Recorder(landscape))  # a second scope, with records of every kind
    with landscape.engine.connect() as conn:
        o, later = token_outcomes, token_outcomes.alias("later")
        # Tokens buffered in one chunk and consumed in a later one: two outcomes, one of each kind.
        both = list(conn.execute(select(o.c.token_id).where(
            o.c.run_id == result.run_id, o.c.outcome == "buffered",
            o.c.token_id.in_(select(later.c.token_id).where(later.c.is_terminal == 1)))
            .order_by(o.c.token_id)).scalars())
        assert both, "no token was buffered and then consumed: the run does not exercise 0009"
        forked = conn.execute(select(tokens.c.row_id).where(
            tokens.c.run_id == result.run_id, tokens.c.fork_group_id.is_not(None))
            .order_by(tokens.c.row_id).limit(1)).scalar_one()
        batched = conn.execute(select(tokens.c.row_id).where(tokens.c.token_id == both[0])
                               ).scalar_one()
    rows = sorted({0, int(forked.rsplit(".r", 1)[1]), int(batched.rsplit(".r", 1)[1])})
    views = {i: explain(landscape, result.run_id, row_index=i).as_dict() for i in rows}
    yield {"landscape": landscape, "keys": root / "keys", "run_id": result.run_id,
           "views": views, "token": both[0],
           "snapshot": _snapshot(landscape.engine)}
    landscape.dispose()


def _snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    with engine.connect() as conn:
        return {t: sorted(map(tuple, conn.execute(select(metadata.tables[t]))), key=repr)
                for t in BULK}


def _copy_into_0008(source: Landscape, target_url: str) -> None:
    """Every row of ``source`` into a database migrated to 0008 (the columns and tables 0008
    has): what a 0008 database holding the same runs stores."""
    copy_into_revision(source, target_url, OLD)
    target = create_landscape_engine(target_url)
    try:
        assert _indexes(target) == INDEXES_0008
    finally:
        target.dispose()


def _copy_later_tables(source: Landscape, target: Engine) -> None:
    """The rows of tables that revisions after 0009 added (compact_states, 0010), which today's
    engine writes: copied once ``target`` is at the head, so what the ledger committed is whole."""
    later = [t for t in metadata.sorted_tables if t.name in _LATER_TABLES]
    with source.engine.connect() as src, target.begin() as dst:
        for table in later:
            found = [dict(r._mapping) for r in src.execute(select(table))]
            if found:
                dst.execute(insert(table), found)


_LATER_TABLES = {"compact_states"}


def _outcome_row(db: Any, token: str, *, terminal: bool) -> dict[str, Any]:
    return db.row("token_outcomes", "token_id = ? AND is_terminal = ?", (token, int(terminal)))


def _insert_outcome(db: Any, row: dict[str, Any]) -> None:
    names = list(row)
    db.execute(f"INSERT INTO token_outcomes ({', '.join(names)}) VALUES "
               f"({', '.join('?' * len(names))})", tuple(row[n] for n in names))


def test_runs_stored_at_0008_upgrade_and_read_the_same(recorded: dict[str, Any],
                                                        empty_db_url: str) -> None:  # noqa: F811
    _copy_into_0008(recorded["landscape"], empty_db_url)
    engine = create_landscape_engine(empty_db_url)
    try:
        assert migrate.upgrade(engine, NEW) == NEW
        assert _indexes(engine) == INDEXES_0009
    finally:
        engine.dispose()
    upgraded = Landscape.open(empty_db_url, recorded["keys"])  # on to the head
    try:
        assert migrate.current_revision(upgraded.engine) == migrate.head_revision()
        _copy_later_tables(recorded["landscape"], upgraded.engine)
        assert _snapshot(upgraded.engine) == recorded["snapshot"]
        report = verify(upgraded)  # every record still matches what the ledger committed
        assert report.ok, report.findings
        assert report.records_checked >= sum(len(rows) for t, rows in recorded["snapshot"].items()
                                             if t != "payloads")
        assert report.payloads_checked >= len(recorded["snapshot"]["payloads"])
        assert sweep(upgraded).ok
        for row, view in recorded["views"].items():
            assert explain(upgraded, recorded["run_id"], row_index=row).as_dict() == view
    finally:
        upgraded.dispose()

    # The database, not only the recorder, refuses a second outcome of either kind for a token.
    token = recorded["token"]
    with raw_connection(empty_db_url) as db:
        for terminal in (True, False):
            twin = _outcome_row(db, token, terminal=terminal)
            twin["outcome_id"] += "-twin"
            with pytest.raises(Exception, match=_BY_TOKEN) as refused:
                _insert_outcome(db, twin)
            assert type(refused.value).__name__ in ("IntegrityError", "UniqueViolation")


def test_the_downgrade_restores_the_0008_indexes_and_the_runs_still_verify(
        recorded: dict[str, Any], empty_db_url: str) -> None:  # noqa: F811
    _copy_into_0008(recorded["landscape"], empty_db_url)
    engine = create_landscape_engine(empty_db_url)
    try:
        migrate.upgrade(engine, NEW)
        _downgrade(engine, OLD)
        assert migrate.current_revision(engine) == OLD
        assert _indexes(engine) == INDEXES_0008
        with raw_connection(empty_db_url) as db:  # the 0008 partial index is back in force
            twin = _outcome_row(db, recorded["token"], terminal=True)
            twin["outcome_id"] += "-twin"
            with pytest.raises(Exception, match=_BY_TOKEN):
                _insert_outcome(db, twin)
        assert migrate.upgrade(engine) == migrate.head_revision()
        _copy_later_tables(recorded["landscape"], engine)
    finally:
        engine.dispose()
    landscape = Landscape.open(empty_db_url, recorded["keys"])
    try:
        report = verify(landscape)
        assert report.ok, report.findings
    finally:
        landscape.dispose()


def test_a_token_with_two_buffered_outcomes_is_refused_before_anything_changes(
        recorded: dict[str, Any], empty_db_url: str) -> None:  # noqa: F811
    _copy_into_0008(recorded["landscape"], empty_db_url)
    token = recorded["token"]
    with raw_connection(empty_db_url) as db:  # 0008 allows it: its index is on terminal ones only
        twin = _outcome_row(db, token, terminal=False)
        twin["outcome_id"] += "-twin"
        _insert_outcome(db, twin)
    engine = create_landscape_engine(empty_db_url)
    try:
        with pytest.raises(AuditIntegrityError) as refused:
            migrate.upgrade(engine)
        assert refused.value.code.code == "GP-DB-101"
        assert f"{token} (2 non-terminal)" in str(refused.value)
        assert "backup" in refused.value.code.fix
        assert migrate.current_revision(engine) == OLD
        assert _indexes(engine) == INDEXES_0008
    finally:
        engine.dispose()
