"""``keys public`` and ``keys pin``: export the signing key's public half; pin the public key
``verify`` trusts, in a trust file apart from keys/.

``verify`` checks seals against the pinned key only (landscape/trust.py), so a signing key
swapped in keys/, with every seal re-signed by it, fails verification instead of passing.
"""

from __future__ import annotations

from pathlib import Path

import click

from governance_pipeline.cli.bundle_commands import read_public_key
from governance_pipeline.cli.output import CliState, reporting
from governance_pipeline.contracts.errors import FILE_IO_FAILED, OperationalError
from governance_pipeline.landscape.keys import PRIVATE_KEY_FILE
from governance_pipeline.landscape.trust import load_or_create_pinned_signer, pin_key


@click.group("keys")
def keys_group() -> None:
    """The Ed25519 key that signs ledger seals."""


@keys_group.command("public")
@reporting
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the PEM to this file instead of stdout.")
def keys_public(state: CliState, out: Path | None) -> int:
    """Export the public half of the signing key (created on first use) as PEM."""
    settings = state.settings()
    signer = load_or_create_pinned_signer(settings.keys_dir, settings.trust_file)
    pem = signer.public.pem()
    if out is not None:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(pem)
        except OSError as exc:
            raise OperationalError(f"cannot write {out}: {exc}", code=FILE_IO_FAILED) from exc
    if state.json:
        state.emit({"command": "keys public", "key_id": signer.key_id,
                    "private_key_path": str(settings.keys_dir / PRIVATE_KEY_FILE),
                    "out": str(out) if out else None, "pem": pem.decode()})
    elif out is not None:
        state.say(f"wrote public key {signer.key_id} to {out}")
    else:
        click.echo(pem.decode(), nl=False)
    return 0


@keys_group.command("pin")
@reporting
@click.option("--public-key", "public_key_path",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Pin this published key (PEM or 64 hex digits) instead of this home's own "
                   "signing key.")
@click.option("--replace", is_flag=True,
              help="Replace a different key pinned already (on purpose only: key rotation).")
def pin_cmd(state: CliState, public_key_path: Path | None, replace: bool) -> int:
    """Pin the key that verify trusts (GOVERNANCE_TRUSTED_KEYS, default
    $GOVERNANCE_HOME/trusted_keys.json). Without --public-key: this home's signing key, which
    you should pin only if you know it is the key that made the seals."""
    settings = state.settings()
    if public_key_path is not None:
        key = read_public_key(public_key_path, "--public-key")
        note = f"pinned from {public_key_path}"
    else:
        key = load_or_create_pinned_signer(settings.keys_dir, settings.trust_file).public
        note = "pinned from the home's signing key by `keys pin`"
    changed = pin_key(settings.trust_file, key, replace=replace, note=note)
    if state.json:
        state.emit({"command": "keys pin", "key_id": key.key_id,
                    "trust_file": str(settings.trust_file), "changed": changed})
        return 0
    verb = "pinned" if changed else "already pinned:"
    state.say(f"{verb} key {key.key_id} in {settings.trust_file}")
    return 0
