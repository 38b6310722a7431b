"""Shared fixtures: a real Landscape on a SQLite file and on a real PostgreSQL server.

The ``landscape`` fixture is parametrised over both backends. PostgreSQL comes from
``GOVERNANCE_TEST_PG_URL`` (the test script starts a server and sets it). Outside CI a missing
server skips those cases with a reason; in CI (``CI`` set) it is an error, so PostgreSQL tests
can never silently skip there.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from governance_pipeline.contracts.clock import ManualClock
from governance_pipeline.contracts.ids import new_id
from governance_pipeline.landscape import migrate
from governance_pipeline.landscape.database import create_landscape_engine, normalize_url
from governance_pipeline.landscape.recorder import Recorder
from governance_pipeline.landscape.store import Landscape

PG_ENV = "GOVERNANCE_TEST_PG_URL"
# Per process, so concurrent test sessions (and xdist workers) never share a template.
_TEMPLATE_DB = f"gp_test_template_{os.getpid()}"


def _pg_admin_url() -> str | None:
    url = os.environ.get(PG_ENV)
    if url:
        return url
    if os.environ.get("CI"):
        pytest.fail(f"{PG_ENV} is not set in CI: PostgreSQL tests must run, not skip")
    return None


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str | None]:
    """A PostgreSQL database migrated to head once per session; tests copy it."""
    admin = _pg_admin_url()
    if admin is None:
        yield None
        return
    admin_engine = create_engine(normalize_url(admin), poolclass=NullPool,
                                 isolation_level="AUTOCOMMIT")
    with admin_engine.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {_TEMPLATE_DB}"))
        conn.execute(text(f"CREATE DATABASE {_TEMPLATE_DB}"))
    template_url = normalize_url(admin).set(database=_TEMPLATE_DB)
    engine = create_landscape_engine(template_url)
    migrate.upgrade(engine)
    engine.dispose()
    yield admin
    with admin_engine.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {_TEMPLATE_DB} WITH (FORCE)"))
    admin_engine.dispose()


def fresh_pg_url(admin: str) -> str:
    """A new database copied from the migrated template; returns its URL."""
    name = f"gp_test_{new_id()[-12:]}_{os.getpid()}"
    engine = create_engine(normalize_url(admin), poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name} TEMPLATE {_TEMPLATE_DB}"))
    engine.dispose()
    return normalize_url(admin).set(database=name).render_as_string(hide_password=False)


def drop_pg_database(admin: str, url: str) -> None:
    name = make_url(url).database
    engine = create_engine(normalize_url(admin), poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite Landscape migrated to head once per session (per xdist worker), the SQLite
    twin of ``pg_template``: each test's database is a byte copy of it. The migrations write
    schema only (no rows, no clock), so the copy is what migrating afresh would give, without
    running every Alembic revision again for each of the suite's SQLite cases."""
    path = tmp_path_factory.mktemp("sqlite-template") / "landscape.db"
    engine = create_landscape_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    engine.dispose()  # closing the last connection checkpoints the WAL into the file
    assert not path.with_name(f"{path.name}-wal").exists(), "the template's WAL was not merged"
    return path


def fresh_sqlite_url(template: Path, path: Path) -> str:
    """A new SQLite Landscape at ``path``, copied from the migrated template; returns its URL."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, path)
    return f"sqlite:///{path}"


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, pg_template: str | None,
           sqlite_template: Path) -> Iterator[str]:
    """A URL of an empty, migrated audit database on each backend."""
    if request.param == "sqlite":
        yield fresh_sqlite_url(sqlite_template, tmp_path / "landscape.db")
        return
    if pg_template is None:
        pytest.skip(f"PostgreSQL not configured: set {PG_ENV} (scripts/test.sh does)")
    url = fresh_pg_url(pg_template)
    try:
        yield url
    finally:
        drop_pg_database(pg_template, url)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def landscape(db_url: str, tmp_path: Path, clock: ManualClock) -> Iterator[Landscape]:
    ls = Landscape.open(db_url, tmp_path / "keys", clock=clock)
    yield ls
    ls.dispose()


@pytest.fixture
def recorder(landscape: Landscape) -> Recorder:
    return Recorder(landscape)
