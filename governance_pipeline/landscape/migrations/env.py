"""Alembic environment: always run with a connection handed in by ``landscape.migrate``."""

from __future__ import annotations

from alembic import context

from governance_pipeline.landscape.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `governance-pipeline db upgrade`")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True,
                  compare_type=True)
with context.begin_transaction():
    context.run_migrations()
