"""The command line starts without importing what a command does not use.

Timing is noise on a shared machine, so these tests check what is imported, which decides the
start-up time and cannot flake: ``--help`` and ``explain`` must not load Dagster, pandas,
reportlab, pyarrow, Alembic or the engine (benchmarks/audit_scale.py times them). Also: the
short help table of ``cli/main.py`` says what each command's docstring says, ``--help`` lists
the commands exactly as click would with every command imported, and the quick reading of the
schema revision agrees with Alembic's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest

from governance_pipeline.cli.explain_commands import NO_DIRECT_READER_ENV
from governance_pipeline.cli.lazy import LazyGroup
from governance_pipeline.cli.main import COMMANDS, cli
from governance_pipeline.landscape import migrate
from governance_pipeline.landscape.database import create_landscape_engine
from governance_pipeline.landscape.store import Landscape
from governance_pipeline_tests.engine_fixtures import EXAMPLES, write_claims

LINEAR_EXAMPLE = EXAMPLES / "pipelines" / "claims_linear.yaml"

HEAVY = {"dagster", "pandas", "reportlab", "pyarrow", "alembic"}
# Packages of the product that only running, orchestrating or exporting needs.
UNNEEDED = ("governance_pipeline.engine", "governance_pipeline.orchestration",
            "governance_pipeline.plugins", "governance_pipeline.governance.exports")
# What explain's direct reader (landscape/reader.py) reads without.
DIRECT_READER_NEEDS_NONE = {"sqlalchemy", "alembic", "pydantic", "dagster"}
# Dialects no Landscape uses; Alembic's import brings them all.
FOREIGN_DIALECTS = ("sqlalchemy.dialects.mssql", "sqlalchemy.dialects.mysql",
                    "sqlalchemy.dialects.oracle")

_PROBE = """
import contextlib, io, json, sys
from governance_pipeline.cli.main import run_cli
out = io.StringIO()
with contextlib.redirect_stdout(out):
    code = run_cli(json.loads(sys.argv[1]))
