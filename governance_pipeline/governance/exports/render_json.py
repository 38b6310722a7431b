"""A bundle as canonical JSON (RFC 8785): the same bundle always gives the same bytes, and the
SHA-256 of these bytes is the bundle digest shown on the PDF's cover."""

from __future__ import annotations

from governance_pipeline.contracts.hashing import canonical_json, sha256_hex
from governance_pipeline.governance.exports.models import Bundle


def render_json(bundle: Bundle) -> bytes:
    return canonical_json(bundle.model_dump(mode="json"))


def bundle_digest(bundle: Bundle) -> str:
    """SHA-256 (hex) of ``render_json(bundle)``."""
    return sha256_hex(render_json(bundle))
