"""The bundle attestation: an in-toto Statement v1 in a DSSE envelope, signed with the ledger key.

``attestation.intoto.json`` (beside ``manifest.json``) is what a third party checks with standard
tools (``securesystemslib``, ``in-toto``, ``cosign verify-blob-attestation``...): its subjects are
every other file of the bundle with its SHA-256, ``manifest.json`` and ``manifest.sig`` included,
and its predicate (``PREDICATE_TYPE``, documented in docs/evidence.md) says what the bundle is.

DSSE is small enough to write here (no library covers it at runtime): the signature is Ed25519
over PAE(payloadType, payload) = ``"DSSEv1" SP len(type) SP type SP len(payload) SP payload``.
The tests check this PAE byte for byte against securesystemslib's and verify our envelopes with it.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from governance_pipeline.governance.exports.bundle_format import (
    ATTESTATION_FILE as ATTESTATION_FILE,  # re-exported: the envelope's file name
)
from governance_pipeline.governance.exports.bundle_format import json_bytes
from governance_pipeline.landscape.keys import PublicKey, Signer

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://governance-pipeline.dev/bundle/v1"


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 Pre-Authentication Encoding: what the signature covers."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


def statement(subjects: Mapping[str, str], predicate: Mapping[str, Any]) -> dict[str, Any]:
    """The in-toto Statement over ``subjects`` (file name → sha256 hex), sorted by name."""
    return {"_type": STATEMENT_TYPE,
            "subject": [{"name": name, "digest": {"sha256": digest}}
                        for name, digest in sorted(subjects.items())],
            "predicateType": PREDICATE_TYPE, "predicate": dict(predicate)}


def envelope_bytes(doc: Mapping[str, Any], signer: Signer) -> bytes:
    """The DSSE envelope (JSON) of ``doc`` signed by ``signer``; ``keyid`` is the ledger key id."""
    payload = json_bytes(doc)
    signature = bytes.fromhex(signer.sign(pae(PAYLOAD_TYPE, payload)))
    return json_bytes({"payloadType": PAYLOAD_TYPE, "payload": _b64(payload),
                       "signatures": [{"keyid": signer.key_id, "sig": _b64(signature)}]})


@dataclass(frozen=True)
class OpenedAttestation:
    """What an envelope says, and every reason not to believe it (empty: signed by ``key``)."""

    statement: dict[str, Any] | None
    problems: list[str]

    @property
    def subjects(self) -> dict[str, str]:
        """name → sha256 of a well-formed statement's subjects ({} otherwise)."""
        if self.statement is None:
            return {}
        return {s["name"]: s["digest"]["sha256"] for s in self.statement["subject"]}


def open_envelope(data: bytes, key: PublicKey) -> OpenedAttestation:
    """Parse and check an envelope: its payloadType, a signature by ``key`` over the PAE, and a
    payload that is an in-toto Statement v1 of our predicate type with sha256 subjects."""
    try:
        env = json.loads(data)
        payload_type = env["payloadType"]
        payload = base64.b64decode(env["payload"], validate=True)
        signatures = list(env["signatures"])
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError,
            binascii.Error) as exc:
        return OpenedAttestation(None, [f"not a DSSE envelope: {exc!r}"])
    problems: list[str] = []
    if payload_type != PAYLOAD_TYPE:
        problems.append(f"wrong payloadType {payload_type!r}: expected {PAYLOAD_TYPE!r}")
    message = pae(str(payload_type), payload)
    if not any(_signed_by(s, key, message) for s in signatures):
        problems.append(f"no signature by key {key.key_id} verifies over the envelope's PAE")
    doc, why = _statement_of(payload)
    if why:
        problems.append(why)
    return OpenedAttestation(doc, problems)


def _signed_by(sig: Any, key: PublicKey, message: bytes) -> bool:
    if not isinstance(sig, dict) or sig.get("keyid") != key.key_id:
        return False
    try:
        raw = base64.b64decode(str(sig.get("sig", "")), validate=True)
    except binascii.Error:
        return False
    return key.verify(raw.hex(), message)


def _statement_of(payload: bytes) -> tuple[dict[str, Any] | None, str]:
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"the payload is not JSON: {exc}"
    if not isinstance(doc, dict) or doc.get("_type") != STATEMENT_TYPE:
        return None, f"the payload is not an in-toto Statement v1 ({STATEMENT_TYPE})"
    if doc.get("predicateType") != PREDICATE_TYPE:
        return None, f"predicateType {doc.get('predicateType')!r} is not {PREDICATE_TYPE}"
    subjects = doc.get("subject")
    ok = isinstance(subjects, list) and all(
        isinstance(s, dict) and isinstance(s.get("name"), str)
        and isinstance(s.get("digest"), dict) and isinstance(s["digest"].get("sha256"), str)
        for s in subjects)
    if not ok:
        return None, "the statement's subjects are not a list of {name, digest: {sha256}}"
    names = [s["name"] for s in subjects]
    if len(set(names)) != len(names):
        return None, "the statement names a subject twice"
    return doc, ""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
