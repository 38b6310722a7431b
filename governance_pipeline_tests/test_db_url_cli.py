"""A mistyped database URL never yields a new, empty Landscape that verifies clean.

Commands that read an existing Landscape refuse a SQLite file that does not exist, or a
PostgreSQL database without the Landscape schema (GP-DB-005), and create nothing; the commands
that start a Landscape (``db upgrade``, ``demo``, ``run``) still create it. URLs that would open
some other database (in-memory SQLite, an unknown dialect) are configuration errors.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from governance_pipeline.contracts.ids import new_id
from governance_pipeline.landscape.database import normalize_url
from governance_pipeline_tests.conftest import drop_pg_database
from governance_pipeline_tests.test_cli import run

READING_COMMANDS = [("verify",), ("sweep",), ("runs",), ("incidents",), ("events",),
                    ("approvals", "list"), ("explain", "run_x", "--row", "0"),
                    ("resume", "run_x"), ("export", "evidence", "run_x", "--out", "bundle")]


@pytest.fixture
def missing_url(db_url: str, tmp_path: Path, pg_template: str | None) -> Iterator[str]:
    """On the backend of ``db_url``: a URL where no Landscape is (a typo'd file, an empty DB)."""
    if make_url(db_url).get_backend_name() == "sqlite":
        yield f"sqlite:///{tmp_path / 'typo' / 'landscpe.db'}"
        return
    assert pg_template is not None
    name = f"gp_empty_{new_id()[-12:]}"
    admin = create_engine(normalize_url(pg_template), poolclass=NullPool,
                          isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    url = normalize_url(pg_template).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        drop_pg_database(pg_template, url)


def _tables(url: str) -> list[str]:
    engine = create_engine(normalize_url(url), poolclass=NullPool)
    try:
        return inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_reading_commands_refuse_a_database_that_is_not_a_landscape(
        missing_url: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    for command in READING_COMMANDS:
        result = run(home, *command, db_url=missing_url)
        assert result.code == 2, (command, result.err)
        assert result.err.startswith("error GP-DB-005: no Landscape at "), (command, result.err)
        assert "\nfix: " in result.err and "db upgrade" in result.err
        assert "Traceback" not in result.err
    doc = run(home, "verify", "--json", db_url=missing_url)
    assert doc.code == 2 and doc.json()["code"] == "GP-DB-005"
    if make_url(missing_url).get_backend_name() == "sqlite":
        assert not Path(str(make_url(missing_url).database)).parent.exists(), "nothing created"
    else:
        assert _tables(missing_url) == [], "no schema may be created by a reading command"


def test_the_same_commands_read_an_existing_landscape(db_url: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    for command in (("verify",), ("sweep",), ("runs",), ("incidents",), ("approvals", "list")):
        result = run(home, *command, db_url=db_url)
        assert result.code == 0, (command, result.err)


def test_db_upgrade_creates_the_landscape_the_reading_commands_then_accept(
        missing_url: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert run(home, "runs", db_url=missing_url).code == 2
    assert run(home, "db", "upgrade", db_url=missing_url).code == 0
    assert "alembic_version" in _tables(missing_url)
    result = run(home, "verify", db_url=missing_url)
    assert result.code == 0, result.err
    assert run(home, "runs", db_url=missing_url).code == 0


def test_demo_starts_a_landscape_on_a_fresh_home(tmp_path: Path) -> None:
    home = tmp_path / "fresh"
    assert run(home, "demo").code == 0
    assert (home / "landscape.db").is_file()
    assert run(home, "verify").code == 0


def test_an_empty_sqlite_file_is_not_a_landscape(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    result = run(tmp_path / "home", "verify", db_url=f"sqlite:///{empty}")
    assert result.code == 2 and "GP-DB-005" in result.err and "no Landscape schema" in result.err
    assert empty.stat().st_size == 0


@pytest.mark.parametrize(("url", "code", "hint"), [
    ("sqlite://landscape.db", "GP-CONFIG-003", "in-memory"),
    ("sqlite://", "GP-CONFIG-003", "in-memory"),
    ("sqlite:/landscape.db", "GP-CONFIG-002", "did you mean 'sqlite:///landscape.db'"),
    ("postgress://u@127.0.0.1/db", "GP-CONFIG-002", "did you mean postgresql://"),
    ("sqlite3:///landscape.db", "GP-CONFIG-002", "did you mean sqlite://"),
])
def test_a_mistyped_url_is_a_configuration_error_that_creates_nothing(
        tmp_path: Path, url: str, code: str, hint: str) -> None:
    home = tmp_path / "home"
    for command in (("verify",), ("db", "upgrade"), ("demo",)):
        result = run(home, *command, db_url=url)
        assert result.code == 2, (command, result.err)
        assert f"\nerror {code}: " in "\n" + result.err, result.err  # demo notes a line first
        assert hint in result.err and "\nfix: " in result.err
    assert not (tmp_path / "landscape.db").exists() and not (home / "landscape.db").exists()


def test_a_well_formed_relative_sqlite_url_is_created_by_db_upgrade(tmp_path: Path) -> None:
    home = tmp_path / "home"  # the CLI runs with cwd tmp_path: the relative file lands there
    assert run(home, "db", "upgrade", db_url="sqlite:///landscape.db").code == 0
    assert (tmp_path / "landscape.db").is_file()
    assert run(home, "verify", db_url="sqlite:///landscape.db").code == 0
