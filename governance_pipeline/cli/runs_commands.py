"""``runs``: the runs of the Landscape, newest first, with status and outcome counts."""

from __future__ import annotations

import click

from governance_pipeline.cli.access import open_landscape
from governance_pipeline.cli.output import CliState, reporting, table
from governance_pipeline.landscape.queries import list_runs


def _outcomes_text(counts: dict[str, int]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "-"


@click.command("runs")
@reporting
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Newest N runs only.")
def runs_cmd(state: CliState, limit: int | None) -> int:
    """List runs, newest first, with status and outcome counts."""
    with open_landscape(state.settings()) as landscape:
        summaries = list_runs(landscape, limit=limit)
    if state.json:
        state.emit({"command": "runs", "runs": [s.as_dict() for s in summaries]})
        return 0
    if not summaries:
        state.say("no runs yet: `governance-pipeline demo` records one")
        return 0
    rows = [(s.run.run_id, s.run.pipeline_name, str(s.run.status), s.run.started_at,
             _outcomes_text(s.outcome_counts)) for s in summaries]
    for line in table(("RUN ID", "PIPELINE", "STATUS", "STARTED", "OUTCOMES"), rows):
        state.say(line)
    return 0
