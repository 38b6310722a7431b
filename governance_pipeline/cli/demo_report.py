"""``governance-pipeline demo``: record the synthetic run, check it, and say where to look next."""

from __future__ import annotations

import shlex
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import click

from governance_pipeline.cli.access import open_landscape, redact
from governance_pipeline.cli.demo import MIN_ROWS, record_synthetic_run
from governance_pipeline.cli.output import CliState, findings_code, report_findings, reporting
from governance_pipeline.contracts.errors import FILE_IO_FAILED, OperationalError
from governance_pipeline.contracts.settings import Settings
from governance_pipeline.landscape.recorder import Recorder
from governance_pipeline.landscape.sweep import sweep
from governance_pipeline.landscape.verify import verify

PROG = "governance-pipeline"
PIPELINE_NAME = "demo"


def _command(name: str, invoked_as: str | None = None) -> str:
    """How to call ``name`` from this shell: bare when it is on PATH, else by its path (e.g.
    ``.venv/bin/governance-pipeline`` when the virtualenv is not activated)."""
    if shutil.which(name):
        return name
    if invoked_as and Path(invoked_as).name == name:
        return shlex.quote(invoked_as)
    return shlex.quote(str(Path(sys.executable).with_name(name)))


def next_steps(settings: Settings, run_id: str) -> list[tuple[str, str]]:
    prog = _command(PROG, sys.argv[0] if sys.argv else None)
    steps = [
        (f"{prog} runs", "list runs with status and outcome counts"),
        (f"{prog} verify {run_id}", "recompute the ledger and seals from the tables"),
        (f"{prog} sweep {run_id}", "run the audit sweep queries"),
        (f"{prog} keys public", "export the public key that checks the seals"),
    ]
    if settings.db_url.startswith("sqlite:///"):
        db_file = settings.db_url.removeprefix("sqlite:///")
        steps.append((f"sqlite3 {shlex.quote(db_file)}",
                      "read the audit tables with any SQL client"))
    steps.append((f"DAGSTER_HOME={shlex.quote(str(settings.dagster_home))} "
                  f"{_command('dagster')} dev -w workspace.yaml", "the Dagster UI (job landscape_integrity), from the repo root"))
    return steps


def run_demo(state: CliState, rows: int) -> int:
    settings = state.settings()
    state.note(f"recording a synthetic run of {rows} rows into {redact(settings.db_url)}")
    with open_landscape(settings, create=True) as landscape:
        try:
            result = record_synthetic_run(Recorder(landscape), rows=rows,
                                          pipeline_name=PIPELINE_NAME,
                                          out_dir=settings.home / "out")
        except OSError as exc:
            raise OperationalError(f"demo could not write its output: {exc}",
                                   code=FILE_IO_FAILED) from exc
        verified = verify(landscape, result.run_id)
        swept = sweep(landscape, result.run_id)
        key_id = landscape.signer.key_id
    steps = next_steps(settings, result.run_id)
    outcomes = Counter(str(o) for o in result.terminal_outcomes.values())
    doc: dict[str, Any] = {
        "run_id": result.run_id, "pipeline": PIPELINE_NAME, "rows": len(result.row_ids),
        "tokens": len(result.token_ids), "outcome_counts": dict(sorted(outcomes.items())),
        "artifact": {"path": str(result.artifact_path), "sha256": result.artifact_hash},
        "governance_home": str(settings.home), "db_url": redact(settings.db_url),
        "key_id": key_id, "verify": verified.as_dict(), "sweep": swept.as_dict(),
        "next": [cmd for cmd, _ in steps],
    }
    findings = [*verified.findings, *swept.findings]
    code = findings_code(doc["verify"], swept.findings)
    counts = " ".join(f"{k}={v}" for k, v in doc["outcome_counts"].items())
    state.say(f"recorded and sealed run {doc['run_id']} (pipeline {PIPELINE_NAME}): "
              f"{doc['rows']} rows, {doc['tokens']} tokens: {counts}")
    summary = "demo: verify and sweep " + ("OK" if not findings
                                           else f"found {len(findings)} problem(s)")
    exit_code = report_findings(state, "demo", doc, findings, summary, code)
    if not state.json:
        _print_where_next(state, doc, steps)
    return exit_code


def _print_where_next(state: CliState, doc: dict[str, Any], steps: list[tuple[str, str]]) -> None:
    state.say("")
    state.say(f"  artifact     {doc['artifact']['path']}")
    state.say(f"  sha256       {doc['artifact']['sha256']}")
    state.say(f"  audit db     {doc['db_url']}")
    state.say(f"  signing key  {doc['key_id']} (under {doc['governance_home']}/keys)")
    state.say("")
    state.say("where to look next:")
    width = max(len(cmd) for cmd, _ in steps)
    for cmd, why in steps:
        state.say(f"  {cmd.ljust(width)}  # {why}")


@click.command("demo")
@reporting
@click.option("--rows", type=click.IntRange(min=MIN_ROWS, max=100_000), default=10,
              show_default=True, help="Number of synthetic source rows.")
def demo_cmd(state: CliState, rows: int) -> int:
    """Record a small synthetic run, write its CSV artifact, seal it, then verify and sweep it."""
    return run_demo(state, rows)
