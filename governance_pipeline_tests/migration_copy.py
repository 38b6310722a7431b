"""Databases at an older revision holding today's runs, for the upgrade tests of a migration."""

from __future__ import annotations

from sqlalchemy import MetaData, insert, select

from governance_pipeline.landscape import migrate
from governance_pipeline.landscape.database import create_landscape_engine
from governance_pipeline.landscape.schema import metadata
from governance_pipeline.landscape.store import Landscape


def copy_into_revision(source: Landscape, target_url: str, revision: str) -> set[str]:
    """Every row of ``source`` into a database at ``target_url`` migrated to ``revision``: what
    a database of that revision holding the same runs stores (its tables and columns; tables of
    later revisions stay behind). Returns the names of the tables ``revision`` has."""
    target = create_landscape_engine(target_url)
    try:
        migrate.upgrade(target, revision)
        old = MetaData()
        old.reflect(target)
        with source.engine.connect() as src, target.begin() as dst:
            for table in metadata.sorted_tables:
                if table.name not in old.tables:
                    continue
                kept = [c for c in table.columns if c.name in old.tables[table.name].columns]
                found = [dict(r._mapping) for r in src.execute(select(*kept))]
                if found:
                    dst.execute(insert(old.tables[table.name]), found)
        return set(old.tables)
    finally:
        target.dispose()
