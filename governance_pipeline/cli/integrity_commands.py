"""``verify [RUN_ID]`` and ``sweep [RUN_ID]``: the ledger and the audit sweep (exit 5 on findings)."""

from __future__ import annotations

from pathlib import Path

import click

from governance_pipeline.cli.access import open_landscape
from governance_pipeline.cli.bundle_commands import read_public_key
from governance_pipeline.cli.ledger_commands import read_cosigner_keys
from governance_pipeline.cli.output import CliState, findings_code, report_findings, reporting
from governance_pipeline.contracts.errors import (
    SWEEP_FINDINGS,
    USAGE_INVALID,
    GovernanceError,
    NotFoundError,
)
from governance_pipeline.landscape.keys import load_signer
from governance_pipeline.landscape.schema import GLOBAL_SCOPE
from governance_pipeline.landscape.sweep import sweep
from governance_pipeline.landscape.verify import verify


@click.command("verify")
@reporting
@click.argument("run_id", required=False)
@click.option("--public-key", "public_key_path",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Check seals against this Ed25519 public key (PEM or hex) instead of the key "
                   "pinned in the trust file (GOVERNANCE_TRUSTED_KEYS).")
@click.option("--witness", "witness_dir",
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A witness directory (`ledger witness --out`): the ledger must still have "
                   "every checkpoint it holds.")
@click.option("--cosigner-key", "cosigner_keys", multiple=True, metavar="VKEY",
              help="With --witness: every witnessed checkpoint must carry a valid "
                   "tlog-cosignature of this key (a vkey, or a file of vkeys). Repeatable.")
def verify_cmd(state: CliState, run_id: str | None, public_key_path: Path | None,
               witness_dir: Path | None, cosigner_keys: tuple[str, ...]) -> int:
    """Recompute the ledger from the tables and run the sweep; name every altered record (exit 5).

    RUN_ID limits the check to one run ("global" names the scope of policies and approvals).
    """
    if cosigner_keys and witness_dir is None:
        raise GovernanceError("--cosigner-key needs --witness DIR", code=USAGE_INVALID)
    cosigners = read_cosigner_keys(cosigner_keys)
    explicit = read_public_key(public_key_path, "--public-key") if public_key_path else None
    with open_landscape(state.settings()) as landscape:
        anchors = landscape.trust_anchors(explicit, public_key_path)
        trusted = anchors.source
        report = verify(landscape, run_id, public_key=explicit, witness_dir=witness_dir,
                        cosigners=cosigners)
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
    linked = len(keyring.trusted())
    summary += f"; seals checked against {trusted.describe()}"
    if linked > 1:
        summary += f" and the {linked - 1} key(s) its rotations link to it"
    if report.witness is not None:
        summary += (f"; {report.witness.checked} witnessed checkpoint(s) of "
                    f"{report.witness.root}")
    summary += "; " + ("OK" if not findings else f"{len(findings)} finding(s)")
    code = findings_code(doc, swept.findings if swept is not None else [])
    return report_findings(state, "verify", doc, findings, summary, code)


@click.command("sweep")
@reporting
@click.argument("run_id", required=False)
def sweep_cmd(state: CliState, run_id: str | None) -> int:
    """Run the audit sweep queries; list every broken invariant (exit 5)."""
    with open_landscape(state.settings()) as landscape:
        report = sweep(landscape, run_id)
    summary = (f"sweep: {len(report.checks)} checks over {len(report.run_ids)} run(s); "
               + ("OK" if report.ok else f"{len(report.findings)} finding(s)"))
    return report_findings(state, "sweep", report.as_dict(), report.findings, summary,
                           SWEEP_FINDINGS)
