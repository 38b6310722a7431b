"""Revision 0008 on a database that already holds data (both backends): runs sealed at 0007 (legacy
seals only) still verify after the upgrade; the next seal of a scope writes its first C2SP
checkpoint over the whole chain; legacy seals keep being checked as such."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from governance_pipeline.contracts.clock import ManualClock
from governance_pipeline.contracts.merkle import root_hash
from governance_pipeline.contracts.tlog_checkpoint import open_checkpoint
from governance_pipeline.contracts.tlog_errors import TlogError
from governance_pipeline.landscape import checkpoints, migrate, tlog
from governance_pipeline.landscape.database import create_landscape_engine
from governance_pipeline.landscape.recorder import Recorder
from governance_pipeline.landscape.schema import GLOBAL_SCOPE, ledger_entries
from governance_pipeline.landscape.store import Landscape
from governance_pipeline.landscape.verify import verify
from governance_pipeline_tests.migration_copy import copy_into_revision
from governance_pipeline_tests.synthetic import record_synthetic_run
from governance_pipeline_tests.tamper import raw_connection
from governance_pipeline_tests.test_migrations import empty_db_url  # noqa: F401 - fixture

OLD = "0007"
NEW_TABLES = {"ledger_checkpoints", "ledger_origin"}


def _copy_into_0007(source: Landscape, target_url: str) -> None:
    """What a 0007 database holding the same runs stores (its seals, no checkpoints, no origin;
    compact_states of 0010 stays behind: what is proven here is about the seals)."""
    assert not NEW_TABLES & copy_into_revision(source, target_url, OLD)


def test_runs_sealed_at_0007_verify_after_the_upgrade_and_new_seals_are_c2sp(
        empty_db_url: str, tmp_path: Path) -> None:  # noqa: F811
    clock = ManualClock()
    keys = tmp_path / "keys"
    recorded = Landscape.open(f"sqlite:///{tmp_path / 'recorded.db'}", keys, clock=clock)
    old_runs = [record_synthetic_run(Recorder(recorded)).run_id for _ in range(2)]
    _copy_into_0007(recorded, empty_db_url)
    recorded.dispose()
    engine = create_landscape_engine(empty_db_url)
    assert migrate.current_revision(engine) == OLD
    engine.dispose()

    upgraded = Landscape.open(empty_db_url, keys, clock=clock)  # upgrades to head
    try:
        assert migrate.current_revision(upgraded.engine) == migrate.head_revision()
        with raw_connection(empty_db_url) as db:
            assert db.rows("ledger_checkpoints") == [] and db.rows("ledger_origin") == []
            assert len(db.rows("ledger_seals")) > 0
        report = verify(upgraded)  # legacy seals only, and they verify
        assert report.ok, report.findings

        new_run = record_synthetic_run(Recorder(upgraded)).run_id
        public = upgraded.trusted_key().key
        with upgraded.engine.connect() as conn:
            # The global chain's first checkpoint covers the entries written at 0007 as well:
            # the seal rebuilt its tree from the whole chain once.
            latest = tlog.latest_checkpoint(conn, GLOBAL_SCOPE)
            hashes = list(conn.execute(select(ledger_entries.c.entry_hash).where(
                ledger_entries.c.scope == GLOBAL_SCOPE).order_by(ledger_entries.c.seq))
                .scalars())
            origin = tlog.scope_origin(conn, GLOBAL_SCOPE)
            cp, _ = open_checkpoint(latest.note, [tlog.scope_verifier(conn, GLOBAL_SCOPE,
                                                                     public)], origin)
            assert cp.size == len(hashes) > 3
            assert cp.root_hash == root_hash([checkpoints.entry_leaf(h) for h in hashes])
            assert tlog.latest_checkpoint(conn, new_run).size > 0
            for run_id in old_runs:  # sealed at 0007: no checkpoint, and none is invented
                with pytest.raises(TlogError) as exc:
                    tlog.latest_checkpoint(conn, run_id)
                assert exc.value.code.code == "GP-TLOG-013"
        report = verify(upgraded)
        assert report.ok, report.findings

        # The legacy path is still checked: an old run's seal signature altered is named.
        with raw_connection(empty_db_url) as db:
            seal_id = db.scalar("SELECT seal_id FROM ledger_seals WHERE scope = ?",
                                (old_runs[0],))
            db.execute("UPDATE ledger_seals SET signature = ? WHERE seal_id = ?",
                       ("00" * 64, seal_id))
        findings = verify(upgraded).findings
        assert [(f.check, f.key, f.message.split(":")[0]) for f in findings] == [
            ("seal", seal_id, "invalid signature"), ("seal", findings[1].key, "unsealed tail")]
    finally:
        upgraded.dispose()
