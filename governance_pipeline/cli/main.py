"""``governance-pipeline``: the command line (DESIGN.md §4).

Every command that reports takes ``--json`` and then prints exactly one JSON document on stdout.
Exit codes: 0 ok, 1 operational, 2 invalid input or configuration, 3 policy stop, 4 blocked,
5 integrity (verify or sweep found something). Every command that touches the audit database
brings a new database to the schema head first.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import click
from sqlalchemy import Engine

from governance_pipeline.cli.access import database_errors, open_landscape, redact
from governance_pipeline.cli.approval_commands import approvals_group
from governance_pipeline.cli.audit_log_commands import audit_log_cmd
from governance_pipeline.cli.bundle_commands import read_public_key, verify_bundle_cmd
from governance_pipeline.cli.data_protection_commands import COMMANDS as DATA_PROTECTION_COMMANDS
from governance_pipeline.cli.demo import MIN_ROWS
from governance_pipeline.cli.event_commands import events_group
from governance_pipeline.cli.export_commands import export_group
from governance_pipeline.cli.incident_commands import incidents_cmd
from governance_pipeline.cli.key_commands import COMMANDS as KEY_COMMANDS
from governance_pipeline.cli.metrics_commands import metrics_cmd
from governance_pipeline.cli.pipeline_commands import COMMANDS as PIPELINE_COMMANDS
from governance_pipeline.cli.output import (
    CliState,
    debug_from_env,
    findings_code,
    report_findings,
    reporting,
    table,
)
from governance_pipeline.contracts.errors import (
    FILE_IO_FAILED,
    SWEEP_FINDINGS,
    GovernanceError,
    NotFoundError,
    OperationalError,
)
from governance_pipeline.governance.operator_log import OperatorSurface, acting_via
from governance_pipeline.landscape import migrate
from governance_pipeline.landscape.anchors import upgrade_sealing_legacy
from governance_pipeline.landscape.database import create_landscape_engine
from governance_pipeline.landscape.keys import KeySource, load_signer
from governance_pipeline.landscape.trust import load_or_create_pinned_signer
from governance_pipeline.landscape.schema import GLOBAL_SCOPE

PROG = "governance-pipeline"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks (also GOVERNANCE_DEBUG=1).")
@click.version_option(package_name="governance-pipeline", prog_name=PROG)
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Audit pipeline with a tamper-evident Landscape.

    Settings come from the environment: GOVERNANCE_HOME (default ./.governance) and
    GOVERNANCE_DB_URL (default sqlite under GOVERNANCE_HOME).
    """
    state = ctx.ensure_object(CliState)
    state.debug = state.debug or debug


# --- demo -----------------------------------------------------------------------------------------
@cli.command("demo")
@reporting
@click.option("--rows", type=click.IntRange(min=MIN_ROWS, max=100_000), default=10,
              show_default=True, help="Number of synthetic source rows.")
def demo_cmd(state: CliState, rows: int) -> int:
    """Record a small synthetic run, write its CSV artifact, seal it, then verify and sweep it."""
    from governance_pipeline.cli.demo_report import run_demo

    return run_demo(state, rows)


# --- db -------------------------------------------------------------------------------------------
@cli.group("db")
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


# --- verify / sweep -------------------------------------------------------------------------------
@cli.command("verify")
@reporting
@click.argument("run_id", required=False)
@click.option("--public-key", "public_key_path",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Check seals against this Ed25519 public key (PEM or hex) instead of the key "
                   "pinned in the trust file (GOVERNANCE_TRUSTED_KEYS).")
def verify_cmd(state: CliState, run_id: str | None, public_key_path: Path | None) -> int:
    """Recompute the ledger from the tables and run the sweep; name every altered record (exit 5).

    RUN_ID limits the check to one run ("global" names the scope of policies and approvals).
    """
    from governance_pipeline.landscape.sweep import sweep
    from governance_pipeline.landscape.verify import verify

    explicit = read_public_key(public_key_path, "--public-key") if public_key_path else None
    with open_landscape(state.settings()) as landscape:
        anchors = landscape.trust_anchors(explicit, public_key_path)
        trusted = anchors.source
        report = verify(landscape, run_id, public_key=explicit)
        try:
            swept = None if run_id == GLOBAL_SCOPE else sweep(landscape, run_id)
        except NotFoundError:
            if report.ok:
                raise
            swept = None  # a deleted run: only its anchor is left, and verify's findings say so
        source = landscape.signing_key_source
        local = load_signer(source).key_id if source.exists() else None
        keyring = landscape.signing_keyring(anchors=anchors)
    if local is not None and not keyring.trusts(local):
        state.note(f"the signing key at {source.location} is {local}, not the trusted key "
                   f"{trusted.key.key_id} nor a key its rotations link to it: seals it makes do "
                   "not verify")
    doc = report.as_dict()
    doc["trust"] = {**trusted.as_dict(), "local_signing_key": local}
    doc["keyring"] = [e.as_dict() for e in keyring.entries.values()]
    findings = list(report.findings)
    summary = (f"verify: {len(report.scopes)} scope(s), {report.entries_checked} ledger entries, "
               f"{report.records_checked} records, {report.payloads_checked} payloads")
    if swept is not None:
        doc["sweep"] = swept.as_dict()
        findings += swept.findings
        summary += f", {len(swept.checks)} sweep checks"
    summary += "".join(f", {n} {action}" for action, n in report.redacted.counts.items() if n)
    linked = len([e for e in keyring.entries.values() if e.trusted])
    summary += f"; seals checked against {trusted.describe()}"
    if linked > 1:
        summary += f" and the {linked - 1} key(s) its rotations link to it"
    summary += "; " + ("OK" if not findings else f"{len(findings)} finding(s)")
    code = findings_code(doc, swept.findings if swept is not None else [])
    return report_findings(state, "verify", doc, findings, summary, code)


