"""The installed ``governance-pipeline`` console script, run as a real subprocess.

Each test gets its own GOVERNANCE_HOME under tmp_path. Tampering is done the way an attacker or
a careless operator would do it: with a plain SQL client on the audit database (``sqlite3`` on
the file, ``psycopg`` on the server), never through the product's own code.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from governance_pipeline.cli.output import CliState, debug_from_env
from governance_pipeline.contracts.ids import new_id
from governance_pipeline.landscape import migrate
from governance_pipeline.landscape.database import normalize_url
from governance_pipeline.landscape.explain import explain
from governance_pipeline.landscape.store import Landscape
from governance_pipeline_tests.conftest import (
    PG_ENV,
    drop_pg_database,
    fresh_pg_url,
    fresh_sqlite_url,
)

CLI = Path(sys.executable).with_name("governance-pipeline")


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)  # the whole of stdout must be exactly one JSON document


def run(home: Path, *args: str, db_url: str | None = None, **extra_env: str) -> Result:
    env = {k: v for k, v in os.environ.items()
           if k not in ("GOVERNANCE_DB_URL", "GOVERNANCE_DEBUG", "DAGSTER_HOME")}
    env["GOVERNANCE_HOME"] = str(home)
    if db_url is not None:
        env["GOVERNANCE_DB_URL"] = db_url
    env.update(extra_env)
    proc = subprocess.run([str(CLI), *args], env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120, cwd=home.parent)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def sql(db_url: str, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one statement with a plain driver (qmark placeholders), commit, return any rows."""
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        with sqlite3.connect(url.database) as conn:
            cur = conn.execute(statement, params)
            return cur.fetchall() if cur.description else []
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn) as conn:
        cur = conn.execute(statement.replace("?", "%s"), params)
        return cur.fetchall() if cur.description else []


def demo(home: Path, db_url: str | None = None) -> dict[str, Any]:
    result = run(home, "demo", "--json", db_url=db_url)
    assert result.code == 0, result.err + result.out
    return result.json()


def test_console_script_is_installed() -> None:
    assert CLI.exists(), f"{CLI} missing: install the project (pip install -e '.[dev]')"


