from governance_pipeline.contracts.enums import RunStatus, TerminationReason
from governance_pipeline.contracts.records import Run
from governance_pipeline.landscape.schema import runs
from sqlalchemy import select


def test_run_round_trips_through_tier1_read(recorder):
    run = recorder.begin_run(pipeline_name="p", tenant_id="t", config={"k": 1})
    recorder.finish_run(run.run_id, RunStatus.COMPLETED, TerminationReason.COMPLETED)
    with recorder.landscape.engine.connect() as conn:
        row = conn.execute(select(runs).where(runs.c.run_id == run.run_id)).mappings().one()
    back = Run.from_row(row)
    assert back.status is RunStatus.COMPLETED
    assert back.config_hash == run.config_hash
