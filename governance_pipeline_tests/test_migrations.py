"""Alembic builds the schema, on both backends, and what it builds is exactly ``schema.metadata``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.pool import NullPool

from governance_pipeline.contracts.errors import OperationalError
from governance_pipeline.contracts.ids import new_id
from governance_pipeline.landscape import migrate
from governance_pipeline.landscape.database import create_landscape_engine, normalize_url
from governance_pipeline.landscape.schema import metadata
from governance_pipeline.landscape.store import Landscape
from governance_pipeline_tests.conftest import PG_ENV, drop_pg_database


@pytest.fixture(params=["sqlite", "postgres"])
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of a database with no tables at all (not copied from the migrated template)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    admin = os.environ.get(PG_ENV)
    if not admin:
        if os.environ.get("CI"):
            pytest.fail(f"{PG_ENV} is not set in CI: PostgreSQL tests must run, not skip")
        pytest.skip(f"PostgreSQL not configured: set {PG_ENV}")
    name = f"gp_migr_{new_id()[-12:]}_{os.getpid()}"
    engine = create_engine(normalize_url(admin), poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    engine.dispose()
    url = normalize_url(admin).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        drop_pg_database(admin, url)


def test_upgrade_of_an_empty_database_reaches_head(empty_db_url: str) -> None:
    engine = create_landscape_engine(empty_db_url)
    try:
        assert migrate.current_revision(engine) is None
        assert migrate.upgrade(engine) == migrate.head_revision()
        assert migrate.current_revision(engine) == migrate.head_revision()
        tables = set(inspect(engine).get_table_names())
        assert set(metadata.tables) <= tables
        migrate.require_head(engine)
        assert migrate.upgrade(engine) == migrate.head_revision()  # a second upgrade is a no-op
    finally:
        engine.dispose()


def test_migrated_schema_matches_the_code(empty_db_url: str) -> None:
    engine = create_landscape_engine(empty_db_url)
    try:
        migrate.upgrade(engine)
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True,
                                                             "compare_server_default": True})
            differences = compare_metadata(context, metadata)
    finally:
        engine.dispose()
    assert differences == []


def test_comparison_notices_a_schema_that_drifted(empty_db_url: str) -> None:
    """The must-reject twin of the test above: a drifted database is reported, not waved through."""
    engine = create_landscape_engine(empty_db_url)
    try:
        migrate.upgrade(engine)
        with engine.begin() as conn:
            conn.execute(text("DROP INDEX ix_events_scope"))
            conn.execute(text("CREATE TABLE stray (id INTEGER PRIMARY KEY)"))
        with engine.connect() as conn:
            differences = compare_metadata(MigrationContext.configure(conn), metadata)
    finally:
        engine.dispose()
    kinds = {(d[0], getattr(d[1], "name", None)) for d in differences if isinstance(d, tuple)}
    assert ("add_index", "ix_events_scope") in kinds
    assert ("remove_table", "stray") in kinds


def test_opening_an_unmigrated_database_without_upgrade_is_refused(empty_db_url: str,
                                                                   tmp_path: Path) -> None:
    with pytest.raises(OperationalError) as info:
        Landscape.open(empty_db_url, tmp_path / "keys", upgrade=False)
    assert info.value.code.code == "GP-DB-002"
    assert "db upgrade" in info.value.code.fix


def test_opening_with_upgrade_migrates_and_then_opens_without(empty_db_url: str,
                                                              tmp_path: Path) -> None:
    Landscape.open(empty_db_url, tmp_path / "keys").dispose()
    landscape = Landscape.open(empty_db_url, tmp_path / "keys", upgrade=False)
    try:
        assert migrate.current_revision(landscape.engine) == migrate.head_revision()
    finally:
        landscape.dispose()
