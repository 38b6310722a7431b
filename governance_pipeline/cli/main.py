"""``governance-pipeline``: the command line (DESIGN.md §4).

Every command that reports takes ``--json`` and then prints exactly one JSON document on stdout.
Exit codes: 0 ok, 1 operational, 2 invalid input or configuration, 3 policy stop, 4 blocked,
5 integrity (verify or sweep found something). Every command that touches the audit database
brings a new database to the schema head first.

Each command's module is imported only when that command runs (``cli/lazy.py``): ``--help`` and
``explain`` do not pay for the engine, Dagster, pandas, reportlab or pyarrow. A new command is a
``COMMANDS`` entry: its module, its attribute and its short help (the docstring's first sentence).
"""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from governance_pipeline.cli.lazy import LazyCommand, LazyGroup
from governance_pipeline.cli.output import CliState, debug_from_env
from governance_pipeline.contracts.errors import GovernanceError
from governance_pipeline.contracts.operator_records import OperatorSurface
from governance_pipeline.contracts.surface import acting_via

PROG = "governance-pipeline"


def _entry(module: str, attribute: str, short_help: str) -> LazyCommand:
    return LazyCommand(f"governance_pipeline.cli.{module}", attribute, short_help)


#: Every top-level command: where it lives and the short help ``--help`` lists.
COMMANDS: dict[str, LazyCommand] = {
    "approvals": _entry("approval_commands", "approvals_group",
                        "Approval ladders: request, decide, delegate, reset, consume "
                        "(docs/approvals.md)."),
    "audit-log": _entry("audit_log_commands", "audit_log_cmd",
                        "List operator actions, oldest first: time, actor, action, result and "
                        "GP code, subject, and the hashes of the inputs (never a token)."),
    "db": _entry("db_commands", "db_group", "The audit database schema."),
    "demo": _entry("demo_report", "demo_cmd",
                   "Record a small synthetic run, write its CSV artifact, seal it, then verify "
                   "and sweep it."),
    "erase": _entry("data_protection_commands", "erase_cmd",
                    "Crypto-shred a data subject's payloads: destroy their keys, record the "
                    "erasure."),
    "events": _entry("event_commands", "events_group", "The event stream (outbox), newest last."),
    "explain": _entry("explain_commands", "explain_cmd",
                      "Full lineage of one row or token: payload, node states, routing, calls, "
                      "outcome."),
    "export": _entry("export_commands", "export_group",
                     "Write an evidence, SOC 2 or debrief bundle (needs an approved export "
                     "ladder)."),
    "hold": _entry("data_protection_commands", "hold_group",
                   "Legal holds: a held run (or an incident's run) is never purged."),
    "incidents": _entry("incident_commands", "incidents_cmd",
                        "List incidents, or show one: its inflection point (row, node, rule), "
                        "the policy snapshot hash, what was written before the stop, and the "
                        "lineage of the violating row."),
    "keys": _entry("key_commands", "keys_group",
                   "The Ed25519 keys that sign ledger seals and bundles: public, pin, list, rotate, "
                   "revoke."),
    "ledger": _entry("ledger_commands", "ledger_group",
                     "The ledger as a transparency log: checkpoints, witnessing."),
    "metrics": _entry("metrics_commands", "metrics_cmd",
                      "Print (or serve) rows/s of recent runs, outcome counts, quarantine rate, "
                      "policy decisions by mode and result, policy stops, approvals pending and "
                      "overdue, event delivery failures and operator actions, in the "
                      "Prometheus text format."),
    "purge": _entry("data_protection_commands", "purge_cmd",
                    "Remove payload contents past retention (hashes stay; verify reports them "
                    "as purged)."),
    "resume": _entry("pipeline_commands", "resume_cmd",
                     "Continue a failed, interrupted or abandoned run from its checkpoints (a "
                     "new Dagster run of the pipeline's job, continuing the same Landscape "
                     "run)."),
    "run": _entry("pipeline_commands", "run_cmd",
                  "Run a pipeline as a Dagster run on the local instance (DAGSTER_HOME, default "
                  "$GOVERNANCE_HOME/dagster); progress on stderr, the result (counts, sinks and "
                  "digests) on stdout."),
    "runs": _entry("runs_commands", "runs_cmd",
                   "List runs, newest first, with status and outcome counts."),
    "sweep": _entry("integrity_commands", "sweep_cmd",
                    "Run the audit sweep queries; list every broken invariant (exit 5)."),
    "validate": _entry("pipeline_commands", "validate_cmd",
                       "Check a pipeline file: schema, wiring, plugins and their options, "
                       "expressions; then its risk tier (pass / escalate / reject) and IR hash."),
    "verify": _entry("integrity_commands", "verify_cmd",
                     "Recompute the ledger from the tables and run the sweep; name every "
                     "altered record (exit 5)."),
    "verify-bundle": _entry("bundle_commands", "verify_bundle_cmd",
                            "Check a bundle offline: signature, key, file digests, no missing or "
                            "added file, and the inclusion proofs against the signed ledger "
                            "checkpoint (exit 5 lists every problem)."),
}


@click.group(cls=LazyGroup, lazy=COMMANDS,
             context_settings={"help_option_names": ["-h", "--help"]})
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


# --- entry point ----------------------------------------------------------------------------------
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
