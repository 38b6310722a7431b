"""Source errors and locked or read-only audit databases end in ``error GP-...`` and ``fix:``
with the right exit code, and no traceback unless ``--debug`` asks for it (real subprocesses).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
import yaml
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from governance_pipeline.landscape.database import normalize_url
from governance_pipeline_tests.test_cli import Result, run

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
LEAKS = ("Traceback", "Stack Trace")
FAST_LOCK = {"GOVERNANCE_SQLITE_BUSY_TIMEOUT_MS": "300"}


def _pipeline(directory: Path, source: dict[str, object], name: str = "p") -> Path:
    doc = {"name": name, "source": {**source, "on_success": "out"},
           "sinks": {"out": {"plugin": "csv", "options": {"path": f"out/{name}.csv"}}}}
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _good(directory: Path) -> Path:
    shutil.copy(EXAMPLES / "data" / "claims.csv", directory / "claims.csv")
    return _pipeline(directory, {"plugin": "csv", "options": {"path": "claims.csv"}}, "good")


def _clean_error(result: Result, code: str, exit_code: int) -> None:
    assert result.code == exit_code, result.err
    assert f"error {code}: " in result.err and "\nfix: " in result.err, result.err
    assert not any(leak in result.err for leak in LEAKS), result.err


@pytest.mark.parametrize(("make", "code", "exit_code"), [
    (lambda d: (d / "adir").mkdir() or {"plugin": "csv", "options": {"path": "adir"}},
     "GP-IO-001", 1),
    (lambda d: {"plugin": "jsonl", "options": {"path": "missing.jsonl"}}, "GP-IO-001", 1),
    (lambda d: (d / "x.csv").write_bytes(os.urandom(64) + b"\r\n\x00" * 8)
     and {"plugin": "csv", "options": {"path": "x.csv"}}, "GP-SOURCE-002", 2),
    (lambda d: (d / "x.parquet").write_bytes(b"not parquet at all")
     and {"plugin": "parquet", "options": {"path": "x.parquet"}}, "GP-SOURCE-002", 2),
])
def test_a_source_that_cannot_be_read_is_one_error_line_without_a_traceback(
        tmp_path: Path, make, code: str, exit_code: int) -> None:  # type: ignore[no-untyped-def]
    home = tmp_path / "home"
    pipeline = _pipeline(tmp_path, make(tmp_path))
    _clean_error(run(home, "run", str(pipeline)), code, exit_code)
    loud = run(home, "--debug", "run", str(pipeline))
    assert loud.code == exit_code and any(leak in loud.err for leak in LEAKS), \
        "--debug keeps the traceback"
    assert run(home, "run", str(_good(tmp_path))).code == 0  # the twin


def test_a_binary_pipeline_file_is_a_configuration_error(tmp_path: Path) -> None:
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"name: x\n\xff\xfe: 1\n")
    _clean_error(run(tmp_path / "home", "validate", str(binary)), "GP-CONFIG-001", 2)
    assert run(tmp_path / "home", "validate", str(_good(tmp_path))).code == 0


@contextmanager
def _sqlite_writer_lock(db_file: Path) -> Iterator[None]:
    """Another process holding a write transaction on the SQLite file."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, sys\n"
         f"c = sqlite3.connect({str(db_file)!r}, isolation_level=None)\n"
         "c.execute('BEGIN IMMEDIATE'); print('locked', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)


@contextmanager
def _pg_table_lock(db_url: str) -> Iterator[None]:
    """Another session holding an exclusive lock on the ledger; writers give up after 300 ms."""
    engine = create_engine(normalize_url(db_url), poolclass=NullPool,
                           isolation_level="AUTOCOMMIT")
    name = make_url(db_url).database
    with engine.connect() as conn:
        conn.execute(text(f"ALTER DATABASE {name} SET lock_timeout = '300ms'"))
    engine.dispose()
    dsn = make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn) as conn:
        conn.execute("LOCK TABLE ledger_entries IN ACCESS EXCLUSIVE MODE")
        yield
        conn.rollback()


def test_a_locked_audit_database_is_an_operational_error_naming_the_lock(
        tmp_path: Path, db_url: str) -> None:
    home = tmp_path / "home"
    pipeline = _good(tmp_path)
    sqlite = make_url(db_url).get_backend_name() == "sqlite"
    lock = _sqlite_writer_lock(Path(str(make_url(db_url).database))) if sqlite \
        else _pg_table_lock(db_url)
    with lock:
        locked = run(home, "run", str(pipeline), db_url=db_url, **FAST_LOCK)
        _clean_error(locked, "GP-DB-006", 1)
        assert "lock" in locked.err
        if sqlite:  # WAL readers never wait for the writer
            assert run(home, "runs", db_url=db_url, **FAST_LOCK).code == 0
    done = run(home, "run", str(pipeline), db_url=db_url, **FAST_LOCK)
    assert done.code == 0, done.err
    assert run(home, "verify", db_url=db_url).code == 0


@contextmanager
def _read_only(db_url: str) -> Iterator[None]:
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        db_file = Path(str(url.database))
        # root ignores file modes; the immutable attribute holds for root too
        flag = ["chattr", "+i"] if os.geteuid() == 0 else None
        if flag:
            subprocess.run([*flag, str(db_file)], check=True)
        else:
            db_file.chmod(0o444)
        try:
            yield
        finally:
            if flag:
                subprocess.run(["chattr", "-i", str(db_file)], check=True)
            else:
                db_file.chmod(0o644)
        return
    engine = create_engine(normalize_url(db_url), poolclass=NullPool,
                           isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f"ALTER DATABASE {url.database} SET "
                              "default_transaction_read_only = on"))
        yield
        with engine.connect() as conn:
            conn.execute(text("SET default_transaction_read_only = off"))  # this session only
            conn.execute(text(f"ALTER DATABASE {url.database} SET "
                              "default_transaction_read_only = off"))
    finally:
        engine.dispose()


def test_a_read_only_audit_database_refuses_writes_with_a_code_and_still_reads(
        tmp_path: Path, db_url: str) -> None:
    home = tmp_path / "home"
    pipeline = _good(tmp_path)
    first = run(home, "run", str(pipeline), db_url=db_url)
    assert first.code == 0, first.err
    with _read_only(db_url):
        refused = run(home, "run", str(pipeline), db_url=db_url)
        _clean_error(refused, "GP-DB-007", 1)
        assert run(home, "verify", db_url=db_url).code == 0
        assert run(home, "runs", db_url=db_url).code == 0
    again = run(home, "run", str(pipeline), db_url=db_url)
    assert again.code == 0, again.err
