"""Revision 0006 on a database that already holds data: a run recorded before it (payloads in
clear, no key column) still reads, explains and verifies after the upgrade, on both backends,
and can then be purged and erased by row like any other."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import MetaData, insert, inspect, select

from governance_pipeline.contracts.clock import ManualClock
from governance_pipeline.governance.data_protection.erase import erase
from governance_pipeline.landscape import migrate
from governance_pipeline.landscape.database import create_landscape_engine
from governance_pipeline.landscape.explain import explain
from governance_pipeline.landscape.payloads import load_payload
from governance_pipeline.landscape.schema import metadata, payloads
from governance_pipeline.landscape.store import Landscape
from governance_pipeline.landscape.verify import verify
from governance_pipeline_tests.data_protection_fixtures import claims_pipeline, run_claims
from governance_pipeline_tests.test_migrations import empty_db_url  # noqa: F401 - fixture

OLD = "0002"


def _copy_tables(source: Landscape, target: Any, names: list[str]) -> None:
    with source.engine.connect() as src, target.begin() as dst:
        for table in metadata.sorted_tables:
            if table.name in names:
                found = [dict(r._mapping) for r in src.execute(select(table))]
                if found:
                    dst.execute(insert(table), found)


def _copy_into_old_schema(source: Landscape, target_url: str) -> list[str]:
    """Every row of ``source`` into a database migrated only to 0002, as a 0002 database
    holding the same run would store it (columns 0002 does not have are left out); returns
    the tables 0002 does not have."""
    target = create_landscape_engine(target_url)
    try:
        migrate.upgrade(target, OLD)
        old = MetaData()
        old.reflect(target)
        missing: list[str] = []
        with source.engine.connect() as src, target.begin() as dst:
            for table in metadata.sorted_tables:
                if table.name not in old.tables:
                    missing.append(table.name)
                    continue
                kept = [c for c in table.columns if c.name in old.tables[table.name].columns]
                found = [dict(r._mapping) for r in src.execute(select(*kept))]
                if table.name == "payloads":
                    assert all(r.get("key_id") is None for r in found)
                if found:
                    dst.execute(insert(old.tables[table.name]), found)
    finally:
        target.dispose()
    return missing


def test_a_run_recorded_at_0002_verifies_after_the_upgrade(
        empty_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.setenv("GOVERNANCE_HOME", str(tmp_path))
    clock = ManualClock()
    recorded = Landscape.open(f"sqlite:///{tmp_path / 'recorded.db'}", tmp_path / "keys",
                              clock=clock)
    run_id = run_claims(recorded, clock, claims_pipeline(tmp_path))
    added = _copy_into_old_schema(recorded, empty_db_url)
    engine = create_landscape_engine(empty_db_url)
    assert migrate.current_revision(engine) == OLD
    assert "key_id" not in {c["name"] for c in inspect(engine).get_columns("payloads")}
    engine.dispose()

    upgraded = Landscape.open(empty_db_url, tmp_path / "keys", clock=clock)  # upgrades to head
    # The run was recorded at head, so its ledger also covers the rows of tables later revisions
    # add (code identities, anchors): those rows join it once their tables exist.
    _copy_tables(recorded, upgraded.engine, added)
    recorded.dispose()
    try:
        assert migrate.current_revision(upgraded.engine) == migrate.head_revision()
        report = verify(upgraded)
        assert report.ok, report.findings
        assert report.payloads_checked > 0 and report.redacted.counts == {"purged": 0,
                                                                         "erased": 0}
        source = explain(upgraded, run_id, row_index=0).source_payload
        assert source["customer"] == "customer-1"
        with upgraded.engine.connect() as conn:
            assert set(conn.execute(select(payloads.c.key_id)).scalars()) == {None}
            first = conn.execute(select(payloads.c.content_hash).limit(1)).scalar_one()
        load_payload(upgraded, first)
        erased = erase(upgraded, actor="dpo", reason="old row", run_id=run_id, row_index=0)
        assert erased.record.payload_count >= 1
        assert verify(upgraded).ok
        assert orjson.loads(load_payload(upgraded, explain(
            upgraded, run_id, row_index=1).row.source_data_hash))["customer"] == "customer-2"
    finally:
        upgraded.dispose()
