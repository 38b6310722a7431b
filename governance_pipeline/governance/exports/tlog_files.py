"""A bundle's transparency-log files: one tlog-proof per sampled record, its checkpoints, its key.

```
proofs/<n>.tlog-proof        c2sp.org/tlog-proof@v1 for the record of proofs.json[n]
checkpoints/<scope>.checkpoint  the scope's signed checkpoint (c2sp.org/tlog-checkpoint), verbatim
trust/log.vkey               the signed-note verifier key(s) of those checkpoints, one per line
```

They say with standard formats what ``proofs.json`` says with ours, so a third party checks them
with any C2SP/RFC 6962 tool: the proof's checkpoint is byte-identical to the bundle's checkpoint
file of its scope, signed by the bundle's key; ``extra`` (``tlog_extra``) recomputes the leaf from
the record, and the inclusion proof binds the leaf to the checkpoint's root. The builder checks
every file with the same checker ``verify-bundle`` uses before it returns, so a bundle never
ships a bad one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from governance_pipeline.contracts import merkle
from governance_pipeline.contracts.errors import (
    LEDGER_TAMPERED,
    AuditIntegrityError,
    ConfigError,
)
from governance_pipeline.contracts.signed_note import parse_note
from governance_pipeline.contracts.tlog_checkpoint import Checkpoint as LogCheckpoint
from governance_pipeline.contracts.tlog_checkpoint import open_checkpoint, parse_checkpoint
from governance_pipeline.contracts.tlog_errors import TlogError
from governance_pipeline.contracts.tlog_proof import TlogProof, parse_tlog_proof
from governance_pipeline.governance.exports.bundle_format import WRITER_DIRS
from governance_pipeline.governance.exports.checkpoint import Checkpoint, Seal
from governance_pipeline.governance.exports.proofs import RECORD_UNPROVABLE
from governance_pipeline.governance.exports.tlog_extra import extra_of, leaf_from_extra, parse_extra
from governance_pipeline.landscape import tlog, tlog_view
from governance_pipeline.landscape.checkpoints import log_verifier
from governance_pipeline.landscape.keys import PublicKey
from governance_pipeline.landscape.store import Landscape
from governance_pipeline.landscape.verify import _read_snapshot

PROOF_DIR, CHECKPOINT_DIR, TRUST_DIR = WRITER_DIRS
LOG_VKEY_FILE = f"{TRUST_DIR}/log.vkey"
PROOF_SUFFIX = ".tlog-proof"


def proof_name(n: int) -> str:
    return f"{PROOF_DIR}/{n}{PROOF_SUFFIX}"


def checkpoint_name(scope: str) -> str:
    return f"{CHECKPOINT_DIR}/{scope}.checkpoint"


def vkey_lines(key: PublicKey, origins: Sequence[str]) -> str:
    """``trust/log.vkey``: the vkey of ``key`` under each origin, one per line, sorted."""
    return vkey_lines_of((key, o) for o in origins)


def vkey_lines_of(pairs: Iterable[tuple[PublicKey, str]]) -> str:
    """``trust/log.vkey`` of checkpoints signed by several keys (a rotation between seals): the
    vkey of each (key, origin), one per line, sorted."""
    lines = {log_verifier(o, key).vkey() for key, o in pairs}
    return "".join(f"{line}\n" for line in sorted(lines))


KeyOf = Callable[[Seal], "PublicKey | None"]


def expected_names(proof_count: int, scopes: Sequence[str]) -> set[str]:
    """The tlog file names a bundle of ``proof_count`` proofs over ``scopes`` holds."""
    names = {proof_name(n) for n in range(proof_count)}
    names.update(checkpoint_name(s) for s in scopes)
    if scopes:
        names.add(LOG_VKEY_FILE)
    return names


# --- building -------------------------------------------------------------------------------------
def tlog_files(landscape: Landscape, proofs: Sequence[dict[str, Any]],
               checkpoint: Checkpoint) -> dict[str, bytes]:
    """The tlog files for ``proofs`` (``inclusion_proofs`` under ``checkpoint``), each checked.

    Raises ``ConfigError`` GP-BUNDLE-004 when a scope has no signed checkpoint at the size its
    seal names, or a proof is for a scope the checkpoint does not cover; ``TlogError`` /
    ``AuditIntegrityError`` when the Landscape's tree does not prove a record.
    """
    keyring = landscape.own_keyring()
    fallback = landscape.signer.public

    def key_of(seal: Seal) -> PublicKey:
        """The key that signed the seal's checkpoint (the seal's, so rotation-proof)."""
        return keyring.public(seal.key_id) or fallback

    notes: dict[str, tlog.StoredCheckpoint] = {}
    trees: dict[str, tlog.ScopeTree] = {}
    files: dict[str, bytes] = {}
    with _read_snapshot(landscape.engine) as conn:
        prefix = tlog_view.origin_prefix(conn)
        for seal in checkpoint.seals:
            try:
                stored = tlog.checkpoint_at(conn, seal.scope, seal.seq)
            except TlogError as exc:
                raise ConfigError(f"scope {seal.scope} has no signed checkpoint at the size of "
                                  f"seal {seal.seal_id} (seq {seal.seq}): {exc.message}",
                                  code=RECORD_UNPROVABLE, details={"scope": seal.scope}) from exc
            notes[seal.scope] = stored
            files[checkpoint_name(seal.scope)] = stored.note.encode("utf-8")
        for n, proof in enumerate(proofs):
            scope, seq = proof["scope"], proof["entry"]["seq"]
            stored = notes.get(scope)
            if stored is None:
                raise ConfigError(f"a proof is for scope {scope!r}, which the checkpoint does "
                                  "not cover", code=RECORD_UNPROVABLE, details={"scope": scope})
            if scope not in trees:
                trees[scope] = tlog.ScopeTree.load(conn, scope, stored.size)
            made = tlog.tlog_proof(conn, scope, seq, checkpoint=stored, extra=extra_of(proof),
                                   tree=trees[scope])
            files[proof_name(n)] = made.format().encode("utf-8")
    if checkpoint.seals:
        assert prefix is not None  # a stored checkpoint fixed it
        files[LOG_VKEY_FILE] = vkey_lines_of(
            (key_of(seal), tlog_view.origin(prefix, seal.scope))
            for seal in checkpoint.seals).encode("utf-8")
    problems = check_tlog_files(files, checkpoint.seals, list(proofs), key_of)
    if problems:
        raise AuditIntegrityError(f"the ledger's tree does not prove the bundle's records: "
                                  f"{problems[0][0]}: {problems[0][1]}", code=LEDGER_TAMPERED,
                                  details={"problems": [f"{f}: {m}" for f, m in problems]})
    return files


# --- checking -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Log:
    """One scope's checkpoint as the bundle carries it, once checked."""

    note: str
    origin: str
    key: PublicKey


