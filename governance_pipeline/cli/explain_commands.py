"""``explain RUN_ID --row N`` / ``--token ID``: the full lineage of one row or token.

Loaded on its own (cli/main.py loads each command's module when it runs) and reading through a
direct reader (``landscape/reader.py``: sqlite3 or psycopg, no SQLAlchemy, no Alembic), so an
explanation costs its queries, not the import of the engine, Dagster or SQLAlchemy. Whenever the
direct reader cannot answer as the Landscape would (a URL it does not parse, no Landscape there,
a database to upgrade first, a driver error), the command opens the Landscape as every other
command does, which upgrades or says what is wrong.
"""

from __future__ import annotations

import os

import click

from governance_pipeline.cli.output import CliState, reporting
from governance_pipeline.contracts.settings import Settings
from governance_pipeline.landscape.code_manifest import identity_line
from governance_pipeline.landscape.explain import Explanation, explain
from governance_pipeline.landscape.reader import ReadFailed, open_reader

#: ``1`` skips the direct reader: explain then reads through SQLAlchemy (the same output).
NO_DIRECT_READER_ENV = "GOVERNANCE_EXPLAIN_NO_DIRECT_READER"


def _ids(values: list[str], shown: int = 4) -> str:
    if len(values) <= shown:
        return ", ".join(values)
    return f"{', '.join(values[:shown])} and {len(values) - shown} more (see --json)"


def _print_explanation(state: CliState, exp: Explanation) -> None:
    state.say(f"run {exp.run_id} row {exp.row.row_index} ({exp.row.row_id})")
    if exp.inflection is not None:
        p = exp.inflection
        state.say(f"  ▶ INFLECTION POINT: the run stopped here — {p.policy_id}/{p.rule_id} at "
                  f"node {p.node_id} (step {p.step_index}), token {p.token_id}, {p.occurred_at}")
    state.say(f"  source payload {exp.row.source_data_hash[:16]}…: {exp.source_payload}")
    for err in exp.validation_errors:
        state.say(f"  invalid: {err.error_code}: {err.reason} → {err.destination}")
    for view in exp.tokens:
        mark = " ◀" if view.token.token_id == exp.focus_token else ""
        origin = f" branch {view.token.branch_name}" if view.token.branch_name else ""
        state.say(f"  token {view.token.token_id}{origin}{mark}")
        if view.parents:
            state.say(f"    parents: {_ids(view.parents)}")
        if view.children:
            state.say(f"    children: {_ids(view.children)}")
        for sv in view.states:
            s = sv.state
            out = f" out {s.output_hash[:12]}…" if s.output_hash else ""
            # No duration of its own: a pass-through state read from a compact record, whose
            # time is the record's total (docs/landscape.md, logical model vs physical encoding).
            took = (f"{s.duration_ms:.3f} ms" if s.duration_ms is not None
                    else "pass-through, no own duration")
            state.say(f"    [{s.step_index}] {s.node_id}: {s.status.value} in {s.input_hash[:12]}…"
                      f"{out} ({took})")
            for r in sv.routing:
                state.say(f"        route {r['label']} → {r['to']} ({r['mode']})")
            for c in sv.calls:
                state.say(f"        call {c['type']} {c['status']} {c['latency_ms']} ms")
            if sv.written is not None:
                state.say(f"        written as: {sv.written['as_written']} (changed "
                          f"{', '.join(sv.written['changed_fields'])}; original "
                          f"{sv.written['original']})")
            if s.error_json:
                state.say(f"        error: {s.error_json}")
        for d in view.decisions:
            flag = ("BLOCKED" if d.blocks else "would block") if d.would_block else ""
            state.say(f"    policy [{d.step_index}] {d.node_id} {d.policy_id}/{d.rule_id}: "
                      f"{d.result.value} ({d.mode.value}{', ' + flag if flag else ''}) under "
                      f"snapshot {d.snapshot_id} sha256 {d.snapshot_hash[:16]}…")
        if view.batch_outputs:
            state.say(f"    batch produced: {_ids(view.batch_outputs)}")
        for o in view.outcomes:
            where = f" at {o.sink_name}" if o.sink_name else ""
            kind = "terminal" if o.is_terminal else "non-terminal"
            state.say(f"    outcome: {o.outcome.value}{where} ({kind})")
        for err in view.errors:
            state.say(f"    why: {err}")
    if exp.code:
        state.say(f"  code (run manifest sha256 {exp.code_manifest_hash}):")
        for identity in exp.code:
            state.say(f"    {identity_line(identity)}")


def _explain_direct(settings: Settings, run_id: str, row_index: int | None,
                    token_id: str | None) -> Explanation | None:
    """The explanation read by a direct reader, or None when the Landscape must answer."""
    if os.environ.get(NO_DIRECT_READER_ENV, "").strip().lower() not in ("", "0", "false", "no",
                                                                         "off"):
        return None
    from governance_pipeline.landscape.sealing import PayloadProtection

    try:
        with open_reader(settings.db_url) as reader:
            if reader is None:
                return None
            return explain(reader, run_id, row_index=row_index, token_id=token_id,
                           protection=PayloadProtection(settings.keys_dir))
    except ReadFailed:
        return None


@click.command("explain")
@reporting
@click.argument("run_id")
@click.option("--row", "row_index", type=click.IntRange(min=0), help="Source row index.")
@click.option("--token", "token_id", help="Token id.")
def explain_cmd(state: CliState, run_id: str, row_index: int | None, token_id: str | None) -> int:
    """Full lineage of one row or token: payload, node states, routing, calls, outcome."""
    if (row_index is None) == (token_id is None):
        raise click.UsageError("give exactly one of --row N or --token ID")
    settings = state.settings()
    exp = _explain_direct(settings, run_id, row_index, token_id)
    if exp is None:
        from governance_pipeline.cli.access import open_landscape

        with open_landscape(settings) as landscape:
            exp = explain(landscape, run_id, row_index=row_index, token_id=token_id)
    if state.json:
        state.emit(exp.as_dict())
    else:
        _print_explanation(state, exp)
    return 0
