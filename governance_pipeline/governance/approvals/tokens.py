"""Approval tokens: random, shown once, stored only as their SHA-256.

The raw token never reaches the database or a log; whoever holds it may consume the approval it
belongs to once, for the tenant and subject it is bound to. The prefix makes a leaked token easy
to recognise (secret scanners, log filters).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

TOKEN_PREFIX = "gpa_"
_TOKEN_BYTES = 32  # 256 bits of entropy


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(_TOKEN_BYTES)


def hash_token(token: str) -> str:
    """The stored form (64 hex digits). Unsalted on purpose: the token itself has 256 random
    bits, and the hash must be a deterministic lookup key (``approvals.token_hash`` is unique)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_matches(token: str, stored_hash: str) -> bool:
    """Constant-time comparison of a presented token with a stored hash."""
    return hmac.compare_digest(hash_token(token).encode(), stored_hash.encode())


def looks_like_token(token: str) -> bool:
    return token.startswith(TOKEN_PREFIX) and len(token) > len(TOKEN_PREFIX) + 16
