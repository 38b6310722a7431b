"""``verify-bundle PATH``: the offline check of a bundle directory.

It reads only the bundle (and ``--key``): no GOVERNANCE_HOME, no database, so an auditor can run
it on a machine that never saw the pipeline.
"""

from __future__ import annotations

from pathlib import Path

import click
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from governance_pipeline.cli.output import CliState, report_findings, reporting
from governance_pipeline.contracts.errors import (
    FILE_IO_FAILED,
    USAGE_INVALID,
    GovernanceError,
    OperationalError,
)
from governance_pipeline.governance.exports.verify_bundle import (
    BUNDLE_INVALID,
    verify_bundle,
)
from governance_pipeline.landscape.keys import PublicKey
from governance_pipeline.landscape.signing_keyring import PinnedRevocation
from governance_pipeline.landscape.trust import read_trust_doc


def read_public_key(path: Path, option: str = "--key") -> PublicKey:
    """An Ed25519 public key from a PEM file or a file of 64 hex digits (the raw key)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise OperationalError(f"cannot read public key {path}: {exc}",
                               code=FILE_IO_FAILED) from exc
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return PublicKey.from_pem(data)
        return PublicKey(Ed25519PublicKey.from_public_bytes(bytes.fromhex(data.decode().strip())))
    except (ValueError, TypeError, UnicodeDecodeError, GovernanceError) as exc:
        raise GovernanceError(f"{option} {path} is not an Ed25519 public key (PEM or 64 hex "
                              f"digits): {exc}", code=USAGE_INVALID) from exc


def read_trust_material(path: Path) -> tuple[list[PublicKey], list[PinnedRevocation]]:
    """A public key file (PEM or hex), or a trust file: its pinned keys and revocations."""
    try:
        head = path.read_bytes()[:64].lstrip()
    except OSError as exc:
        raise OperationalError(f"cannot read {path}: {exc}", code=FILE_IO_FAILED) from exc
    if head.startswith(b"{"):
        doc = read_trust_doc(path)
        assert doc is not None
        return ([p.public() for p in doc.keys],
                [PinnedRevocation(r.key_id, r.revoked_at, r.reason) for r in doc.revocations])
    return [read_public_key(path, "--trusted-key")], []


@click.command("verify-bundle")
@reporting
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--trusted-key", "--key", "key_paths", multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The producer's published public key (PEM or raw hex), or their trust file "
                   "(trusted_keys.json, with its revocations); repeatable. The bundle must be "
                   "signed by one of these keys, or by a key its signed rotation statements "
                   "link to one, valid when it signed.")
def verify_bundle_cmd(state: CliState, path: Path, key_paths: tuple[Path, ...]) -> int:
    """Check a bundle offline: signature, key, file digests, no missing or added file, and the
    inclusion proofs against the signed ledger checkpoint (exit 5 lists every problem)."""
    keys: list[PublicKey] = []
    revocations: list[PinnedRevocation] = []
    for key_path in key_paths:
        found, revoked = read_trust_material(key_path)
        keys += found
        revocations += revoked
    trusted = bool(keys)
    result = verify_bundle(path, trusted_keys=keys, revocations=revocations)
    summary = (f"verify-bundle {path}: {result.files_checked} files, {result.proofs_checked} "
               f"proofs, key {result.key_id or '-'}"
               + ("" if trusted else " (not compared with a trusted key: pass --trusted-key)")
               + "; "
               + ("OK" if result.ok else f"{len(result.findings)} finding(s)"))
    if state.json:
        return report_findings(state, "verify-bundle", result.as_dict(), result.findings,
                               summary, BUNDLE_INVALID)
    for finding in result.findings:
        state.say(f"[{finding.check}] {finding.key}: {finding.message}")
        state.say(f"    fix: {finding.extra['fix']}")
    state.say(summary)
    if result.findings:
        click.echo(f"error {BUNDLE_INVALID.code}: the bundle failed {len(result.findings)} "
                   "check(s); each finding above names the file and what is wrong", err=True)
        click.echo(f"fix: {BUNDLE_INVALID.fix}", err=True)
        return int(BUNDLE_INVALID.exit_code)
    return 0


COMMANDS = [verify_bundle_cmd]