def _describe(note: str) -> str:
    try:
        cp = parse_checkpoint(parse_note(note)[0])
    except TlogError:
        return "an unreadable checkpoint"
    return f"origin {cp.origin} size {cp.size}"


def check_checkpoint_file(scope: str, data: bytes | None, seal: Seal,
                          key: PublicKey) -> tuple[_Log | None, list[str]]:
    """``checkpoints/<scope>.checkpoint`` against the seal the signed manifest names: a
    checkpoint of ``scope``'s log (origin ``<prefix>/<scope>``), signed by ``key`` under that
    origin, of the seal's size."""
    if data is None:
        return None, ["missing: the bundle has no checkpoint for this scope"]
    try:
        note = data.decode("utf-8")
        origin = parse_checkpoint(parse_note(note)[0]).origin
    except UnicodeDecodeError as exc:
        return None, [f"not UTF-8 text: {exc}"]
    except TlogError as exc:
        return None, [f"not a checkpoint: {exc.message}"]
    split = tlog_view.split_origin(origin)
    if split is None or split[1] != scope:
        return None, [f"origin {origin!r} is not the log of scope {scope}"]
    try:
        cp, _ = open_checkpoint(note, tlog_view.log_verifiers(key, [origin]), origin)
    except TlogError as exc:
        return None, [f"not signed by key {key.key_id} as {origin}: {exc.message}"]
    if cp.size != seal.seq:
        return None, [f"tree size {cp.size}, the manifest's seal of scope {scope} is at seq "
                      f"{seal.seq}"]
    return _Log(note, origin, key), []


