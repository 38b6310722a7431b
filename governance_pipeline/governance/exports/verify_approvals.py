"""Offline check of the signed approval decisions a bundle's JSON carries.

Each approval in ``bundle.json`` carries the ladder it was requested under, verbatim, with the
approvers' public keys. Under ``signatures: required`` every decision must have a signature by
a key that copy lists for the actor (in the decision's stage, or anywhere for a delegate), over
a statement naming exactly that approval, round, stage, decision, subject and actor. A bundle
cannot claim ``unsigned`` for a ladder stored as signed. Only the bundle is read.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from cryptography.exceptions import InvalidSignature

from governance_pipeline.governance.approvals.decision_keys import (
    decision_statement,
    ladder_keys,
    mismatched_fields,
)

Problem = tuple[str, str]  # (item, message)


def approval_problems(doc: Any) -> list[Problem]:
    """Every problem of the approvals in a bundle document (``[]`` for one without approvals)."""
    approvals = doc.get("approvals") if isinstance(doc, dict) else None
    if not isinstance(approvals, list):
        return []
    problems: list[Problem] = []
    for a in approvals:
        problems += _approval(a) if isinstance(a, dict) else [("approvals", "not an object")]
    return problems


def _approval(a: dict[str, Any]) -> list[Problem]:
    aid = str(a.get("approval_id"))
    try:
        ladder = json.loads(a.get("ladder_json") or "{}")
    except json.JSONDecodeError:
        return [(aid, "ladder_json is not JSON")]
    if not isinstance(ladder, dict):
        ladder = {}
    mode = ladder.get("signatures") or "unsigned"
    if a.get("signatures", "unsigned") != mode:
        return [(aid, f"the bundle says signatures {a.get('signatures')!r}, its stored ladder "
                      f"says {mode!r}")]
    problems = []
    for d in a.get("decisions") or []:
        item = f"{aid} {d.get('stage_name')} {d.get('actor')} round {d.get('round')}"
        why = _decision(a, ladder, mode, d)
        if why:
            problems.append((item, why))
    return problems


def _decision(a: dict[str, Any], ladder: dict[str, Any], mode: str,
              d: dict[str, Any]) -> str | None:
    sig = d.get("signature")
    if sig is None:
        return "unsigned decision under a signed ladder" if mode == "required" else None
    try:
        raw = sig["statement_json"].encode("utf-8")
        statement = json.loads(raw)
        signature = base64.b64decode(sig["signature"], validate=True)
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError, binascii.Error):
        return "the signature record is malformed"
    expected = decision_statement(
        approval_id=str(a.get("approval_id")), round=d.get("round"), stage=d.get("stage_name"),
        decision=d.get("decision"), subject_hash=str(a.get("subject_hash")),
        actor=d.get("actor"), role=d.get("role"), signed_at=str(statement.get("signed_at")))
    wrong = mismatched_fields(statement, expected) if isinstance(statement, dict) else ["all"]
    if wrong:
        return f"the signed statement is for another decision ({', '.join(wrong)} differ)"
    delegated = d.get("delegated_from") is not None
    keys = ladder_keys(ladder, str(d.get("actor")), None if delegated else d.get("stage_name"))
    key = keys.get(str(sig.get("key_fingerprint")))
    if key is None:
        return f"signed by key {sig.get('key_fingerprint')}, which the ladder does not list"
    try:
        key.verify(signature, raw)
    except InvalidSignature:
        return "the decision's signature does not verify with the listed key"
    return None