print(json.dumps({"code": code, "out": out.getvalue(), "modules": sorted(sys.modules)}))
"""


def _imports_of(argv: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run the CLI on ``argv`` in a fresh interpreter; its exit code, stdout and modules."""
    proc = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(argv)],
                          env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=120, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _packages(modules: list[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def _under(modules: list[str], prefixes: tuple[str, ...]) -> list[str]:
    return [m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes)]


def test_help_imports_neither_heavy_packages_nor_sqlalchemy() -> None:
    probe = _imports_of(["--help"])
    assert probe["code"] == 0
    assert "explain" in probe["out"] and "verify-bundle" in probe["out"]
    assert _packages(probe["modules"]) & (HEAVY | {"sqlalchemy", "pydantic"}) == set()
    assert _under(probe["modules"], ("governance_pipeline.landscape", *UNNEEDED)) == []


def test_the_probe_sees_an_import_a_command_makes() -> None:
    """The must-pass twin: the same probe on a command that does use the engine sees it."""
    probe = _imports_of(["validate", "--help"])
    assert probe["code"] == 0
    assert _under(probe["modules"], ("governance_pipeline.engine",)) != []


def _record_linear_run(db_url: str, home: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A real run of the shipped linear example (engine, sinks, payload store) on ``db_url``."""
    from governance_pipeline.engine.config import load_pipeline
    from governance_pipeline.engine.runner import Runner

    monkeypatch.setenv("GOVERNANCE_HOME", str(home))
    data = write_claims(home / "claims.csv", 40, seed=7)
    pipeline = home / "claims_linear.yaml"
    pipeline.write_text(LINEAR_EXAMPLE.read_text(encoding="utf-8")
                        .replace("../data/claims.csv", str(data)), encoding="utf-8")
    landscape = Landscape.open(db_url, home / "keys")
    try:
        result = Runner.start(landscape, load_pipeline(pipeline), base_dir=home,
                              pipeline_path=pipeline).execute()
    finally:
        landscape.dispose()
    return result.run_id


def test_explain_imports_only_the_landscape_read_side(db_url: str, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """explain reads through the direct reader (sqlite3 / psycopg): not even SQLAlchemy is
    imported; the same command told to skip that reader reads through SQLAlchemy (the probe
    sees it) and prints the same document, JSON and text."""
    run_id = _record_linear_run(db_url, tmp_path, monkeypatch)
    env = {"GOVERNANCE_HOME": str(tmp_path), "GOVERNANCE_DB_URL": db_url}
    for fmt in (["--json"], []):
        argv = ["explain", run_id, "--row", "7", *fmt]  # states, a route, a terminal outcome
        direct = _imports_of(argv, env)
        assert direct["code"] == 0, direct["out"]
        assert _packages(direct["modules"]) & (HEAVY | DIRECT_READER_NEEDS_NONE) == set()
        assert _under(direct["modules"], (*UNNEEDED, "governance_pipeline.landscape.schema",
                                          "governance_pipeline.landscape.store")) == []
        landscape = _imports_of(argv, {**env, NO_DIRECT_READER_ENV: "1"})
        assert landscape["code"] == 0, landscape["out"]
        assert "sqlalchemy" in _packages(landscape["modules"])
        assert _packages(landscape["modules"]) & HEAVY == set()
        assert _under(landscape["modules"], (*UNNEEDED, *FOREIGN_DIALECTS)) == []
        assert direct["out"] == landscape["out"]
    assert "route " in direct["out"] and "outcome: " in direct["out"]


def test_explain_of_a_landscape_to_upgrade_takes_the_landscape_path(
        tmp_path: Path) -> None:
    """A database at an older revision is not read directly: explain opens the Landscape as
    every command does (which brings it to the head first), so the answer is the same as
    before the direct reader existed."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_landscape_engine(url)
    try:
        migrate.upgrade(engine, "0002")
    finally:
        engine.dispose()
    probe = _imports_of(["explain", "run_x", "--row", "0", "--json"],
                        {"GOVERNANCE_HOME": str(tmp_path), "GOVERNANCE_DB_URL": url})
    assert probe["code"] == 2 and json.loads(probe["out"])["code"] == "GP-INPUT-001"
    assert "sqlalchemy" in _packages(probe["modules"])
    engine = create_landscape_engine(url)
    try:
        assert migrate.current_revision(engine) == migrate.head_revision()
    finally:
        engine.dispose()


def test_every_short_help_in_the_table_is_its_commands_first_sentence() -> None:
    ctx = click.Context(cli)
    assert isinstance(cli, LazyGroup) and cli.list_commands(ctx) == sorted(COMMANDS)
    for name, entry in COMMANDS.items():
        command = entry.load()
        assert command.name == name
        assert command.get_short_help_str(limit=10_000) == entry.short_help, name


@pytest.mark.parametrize("width", [60, 80, 120])
def test_help_lists_the_commands_as_click_does_with_all_of_them_imported(width: int) -> None:
    eager = click.Group("governance-pipeline",
                        commands=[entry.load() for entry in COMMANDS.values()])
    lazy = LazyGroup("governance-pipeline", lazy=COMMANDS)

    def listing(group: click.Group) -> str:
        formatter = click.HelpFormatter(width=width)
        group.format_commands(click.Context(group), formatter)
        return formatter.getvalue()

    assert listing(lazy) == listing(eager) and "Commands:" in listing(lazy)


def test_an_unknown_command_is_still_a_usage_error() -> None:
    probe = _imports_of(["no-such-command"])
    assert probe["code"] == 2


def test_the_quick_revision_reading_agrees_with_alembic(db_url: str, tmp_path: Path) -> None:
    assert migrate.head_revision() == migrate.alembic_head_revision()
    engine = create_landscape_engine(db_url)
    try:
        assert migrate.current_revision(engine) == migrate.alembic_current_revision(engine) \
            == migrate.head_revision()
    finally:
        engine.dispose()
    empty = create_landscape_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        assert migrate.current_revision(empty) is None
        assert migrate.alembic_current_revision(empty) is None
        migrate.upgrade(empty, "0002")
        assert migrate.current_revision(empty) == migrate.alembic_current_revision(empty) \
            == "0002"
    finally:
        empty.dispose()
