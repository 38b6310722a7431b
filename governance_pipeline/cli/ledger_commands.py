"""``ledger witness``: publish the latest checkpoints to an append-only directory kept elsewhere.

A witness directory is what lets ``verify --witness DIR`` catch a ledger that was rewritten and
re-signed with the real key (``landscape.witnessing``, ``landscape.verify_witness``).
"""

from __future__ import annotations

from pathlib import Path

import click
from governance_pipeline.cli.access import open_landscape
from governance_pipeline.cli.bundle_commands import read_public_key
from governance_pipeline.cli.output import CliState, reporting
from governance_pipeline.contracts.errors import (
    FILE_IO_FAILED,
    USAGE_INVALID,
    GovernanceError,
    OperationalError,
)
from governance_pipeline.contracts.signed_note import SIG_COSIGNATURE_V1, Verifier
from governance_pipeline.contracts.tlog_errors import TlogError
from governance_pipeline.landscape.witnessing import (
    COSIGN_KEY_INVALID,
    Cosigner,
    WitnessOutcome,
    witness_scope,
    witness_scopes,
)


def read_cosigner_keys(values: tuple[str, ...]) -> list[Verifier]:
    """``--cosigner-key``: a vkey (``name+hex id+base64``) or a file holding one per line."""
    verifiers: list[Verifier] = []
    for value in values:
        path = Path(value)
        try:
            lines = path.read_text(encoding="utf-8").split() if path.is_file() else [value]
        except OSError as exc:
            raise OperationalError(f"cannot read cosigner key {path}: {exc}",
                                   code=FILE_IO_FAILED) from exc
        for line in lines:
            try:
                verifier = Verifier.from_vkey(line.strip())
            except TlogError as exc:
                raise GovernanceError(f"--cosigner-key {value}: not a vkey: {exc.message}",
                                      code=USAGE_INVALID) from exc
            if verifier.sig_type != SIG_COSIGNATURE_V1:
                raise GovernanceError(f"--cosigner-key {value}: {verifier.name} is not a "
                                      "tlog-cosignature v1 (Ed25519, type 0x04) key",
                                      code=USAGE_INVALID)
            verifiers.append(verifier)
    return verifiers


def _line(o: WitnessOutcome) -> str:
    if not o.written:
        return f"{o.scope}: size {o.size} already witnessed ({o.path})"
    since = f" (extends size {o.previous_size})" if o.previous_size is not None else " (first)"
    return (f"{o.scope}: witnessed size {o.size} root {o.root}{since}"
            f"{', cosigned' if o.cosigned else ''} -> {o.path}")


@click.group("ledger")
def ledger_group() -> None:
    """The ledger as a transparency log: checkpoints, witnessing."""


@ledger_group.command("witness")
@reporting
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The witness directory (append-only; keep it outside GOVERNANCE_HOME, ideally "
                   "with a second party).")
@click.option("--runs", is_flag=True, help="Also witness every sealed run's checkpoint.")
@click.option("--cosign-key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Ed25519 private key (PEM) of the witness: adds a tlog-cosignature v1 line.")
@click.option("--cosigner-name", help="Key name of the cosignature (with --cosign-key), e.g. "
                                      "witness.example.com/w1.")
@click.option("--public-key", "public_key_path",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Check the log's checkpoints against this key instead of the pinned one.")
def witness_cmd(state: CliState, out: Path, runs: bool, cosign_key: Path | None,
                cosigner_name: str | None, public_key_path: Path | None) -> int:
    """Append the latest checkpoint of the global scope (and with --runs of every run) to DIR,
    after checking it is signed and consistent with the newest one DIR holds (exit 5 if not)."""
    if (cosign_key is None) != (cosigner_name is None):
        raise GovernanceError("--cosign-key and --cosigner-name go together",
                              code=COSIGN_KEY_INVALID)
    cosigner = Cosigner.from_file(cosign_key, cosigner_name) if cosign_key and cosigner_name \
        else None
    explicit = read_public_key(public_key_path, "--public-key") if public_key_path else None
    outcomes: list[WitnessOutcome] = []
    with open_landscape(state.settings()) as landscape:
        anchors = landscape.trust_anchors(explicit, public_key_path)
        trusted = anchors.source
        keys = landscape.trusted_public_keys(anchors)
        for scope in witness_scopes(landscape, runs):
            outcomes.append(witness_scope(landscape, scope, out, trusted=keys,
                                          cosigner=cosigner))
    if state.json:
        state.emit({"command": "ledger witness", "out": str(out), "trust": trusted.as_dict(),
                    "cosigner_vkey": cosigner.verifier().vkey() if cosigner else None,
                    "checkpoints": [o.as_dict() for o in outcomes]})
        return 0
    for outcome in outcomes:
        state.say(_line(outcome))
    if cosigner is not None:
        state.say(f"cosigner key (give it to verifiers): {cosigner.verifier().vkey()}")
    return 0


COMMANDS = [ledger_group]
