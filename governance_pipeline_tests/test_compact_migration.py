"""Revision 0010 on a database that already holds runs (both backends): runs recorded at 0008
store every state and route explicitly, and after the upgrade they verify and read the same
through ``logical_states``; the table the upgrade adds is empty until a new run writes to it."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from governance_pipeline.contracts.clock import ManualClock
from governance_pipeline.landscape import logical_states, migrate
from governance_pipeline.landscape.database import create_landscape_engine
from governance_pipeline.landscape.recorder import Recorder
from governance_pipeline.landscape.schema import node_states, routing_events
from governance_pipeline.landscape.store import Landscape
from governance_pipeline.landscape.verify import verify
from governance_pipeline_tests.migration_copy import copy_into_revision
from governance_pipeline_tests.synthetic import record_synthetic_run
from governance_pipeline_tests.tamper import raw_connection
from governance_pipeline_tests.test_migrations import empty_db_url  # noqa: F401 - fixture

OLD = "0008"
NEW_TABLES = {"compact_states"}


def _copy_into_old(source: Landscape, target_url: str) -> None:
    assert not NEW_TABLES & copy_into_revision(source, target_url, OLD)


def test_runs_recorded_at_0008_read_and_verify_the_same_after_the_upgrade(
        empty_db_url: str, tmp_path: Path) -> None:  # noqa: F811
    clock = ManualClock()
    keys = tmp_path / "keys"
    recorded = Landscape.open(f"sqlite:///{tmp_path / 'recorded.db'}", keys, clock=clock)
    run_id = record_synthetic_run(Recorder(recorded)).run_id
    _copy_into_old(recorded, empty_db_url)
    recorded.dispose()
    engine = create_landscape_engine(empty_db_url)
    assert migrate.current_revision(engine) == OLD
    engine.dispose()

    upgraded = Landscape.open(empty_db_url, keys, clock=clock)  # upgrades to head
    try:
        assert migrate.current_revision(upgraded.engine) == migrate.head_revision()
        with raw_connection(empty_db_url) as db:
            assert db.rows("compact_states") == []
        report = verify(upgraded)
        assert report.ok, report.findings
        with upgraded.engine.connect() as conn:
            trail = logical_states.read_trail(conn, run_id)
            stored = {t.name: conn.execute(select(func.count()).where(t.c.run_id == run_id))
                      .scalar_one() for t in (node_states, routing_events)}
        assert len(trail.states) == stored["node_states"] > 0
        assert len(trail.routes) == stored["routing_events"] > 0
    finally:
        upgraded.dispose()
