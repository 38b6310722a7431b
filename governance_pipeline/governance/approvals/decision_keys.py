"""Approvers' Ed25519 keys and signed decision statements.

Public keys are the ones people already have: an OpenSSH ``ssh-ed25519 AAAA... comment`` line or
a PEM ``PUBLIC KEY``; private keys an OpenSSH or PEM (PKCS#8) file without passphrase (ssh-agent
is not supported: ``cryptography`` has no agent client). A key is named by its OpenSSH
fingerprint (``SHA256:`` + unpadded base64 of the SHA-256 of its wire blob), the string
``ssh-keygen -lf`` prints, so an approver can recognise their own key.

A decision statement binds the vote to one approval, round, stage, decision, subject hash,
actor and role; its signature is Ed25519 over the RFC 8785 canonical JSON of the statement, so a
signature copied from another approval or round proves nothing here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from governance_pipeline.contracts.errors import ConfigError, ExitCode, register
from governance_pipeline.contracts.hashing import canonical_json

STATEMENT_TYPE = "governance-pipeline/approval-decision/v1"
#: The fields a statement must carry, in the order the docs list them.
STATEMENT_FIELDS = ("type", "approval_id", "round", "stage", "decision", "subject_hash",
                    "actor", "role", "signed_at")

KEY_INVALID = register(
    "GP-SIGN-005", "An approver key cannot be used",
    "Give an Ed25519 key: a public key as an OpenSSH line (`ssh-ed25519 AAAA... comment`) or "
    "PEM; a private key (`--key FILE`) as an OpenSSH or PEM file without passphrase (create "
    "one with `ssh-keygen -t ed25519`; ssh-agent is not supported).",
    ExitCode.INVALID_INPUT)


def load_public_key(text: str) -> Ed25519PublicKey:
    """An Ed25519 public key from an OpenSSH line or a PEM block (``ConfigError`` GP-SIGN-005)."""
    data = text.strip().encode("utf-8")
    try:
        if data.startswith(b"ssh-"):
            key = serialization.load_ssh_public_key(data)
        elif data.startswith(b"-----BEGIN"):
            key = serialization.load_pem_public_key(data)
        else:
            raise ConfigError("not an OpenSSH public key line nor a PEM block",
                              code=KEY_INVALID)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ConfigError(f"unreadable public key: {exc}", code=KEY_INVALID) from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError("the public key is not an Ed25519 key", code=KEY_INVALID)
    return key


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """An Ed25519 private key from an OpenSSH or PEM file (``ConfigError`` GP-SIGN-005)."""
    try:
        data = path.read_bytes()
        if b"OPENSSH PRIVATE KEY" in data:
            key = serialization.load_ssh_private_key(data, password=None)
        else:
            key = serialization.load_pem_private_key(data, password=None)
    except OSError as exc:
        raise ConfigError(f"cannot read the key file {path}: {exc.strerror or exc}",
                          code=KEY_INVALID) from exc
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ConfigError(f"{path} is not a usable private key: {exc}",
                          code=KEY_INVALID) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path} is not an Ed25519 private key", code=KEY_INVALID)
    return key


def fingerprint(key: Ed25519PublicKey) -> str:
    """The OpenSSH SHA256 fingerprint of ``key`` (as ``ssh-keygen -lf`` prints it)."""
    line = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    blob = base64.b64decode(line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def decision_statement(*, approval_id: str, round: int, stage: str, decision: str,
                       subject_hash: str, actor: str, role: str,
                       signed_at: str) -> dict[str, Any]:
    return {"type": STATEMENT_TYPE, "approval_id": approval_id, "round": round, "stage": stage,
            "decision": decision, "subject_hash": subject_hash, "actor": actor, "role": role,
            "signed_at": signed_at}


@dataclass(frozen=True, slots=True)
class SignedDecision:
    """A decision statement, the base64 Ed25519 signature over its canonical JSON, and the
    fingerprint of the key that made it."""

    statement: Mapping[str, Any]
    signature: str
    key_fingerprint: str

    @property
    def message(self) -> bytes:
        return canonical_json(dict(self.statement))

    def verifies_with(self, key: Ed25519PublicKey) -> bool:
        try:
            key.verify(base64.b64decode(self.signature, validate=True), self.message)
        except (InvalidSignature, binascii.Error, ValueError):
            return False
        return True

    def as_dict(self) -> dict[str, Any]:
        return {"statement": dict(self.statement), "signature": self.signature,
                "key_fingerprint": self.key_fingerprint}


def sign_decision(statement: Mapping[str, Any], key: Ed25519PrivateKey) -> SignedDecision:
    message = canonical_json(dict(statement))
    return SignedDecision(dict(statement), base64.b64encode(key.sign(message)).decode("ascii"),
                          fingerprint(key.public_key()))


def mismatched_fields(statement: Mapping[str, Any], expected: Mapping[str, Any]) -> list[str]:
    """The fields of ``statement`` that differ from ``expected`` (or are missing/extra)."""
    names = sorted((set(statement) | set(expected)) - {"signed_at"})
    return [n for n in names if statement.get(n) != expected.get(n)] + (
        [] if isinstance(statement.get("signed_at"), str) else ["signed_at"])


def ladder_keys(ladder: Mapping[str, Any], actor: str,
                stage: str | None) -> dict[str, Ed25519PublicKey]:
    """fingerprint → key of ``actor`` in the stored ladder: the key listed for them in
    ``stage``, or (``stage`` None: a delegate) in any stage. Unreadable keys are skipped: the
    ladder was validated when the request was made."""
    found: dict[str, Ed25519PublicKey] = {}
    for spec in ladder.get("stages", []):
        if stage is not None and spec.get("name") != stage:
            continue
        text = (spec.get("keys") or {}).get(actor)
        if not isinstance(text, str):
            continue
        try:
            key = load_public_key(text)
        except ConfigError:
            continue
        found[fingerprint(key)] = key
    return found
