"""``db upgrade``: bring the audit database to the schema head."""

from __future__ import annotations

import click
from sqlalchemy import Engine

from governance_pipeline.cli.access import database_errors, redact
from governance_pipeline.cli.output import CliState, reporting
from governance_pipeline.landscape import migrate
from governance_pipeline.landscape.anchors import upgrade_sealing_legacy
from governance_pipeline.landscape.database import create_landscape_engine


@click.group("db")
def db_group() -> None:
    """The audit database schema."""


@db_group.command("upgrade")
@reporting
def db_upgrade(state: CliState) -> int:
    """Apply pending migrations and print the revision the database is at."""
    settings = state.settings()
    engine: Engine | None = None
    try:
        with database_errors(settings.db_url):
            engine = create_landscape_engine(settings.db_url)
            before = migrate.current_revision(engine)
            after = upgrade_sealing_legacy(engine, settings.keys_dir)
    finally:
        if engine is not None:
            engine.dispose()
    head = migrate.head_revision()
    if state.json:
        state.emit({"command": "db upgrade", "db_url": redact(settings.db_url),
                    "previous_revision": before, "revision": after, "head": head,
                    "changed": before != after})
        return 0
    change = "already at head" if before == after else f"upgraded from {before or 'empty'}"
    state.say(f"audit database {redact(settings.db_url)}")
    state.say(f"revision {after} (head {head}); {change}")
    return 0