@cli.command("sweep")
@reporting
@click.argument("run_id", required=False)
def sweep_cmd(state: CliState, run_id: str | None) -> int:
    """Run the audit sweep queries; list every broken invariant (exit 5)."""
    from governance_pipeline.landscape.sweep import sweep

    with open_landscape(state.settings()) as landscape:
        report = sweep(landscape, run_id)
    summary = (f"sweep: {len(report.checks)} checks over {len(report.run_ids)} run(s); "
               + ("OK" if report.ok else f"{len(report.findings)} finding(s)"))
    return report_findings(state, "sweep", report.as_dict(), report.findings, summary,
                           SWEEP_FINDINGS)


# --- runs -----------------------------------------------------------------------------------------
def _outcomes_text(counts: dict[str, int]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "-"


@cli.command("runs")
@reporting
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Newest N runs only.")
def runs_cmd(state: CliState, limit: int | None) -> int:
    """List runs, newest first, with status and outcome counts."""
    from governance_pipeline.landscape.queries import list_runs

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


# --- keys -----------------------------------------------------------------------------------------
@cli.group("keys")
def keys_group() -> None:
    """The Ed25519 keys that sign ledger seals and bundles: public, pin, list, rotate, revoke."""


@keys_group.command("public")
@reporting
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the PEM to this file instead of stdout.")
def keys_public(state: CliState, out: Path | None) -> int:
    """Export the public half of the signing key (created on first use) as PEM."""
    settings = state.settings()
    source = KeySource.of(settings)
    signer = load_or_create_pinned_signer(settings.keys_dir, settings.trust_file, source)
    pem = signer.public.pem()
    if out is not None:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(pem)
        except OSError as exc:
            raise OperationalError(f"cannot write {out}: {exc}", code=FILE_IO_FAILED) from exc
    if state.json:
        state.emit({"command": "keys public", "key_id": signer.key_id,
                    "private_key_path": source.location,
                    "out": str(out) if out else None, "pem": pem.decode()})
    elif out is not None:
        state.say(f"wrote public key {signer.key_id} to {out}")
    else:
        click.echo(pem.decode(), nl=False)
    return 0


# --- entry point ----------------------------------------------------------------------------------
for _command in (*PIPELINE_COMMANDS, *DATA_PROTECTION_COMMANDS):
    cli.add_command(_command)
cli.add_command(approvals_group)
cli.add_command(audit_log_cmd)
cli.add_command(events_group)
cli.add_command(export_group)
cli.add_command(incidents_cmd)
cli.add_command(metrics_cmd)
cli.add_command(verify_bundle_cmd)
for _command in KEY_COMMANDS:
    keys_group.add_command(_command)


def run_cli(argv: list[str]) -> int:
    """Run the command line on ``argv`` and return its exit code (errors rendered)."""
    state = CliState(json="--json" in argv, debug="--debug" in argv or debug_from_env())
    try:
        with acting_via(OperatorSurface.CLI):  # the operator log says "cli" for these
            code = cli.main(args=argv, prog_name=PROG, standalone_mode=False, obj=state)
    except GovernanceError as exc:
        return state.render_error(exc)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 1
    except click.exceptions.NoArgsIsHelpError as exc:
        # No command given: the help is the answer, not an error message.
        click.echo(exc.format_message(), err=True)
        return int(exc.exit_code)
    except click.ClickException as exc:
        return state.render_usage(exc)
    except Exception as exc:  # noqa: BLE001 - the last resort: reported with code, never hidden
        return state.render_crash(exc)
    return code if isinstance(code, int) else 0


def main(argv: list[str] | None = None) -> NoReturn:
    sys.exit(run_cli(list(sys.argv[1:] if argv is None else argv)))


if __name__ == "__main__":
    main()
