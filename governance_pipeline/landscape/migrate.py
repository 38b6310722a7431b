"""Bringing a Landscape database to the schema head with Alembic (the only way tables are made).

Opening a Landscape asks two questions on every command: which revision the database is at and
which revision is the head. Alembic answers both only after importing itself (and, through
``alembic.ddl``, every SQLAlchemy dialect) and loading every migration script: ~0.5 s, most of
``explain``'s time. So the two answers are read directly here — the ``alembic_version`` row and
the ``revision``/``down_revision`` lines of the scripts — and Alembic is imported only to
migrate, or when the scripts or the version table hold more than one linear history (merges,
branches, several heads), where its own reading is the answer. The tests check both readings
agree.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from governance_pipeline.contracts.errors import SCHEMA_OUTDATED, OperationalError

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy import Engine

_MIGRATIONS = Path(__file__).with_name("migrations")
VERSION_TABLE = "alembic_version"  # Alembic's default; env.py does not change it
_REVISION = re.compile(r"^revision\s*(?::[^=\n]*)?=\s*['\"]([^'\"\n]+)['\"]\s*$", re.M)
_DOWN_REVISION = re.compile(
    r"^down_revision\s*(?::[^=\n]*)?=\s*(?:['\"]([^'\"\n]+)['\"]|(None))\s*$", re.M)


def _config() -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    return cfg


def alembic_head_revision() -> str:
    """The head as Alembic computes it from the migration scripts."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "the package ships at least one migration"
    return head


def _linear_head() -> str | None:
    """The head of a single linear history read from the scripts' own lines, or None when the
    scripts are anything else (then Alembic decides)."""
    parents: dict[str, str | None] = {}
    for script in sorted((_MIGRATIONS / "versions").glob("*.py")):
        if script.name == "__init__.py":
            continue
        source = script.read_text(encoding="utf-8")
        revision = _REVISION.findall(source)
        down = _DOWN_REVISION.findall(source)
        if len(revision) != 1 or len(down) != 1 or revision[0] in parents:
            return None
        parents[revision[0]] = down[0][0] or None
    referenced = set(parents.values())
    heads = [rev for rev in parents if rev not in referenced]
    roots = [rev for rev, down in parents.items() if down is None]
    if len(heads) != 1 or len(roots) != 1 or not referenced - {None} <= parents.keys():
        return None
    return heads[0]


def head_revision() -> str:
    return _linear_head() or alembic_head_revision()


def alembic_current_revision(engine: Engine) -> str | None:
    """The database's revision as Alembic reads it."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def current_revision(engine: Engine) -> str | None:
    # SQLAlchemy is imported here, not above: the plain readers (reader.py) ask this module
    # for the head revision only.
    from sqlalchemy import inspect, text

    with engine.connect() as conn:
        if not inspect(conn).has_table(VERSION_TABLE):
            return None
        versions = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    if len(versions) > 1:  # several heads: Alembic says what it makes of them (it refuses)
        return alembic_current_revision(engine)
    return versions[0] if versions else None


def upgrade(engine: Engine, revision: str = "head") -> str:
    """Apply pending migrations; returns the revision the database is at afterwards."""
    from alembic import command

    cfg = _config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    return current_revision(engine) or ""


def require_head(engine: Engine) -> None:
    current = current_revision(engine)
    if current != head_revision():
        raise OperationalError(
            f"audit database is at revision {current or 'none'}, expected {head_revision()}",
            code=SCHEMA_OUTDATED)
