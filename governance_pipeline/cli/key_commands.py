"""``keys public / pin / list / rotate / revoke``: the signing keys and the trust ``verify`` gives
them.

``verify`` checks seals against the pinned key and the keys signed rotations link to it only
(landscape/trust.py, landscape/signing_keyring.py), so a signing key swapped in keys/, with
every seal re-signed by it, fails verification instead of passing. Rotation and revocation are
governance/key_management.py; each writes its operator-log entry.
"""

from __future__ import annotations

from pathlib import Path

import click

from sqlalchemy import func, select

from governance_pipeline.cli.access import open_landscape
from governance_pipeline.cli.bundle_commands import read_public_key
from governance_pipeline.cli.output import CliState, reporting, table
from governance_pipeline.contracts.errors import FILE_IO_FAILED, OperationalError
from governance_pipeline.governance.key_management import revoke_key, rotate_key
from governance_pipeline.governance.operator_log import default_actor
from governance_pipeline.landscape.keys import KeySource, Signer, load_signer
from governance_pipeline.landscape.schema import ledger_seals
from governance_pipeline.landscape.signing_keyring import KeyEntry, KeyStatus
from governance_pipeline.landscape.trust import load_or_create_pinned_signer, pin_key


@click.command("pin")
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
        key = load_or_create_pinned_signer(settings.keys_dir, settings.trust_file,
                                           KeySource.of(settings)).public
        note = "pinned from the home's signing key by `keys pin`"
    changed = pin_key(settings.trust_file, key, replace=replace, note=note)
    if state.json:
        state.emit({"command": "keys pin", "key_id": key.key_id,
                    "trust_file": str(settings.trust_file), "changed": changed})
        return 0
    verb = "pinned" if changed else "already pinned:"
    state.say(f"{verb} key {key.key_id} in {settings.trust_file}")
    return 0


_ACTOR = click.option("--actor", default=None,
                      help="Who acts (default $GOVERNANCE_ACTOR, else the OS user).")


@click.command("rotate")
@reporting
@click.option("--new-key-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the new private key here (default: where the current key file is; "
                   "required when the key comes from GOVERNANCE_SIGNING_KEY).")
@click.option("--keep-old-key", is_flag=True,
              help="Keep the retired private key (renamed *.KEYID.retired.pem) instead of "
                   "destroying it.")
@_ACTOR
def rotate_cmd(state: CliState, new_key_file: Path | None, keep_old_key: bool,
               actor: str | None) -> int:
    """Start a new signing key. The old key is retired: it and the new key sign a rotation
    statement, ledgered in the global chain, so everything signed before still verifies."""
    with open_landscape(state.settings()) as landscape:
        result = rotate_key(landscape, actor=actor or default_actor(),
                            new_key_file=new_key_file, keep_old_key=keep_old_key)
    if state.json:
        state.emit({"command": "keys rotate", **result.as_dict()})
        return 0
    state.say(f"rotated: key {result.old_key_id} retired at {result.rotated_at}, key "
              f"{result.new_key_id} active (private key {result.new_key_file})")
    state.say(f"old private key: {result.old_key}")
    for note in result.notes:
        state.say(f"note: {note}")
    return 0


@click.command("revoke")
@reporting
@click.argument("key_id")
@click.option("--reason", required=True, help="Why (recorded in the signed revocation).")
@click.option("--at", "at", default=None,
              help="Nothing the key signed after this ISO 8601 time is accepted (default now; "
                   "give the moment it may have been compromised).")
@_ACTOR
def revoke_cmd(state: CliState, key_id: str, reason: str, at: str | None,
               actor: str | None) -> int:
    """Revoke a retired key: seals and bundles it signed after --at fail verify (exit 5)."""
    with open_landscape(state.settings()) as landscape:
        result = revoke_key(landscape, key_id, reason=reason, at=at,
                            actor=actor or default_actor())
    if state.json:
        state.emit({"command": "keys revoke", **result.as_dict()})
        return 0
    state.say(f"revoked: key {result.key_id} from {result.revoked_at} ({result.reason}), "
              f"signed by key {result.signed_by}")
    for note in result.notes:
        state.say(f"note: {note}")
    return 0


@click.command("list")
@reporting
def list_cmd(state: CliState) -> int:
    """Every signing key of this Landscape: id, status, validity, trust, private key, fingerprint."""
    settings = state.settings()
    with open_landscape(settings) as landscape:
        keyring = landscape.signing_keyring()
        source = landscape.signing_key_source
        local = load_signer(source) if source.exists() else None
        with landscape.engine.connect() as conn:
            first = dict(conn.execute(select(ledger_seals.c.key_id,
                                             func.min(ledger_seals.c.sealed_at))
                                      .group_by(ledger_seals.c.key_id)).all())
        pinned = {p.key_id for p in landscape.trust_anchors().keys}
    rows = []
    entries = list(keyring.entries.values())
    if local is not None and local.key_id not in keyring.entries:
        entries.append(KeyEntry(local.key_id, local.public, KeyStatus.ACTIVE, trusted=False))
    for entry in sorted(entries, key=lambda e: (e.active_from or first.get(e.key_id) or "")):
        doc = entry.as_dict()
        doc["pinned"] = entry.key_id in pinned
        doc["first_seal_at"] = first.get(entry.key_id)
        doc["private_key"] = _private_key_location(entry, local, source)
        rows.append(doc)
    if state.json:
        state.emit({"command": "keys list", "trust_file": str(landscape.trust_path),
                    "keys": rows, "problems": [{"item": p.item, "message": p.message}
                                               for p in keyring.problems]})
        return 0
    lines = table(("KEY ID", "STATUS", "FROM", "TO", "TRUST", "PRIVATE KEY", "FINGERPRINT"),
                  [(r["key_id"], r["status"], r["active_from"] or r["first_seal_at"] or "-",
                    r["revoked_at"] or r["retired_at"] or "-",
                    "pinned" if r["pinned"] else "linked" if r["trusted"] else "UNTRUSTED",
                    r["private_key"], f"SHA256:{r['fingerprint']}") for r in rows])
    for line in lines:
        state.say(line)
    for problem in keyring.problems:
        state.say(f"problem: {problem.item}: {problem.message}")
    return 0


def _private_key_location(entry: KeyEntry, local: Signer | None, source: KeySource) -> str:
    if local is not None and local.key_id == entry.key_id:
        return source.location
    path = source.path
    if path is not None:
        archive = path.with_name(f"{path.stem}.{entry.key_id}.retired{path.suffix}")
        if archive.exists():
            return str(archive)
    return "-" if entry.status is KeyStatus.ACTIVE else "destroyed or elsewhere"



@click.group("keys")
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


for _command in (pin_cmd, list_cmd, rotate_cmd, revoke_cmd):
    keys_group.add_command(_command)