# --- demo on the embedded default -----------------------------------------------------------------
def test_demo_creates_the_database_writes_a_real_artifact_and_passes_verify_and_sweep(
        tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = run(home, "demo")
    assert result.code == 0, result.err + result.out
    db_file = home / "landscape.db"
    assert db_file.is_file()
    assert "where to look next" in result.out
    run_id = sql(f"sqlite:///{db_file}", "SELECT run_id FROM runs")[0][0]
    assert run_id in result.out

    path, content_hash, size = sql(
        f"sqlite:///{db_file}",
        "SELECT path_or_uri, content_hash, size_bytes FROM artifacts WHERE run_id = ?",
        (run_id,))[0]
    data = Path(path).read_bytes()
    assert Path(path).is_relative_to(home / "out")
    assert hashlib.sha256(data).hexdigest() == content_hash
    assert len(data) == size
    # Every line of the file is the record whose hash the sink's node state committed.
    lines = list(csv.reader(io.StringIO(data.decode())))
    assert lines[0] == ["token_id", "output_hash", "record"] and len(lines) > 2
    for token_id, output_hash, record in lines[1:]:
        assert hashlib.sha256(record.encode()).hexdigest() == output_hash
        assert sql(f"sqlite:///{db_file}", "SELECT output_hash FROM node_states "
                   "WHERE token_id = ? AND node_id = 'out'", (token_id,)) == [(output_hash,)]

    for command in ("verify", "sweep"):
        human = run(home, command)
        assert human.code == 0, human.err + human.out
        assert "OK" in human.out
        doc = run(home, command, "--json")
        assert doc.code == 0
        assert doc.json()["ok"] is True
        assert doc.json()["command"] == command


def test_every_row_of_the_demo_run_explains_with_its_payloads(tmp_path: Path) -> None:
    """The demo stores every payload its records name (call request and response, the
    quarantined row's error), so `explain` never meets a hash the payload store lacks."""
    home = tmp_path / "home"
    doc = demo(home)
    landscape = Landscape.open(f"sqlite:///{home / 'landscape.db'}", keys_dir=home / "keys")
    try:
        for index in range(doc["rows"]):
            assert explain(landscape, doc["run_id"], row_index=index).tokens
    finally:
        landscape.dispose()


def test_demo_json_is_one_document_naming_the_run_and_artifact(tmp_path: Path) -> None:
    doc = demo(tmp_path / "home")
    assert doc["ok"] is True
    assert doc["verify"]["ok"] is True and doc["sweep"]["ok"] is True
    assert sum(doc["outcome_counts"].values()) == doc["tokens"] > doc["rows"]
    assert doc["outcome_counts"]["quarantined"] == 1
    assert hashlib.sha256(Path(doc["artifact"]["path"]).read_bytes()).hexdigest() == \
        doc["artifact"]["sha256"]
    assert any(step.endswith(f"verify {doc['run_id']}") for step in doc["next"])


def test_runs_lists_each_demo_run_with_outcome_counts(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first, second = demo(home), demo(home)
    human = run(home, "runs")
    assert human.code == 0
    assert first["run_id"] in human.out and second["run_id"] in human.out
    assert f"completed={first['outcome_counts']['completed']}" in human.out
    listed = run(home, "runs", "--json").json()["runs"]
    assert [r["run_id"] for r in listed] == [second["run_id"], first["run_id"]]
    assert listed[0]["outcome_counts"] == second["outcome_counts"]
    assert run(home, "runs", "--limit", "1", "--json").json()["runs"][0]["run_id"] == \
        second["run_id"]


# --- tampering, on both backends ------------------------------------------------------------------
@dataclass(frozen=True)
class DemoRun:
    home: Path
    db_url: str
    run_id: str


def _copy_pg_database(admin: str, source_url: str) -> str:
    """A new database copied from ``source_url``'s (which nobody is connected to)."""
    engine = create_engine(normalize_url(admin), poolclass=NullPool, isolation_level="AUTOCOMMIT")
    name = f"gp_test_{new_id()[-12:]}_{os.getpid()}"
    with engine.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name} TEMPLATE {make_url(source_url).database}"))
    engine.dispose()
    return make_url(source_url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def demo_base(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
              pg_template: str | None, sqlite_template: Path) -> Iterator[DemoRun]:
    """One demo run (a real subprocess) per backend and module. The tamper tests never touch
    it: each edits its own byte copy (``demo_copy``), the same run a demo of its own would
    have recorded, without running the demo again per case."""
    root = tmp_path_factory.mktemp(f"demo-{request.param}")
    if request.param == "sqlite":
        url = fresh_sqlite_url(sqlite_template, root / "landscape.db")
    elif pg_template is None:
        pytest.skip(f"PostgreSQL not configured: set {PG_ENV} (scripts/test.sh does)")
    else:
        url = fresh_pg_url(pg_template)
    try:
        home = root / "home"
        yield DemoRun(home, url, demo(home, url)["run_id"])
    finally:
        if request.param == "postgres" and pg_template is not None:
            drop_pg_database(pg_template, url)


@pytest.fixture
def demo_copy(demo_base: DemoRun, tmp_path: Path, pg_template: str | None) -> Iterator[DemoRun]:
    """This test's own copy of the demo's home (its signing key) and audit database."""
    home = tmp_path / "home"
    shutil.copytree(demo_base.home, home)
    if make_url(demo_base.db_url).get_backend_name() == "sqlite":
        source = Path(make_url(demo_base.db_url).database or "")
        target = tmp_path / source.name
        for suffix in ("", "-wal"):  # a WAL the CLI left behind holds committed pages too
            if source.with_name(source.name + suffix).exists():
                shutil.copyfile(source.with_name(source.name + suffix),
                                target.with_name(target.name + suffix))
        yield DemoRun(home, f"sqlite:///{target}", demo_base.run_id)
        return
    assert pg_template is not None
    url = _copy_pg_database(pg_template, demo_base.db_url)
    try:
        yield DemoRun(home, url, demo_base.run_id)
    finally:
        drop_pg_database(pg_template, url)


def flip_first_hex_digit(column: str) -> str:
    """A same-length edit of a hex digest (the columns are VARCHAR(64) on PostgreSQL)."""
    return (f"CASE WHEN substr({column}, 1, 1) = '0' THEN '1' ELSE '0' END "
            f"|| substr({column}, 2)")


TAMPERS = {
    # table, key column, column, new value (SQL expression)
    "node_state_output_hash": ("node_states", "state_id", "output_hash",
                               flip_first_hex_digit("output_hash")),
    "outcome_sink_name": ("token_outcomes", "outcome_id", "sink_name", "'elsewhere'"),
    "artifact_content_hash": ("artifacts", "artifact_id", "content_hash",
                              flip_first_hex_digit("content_hash")),
    "row_index": ("rows", "row_id", "row_index", "row_index + 1000"),
    "run_termination_reason": ("runs", "run_id", "termination_reason", "'user_abort'"),
}


@pytest.mark.parametrize("tamper", sorted(TAMPERS))
def test_editing_one_audit_value_makes_verify_exit_5_naming_table_and_key(
        tamper: str, demo_copy: DemoRun) -> None:
    table, key_col, column, new_value = TAMPERS[tamper]
    home, db_url, run_id = demo_copy.home, demo_copy.db_url, demo_copy.run_id
    where = f"run_id = ? AND {column} IS NOT NULL"
    key = sql(db_url, f"SELECT {key_col} FROM {table} WHERE {where} ORDER BY {key_col}",
              (run_id,))[0][0]
    assert run(home, "verify", run_id, db_url=db_url).code == 0

    sql(db_url, f"UPDATE {table} SET {column} = {new_value} WHERE {key_col} = ?", (key,))

    human = run(home, "verify", db_url=db_url)
    assert human.code == 5, human.err + human.out
    assert f"{table} {key}" in human.out
    assert "GP-AUDIT-003" in human.err
    doc = run(home, "verify", run_id, "--json", db_url=db_url)
    assert doc.code == 5
    report = doc.json()
    assert report["ok"] is False
    assert {"table": table, "key": key} in [{"table": f["table"], "key": f["key"]}
                                            for f in report["findings"]]
    assert report["problem"]["code"] == "GP-AUDIT-003"
    assert report["problem"]["exit_code"] == 5


def test_deleting_a_terminal_outcome_is_named_by_sweep_and_verify(demo_copy: DemoRun) -> None:
    home, db_url, run_id = demo_copy.home, demo_copy.db_url, demo_copy.run_id
    outcome_id, token_id = sql(db_url, "SELECT outcome_id, token_id FROM token_outcomes WHERE "
                                       "run_id = ? AND outcome = 'completed' ORDER BY outcome_id",
                               (run_id,))[0]
    assert run(home, "sweep", run_id, db_url=db_url).code == 0

    sql(db_url, "DELETE FROM token_outcomes WHERE outcome_id = ?", (outcome_id,))

    swept = run(home, "sweep", run_id, db_url=db_url)
    assert swept.code == 5, swept.err + swept.out
    assert token_id in swept.out
    assert "GP-AUDIT-004" in swept.err
    doc = run(home, "sweep", "--json", db_url=db_url).json()
    assert doc["ok"] is False and doc["problem"]["code"] == "GP-AUDIT-004"
    assert any(f["key"] == token_id for f in doc["findings"])
    verified = run(home, "verify", run_id, db_url=db_url)
    assert verified.code == 5
    assert f"token_outcomes {outcome_id}" in verified.out


def test_a_value_the_model_does_not_allow_is_refused_on_read(tmp_path: Path) -> None:
    """Tier-1: `runs` reading an unknown status back exits 5 instead of showing it as true."""
    home = tmp_path / "home"
    run_id = demo(home)["run_id"]
    db_file = home / "landscape.db"
    with sqlite3.connect(db_file) as conn:
        conn.execute("PRAGMA ignore_check_constraints = ON")  # what a careless client can do
        conn.execute("UPDATE runs SET status = 'finished' WHERE run_id = ?", (run_id,))
    result = run(home, "runs")
    assert result.code == 5
    assert result.err.startswith("error GP-AUDIT-001: ") and "status" in result.err
    assert run(home, "runs", "--json").json()["code"] == "GP-AUDIT-001"


# --- errors ---------------------------------------------------------------------------------------
def test_unknown_run_id_is_invalid_input_with_a_code(tmp_path: Path) -> None:
    home = tmp_path / "home"
    demo(home)
    for command in ("verify", "sweep"):
        human = run(home, command, "run_does_not_exist")
        assert human.code == 2
        assert human.err.startswith("error GP-INPUT-001: ")
        assert "\nfix: " in human.err
        assert human.out == ""
        problem = run(home, command, "run_does_not_exist", "--json")
        assert problem.code == 2
        doc = problem.json()
        assert doc["code"] == "GP-INPUT-001" and doc["exit_code"] == 2
        assert doc["type"] == "urn:governance-pipeline:error:GP-INPUT-001"
        assert {"title", "detail", "fix", "docs"} <= doc.keys()


def test_a_database_url_that_is_not_a_url_is_a_configuration_error(tmp_path: Path) -> None:
    human = run(tmp_path / "home", "runs", db_url="not a url")
    assert human.code == 2
    assert "GP-CONFIG-002" in human.err
    doc = run(tmp_path / "home", "runs", "--json", db_url="nosuchdialect://x/y")
    assert doc.code == 2
    assert doc.json()["code"] == "GP-CONFIG-002"


def test_an_unreachable_database_is_an_operational_error(tmp_path: Path) -> None:
    # Port 1 on loopback: nothing listens there, the connection is refused at once.
    url = "postgresql://nobody:secret@127.0.0.1:1/landscape"
    doc = run(tmp_path / "home", "verify", "--json", db_url=url)
    assert doc.code == 1
    problem = doc.json()
    assert problem["code"] == "GP-DB-001" and problem["exit_code"] == 1
    assert "secret" not in doc.out, "the password must not be echoed"
    human = run(tmp_path / "home", "runs", db_url=url)
    assert human.code == 1 and human.err.startswith("error GP-DB-001: ")


def test_usage_errors_exit_2_with_a_code(tmp_path: Path) -> None:
    result = run(tmp_path / "home", "verify", "--no-such-option")
    assert result.code == 2 and "GP-INPUT-002" in result.err
    doc = run(tmp_path / "home", "runs", "--json", "--limit", "zero")
    assert doc.code == 2 and doc.json()["code"] == "GP-INPUT-002"


def test_an_unexpected_exception_exits_1_and_shows_its_traceback_only_on_debug(
        capsys: pytest.CaptureFixture[str]) -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        crash = exc
    assert CliState().render_crash(crash) == 1
    quiet = capsys.readouterr()
    assert quiet.err.startswith("error GP-INTERNAL-001: unexpected RuntimeError: boom")
    assert "--debug" in quiet.err and "Traceback" not in quiet.err and quiet.out == ""
    assert CliState(debug=True).render_crash(crash) == 1
    loud = capsys.readouterr()
    assert "Traceback (most recent call last)" in loud.err
    assert 'raise RuntimeError("boom")' in loud.err
    assert CliState(json=True).render_crash(crash) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["code"] == "GP-INTERNAL-001" and doc["exit_code"] == 1


def test_debug_comes_from_the_flag_or_the_environment() -> None:
    assert debug_from_env({"GOVERNANCE_DEBUG": "1"}) is True
    assert debug_from_env({"GOVERNANCE_DEBUG": "0"}) is False
    assert debug_from_env({}) is False


# --- keys -----------------------------------------------------------------------------------------
def test_keys_public_exports_the_key_that_checks_the_seals(tmp_path: Path) -> None:
    home = tmp_path / "home"
    demo(home)
    printed = run(home, "keys", "public")
    assert printed.code == 0
    key = serialization.load_pem_public_key(printed.out.encode())
    assert isinstance(key, Ed25519PublicKey)
    out = tmp_path / "exported" / "ledger.pub.pem"
    doc = run(home, "keys", "public", "--out", str(out), "--json").json()
    assert out.read_text() == printed.out == doc["pem"]
    assert run(home, "verify", "--public-key", str(out)).code == 0


def test_verify_with_another_public_key_rejects_every_seal(tmp_path: Path) -> None:
    home = tmp_path / "home"
    run_id = demo(home)["run_id"]
    other = tmp_path / "other.pem"
    other.write_bytes(Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    result = run(home, "verify", run_id, "--public-key", str(other), "--json")
    assert result.code == 5
    doc = result.json()
    assert doc["findings"] and all(f["table"] == "ledger_seals" or f["check"] == "seal"
                                   or (f["check"] == "checkpoint"
                                       and f["message"].startswith("invalid signature"))
                                   for f in doc["findings"])
    assert doc["problem"]["code"] == "GP-AUDIT-005"
    not_a_key = tmp_path / "not-a-key.pem"
    not_a_key.write_text("hello")
    assert run(home, "verify", "--public-key", str(not_a_key)).code == 2


# --- db upgrade -----------------------------------------------------------------------------------
def test_db_upgrade_on_a_fresh_home_reaches_head(tmp_path: Path) -> None:
    home = tmp_path / "fresh"
    result = run(home, "db", "upgrade")
    assert result.code == 0, result.err
    assert migrate.head_revision() in result.out
    assert (home / "landscape.db").is_file()
    doc = run(home, "db", "upgrade", "--json").json()
    assert doc["revision"] == doc["head"] == migrate.head_revision()
    assert doc["changed"] is False
    assert sql(f"sqlite:///{home / 'landscape.db'}",
               "SELECT version_num FROM alembic_version") == [(migrate.head_revision(),)]


# --- PostgreSQL through the environment, end to end -----------------------------------------------
@pytest.fixture
def pg_admin_url(pg_template: str | None) -> str:
    """The PostgreSQL server of the suite; like ``db_url``, missing only outside CI."""
    if pg_template is None:
        pytest.skip(f"PostgreSQL not configured: set {PG_ENV} (scripts/test.sh does)")
    return pg_template


def test_demo_and_verify_on_postgresql(pg_admin_url: str, tmp_path: Path) -> None:
    url = fresh_pg_url(pg_admin_url)
    try:
        home = tmp_path / "home"
        doc = demo(home, url)
        assert doc["db_url"].startswith("postgresql")
        assert not (home / "landscape.db").exists()
        verified = run(home, "verify", db_url=url)
        assert verified.code == 0, verified.err + verified.out
        assert run(home, "sweep", "--json", db_url=url).json()["ok"] is True
        assert sql(url, "SELECT status FROM runs WHERE run_id = ?", (doc["run_id"],)) == \
            [("completed",)]
    finally:
        drop_pg_database(pg_admin_url, url)