def check_proof_file(data: bytes, json_proof: Any, logs: Mapping[str, _Log]) -> list[str]:
    """Every reason the tlog-proof ``data`` does not prove the record of ``json_proof`` (the
    bundle's proofs.json entry of the same number) under the bundle's checkpoints ``logs``."""
    try:
        proof = parse_tlog_proof(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return [f"not a c2sp.org/tlog-proof@v1 file: not UTF-8 ({exc})"]
    except TlogError as exc:
        return [f"not a c2sp.org/tlog-proof@v1 file: {exc.message}"]
    extra, why = parse_extra(proof.extra)
    if extra is None:
        return [why]
    scope = extra.scope
    log = logs.get(scope)
    if log is None:
        return [f"proof for scope {scope}, for which the bundle has no valid checkpoint"]
    problems: list[str] = []
    key = log.key
    if proof.checkpoint_note != log.note:
        problems.append(f"proof for another checkpoint: it carries "
                        f"{_describe(proof.checkpoint_note)}, the bundle's checkpoint of scope "
                        f"{scope} is {_describe(log.note)}")
    try:
        cp: LogCheckpoint | None = open_checkpoint(
            proof.checkpoint_note, tlog_view.log_verifiers(key, [log.origin]), log.origin)[0]
    except TlogError as exc:
        cp = None
        problems.append(f"its checkpoint is not signed by key {key.key_id} as the log of scope "
                        f"{scope}: {exc.message}")
    record = json_proof.get("record") if isinstance(json_proof, dict) else None
    shown = {k: record.get(k) for k in ("table", "key", "columns", "values")} \
        if isinstance(record, dict) else None
    if shown != extra.record.model_dump() or json_proof.get("scope") != scope:
        problems.append("extra shows another record than the bundle's proofs.json entry of the "
                        "same number")
    leaf, steps = leaf_from_extra(extra)
    problems += steps
    if proof.index != extra.entry.seq - 1:
        problems.append(f"index {proof.index} is not the leaf of entry seq {extra.entry.seq} "
                        f"(index {extra.entry.seq - 1})")
    if cp is not None and leaf is not None and not merkle.verify_inclusion(
            leaf, proof.index, cp.size, list(proof.hashes), cp.root_hash):
        problems.append(f"inclusion proof invalid: it does not lead leaf {proof.index} to the "
                        f"root of the checkpoint (size {cp.size})")
    return problems


def check_tlog_files(files: Mapping[str, bytes | None], seals: Sequence[Seal],
                     json_proofs: Sequence[Any], key_of: KeyOf) -> list[tuple[str, str]]:
    """(file, problem) of every tlog file of a bundle (``files``: name → bytes, None if absent).
    ``key_of`` names the trusted key of each seal (None: none is trusted). Pure: the bundle's
    own files and the keys, nothing else."""
    problems: list[tuple[str, str]] = []
    logs: dict[str, _Log] = {}
    for seal in seals:
        name = checkpoint_name(seal.scope)
        key = key_of(seal)
        if key is None:
            problems.append((name, f"cannot be checked: seal {seal.seal_id} is by key "
                             f"{seal.key_id}, which no trusted key links to"))
            continue
        log, found = check_checkpoint_file(seal.scope, files.get(name), seal, key)
        problems += [(name, p) for p in found]
        if log is not None:
            logs[seal.scope] = log
    prefixes = {log.origin.rpartition("/")[0] for log in logs.values()}  # split_origin checked
    if len(prefixes) > 1:
        problems.append((CHECKPOINT_DIR, f"the checkpoints name {len(prefixes)} logs "
                         f"({', '.join(sorted(prefixes))}); one Landscape has one origin prefix"))
    if seals:
        got = files.get(LOG_VKEY_FILE)
        want = vkey_lines_of((log.key, log.origin) for log in logs.values()).encode("utf-8")
        if got is None:
            problems.append((LOG_VKEY_FILE, "missing: the bundle has no log verifier key"))
        elif got != want:
            problems.append((LOG_VKEY_FILE, "not the verifier key(s) of the keys that signed "
                             f"the bundle's checkpoints: expected {want.decode().strip()!r}"))
    for n, json_proof in enumerate(json_proofs):
        name = proof_name(n)
        data = files.get(name)
        if data is None:
            problems.append((name, "missing: every sampled record has a tlog-proof file"))
            continue
        problems += [(name, p) for p in check_proof_file(data, json_proof, logs)]
    return problems
