"""``VERIFY.md``: how a third party checks a bundle offline, with standard tools or our command.

The text depends only on what the bundle states about itself (kind, subject, key id, dates), so
the same bundle always gets the same bytes. The Python snippet is run by the tests against good
and tampered bundles: what the page tells an auditor to do is known to work.
"""

from __future__ import annotations

from governance_pipeline.governance.exports.bundle_format import (
    ATTESTATION_FILE,
    MANIFEST_FILE,
    PROOFS_FILE,
    PUBLIC_KEY_FILE,
    SIGNATURE_FILE,
)

#: The standalone check of VERIFY.md (needs only Python 3 and the ``cryptography`` package).
SNIPPET = f'''\
import hashlib, json, pathlib, sys
from cryptography.hazmat.primitives.serialization import (
    Encoding, PublicFormat, load_pem_public_key)

bundle = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".")
manifest_bytes = (bundle / "{MANIFEST_FILE}").read_bytes()
signature = bytes.fromhex((bundle / "{SIGNATURE_FILE}").read_text().strip())
key = load_pem_public_key((bundle / "{PUBLIC_KEY_FILE}").read_bytes())
key.verify(signature, manifest_bytes)  # raises InvalidSignature if the manifest was changed
manifest = json.loads(manifest_bytes)
raw_key = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
assert hashlib.sha256(raw_key).hexdigest()[:16] == manifest["key_id"], "key_id mismatch"
listed = set(manifest["files"]) | {{"{MANIFEST_FILE}", "{SIGNATURE_FILE}", "{ATTESTATION_FILE}"}}
present = {{p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if not p.is_dir()}}
assert present == listed, f"missing {{listed - present}}, unexpected {{present - listed}}"
for name, want in sorted(manifest["files"].items()):
    data = (bundle / name).read_bytes()
    assert hashlib.sha256(data).hexdigest() == want["sha256"], f"{{name}}: digest differs"
    assert len(data) == want["size"], f"{{name}}: size differs"
print("bundle OK: manifest signed by key", manifest["key_id"])
'''


def render_verify_md(*, kind: str, subject: str, key_id: str, created_at: str,
                     export_id: str) -> bytes:
    lines = [
        f"# Verifying this {kind} bundle offline",
        "",
        (f"Subject `{subject}`, export `{export_id}`, created {created_at}, signed with Ed25519 "
         f"key `{key_id}`."),
        "",
        ("Every file of this directory except `manifest.json` and `manifest.sig` is listed in "
         "`manifest.json` with its SHA-256 and size. `manifest.sig` is the hex-encoded Ed25519 "
         "signature over the exact bytes of `manifest.json`, made with the key in "
         f"`{PUBLIC_KEY_FILE}`; `key_id` is the first 16 hex digits of the SHA-256 of that key's "
         "32 raw bytes. The bundle is intact when the signature verifies, every listed file has "
         "its digest and size, and no file is missing or added."),
        "",
        ("**Trust the key, not the bundle.** Anyone can re-sign an edited bundle with a key of "
         "their own. Compare `key_id` (or the whole PEM) with the public key the producing "
         "organisation published (`governance-pipeline keys public`), and pass that key to the "
         "check below."),
        "",
        "## 1. With `governance-pipeline` (no database needed)",
        "",
        "```sh",
        "governance-pipeline verify-bundle . --trusted-key PUBLISHED_KEY.pem",
        "```",
        "",
        ("Exit 0: intact. Exit 5: every problem is listed with the file and what is wrong. It "
         "also checks the inclusion proofs (section 3)."),
        "",
        "## 2. With standard tools",
        "",
        "File digests (from this directory; `jq` and `sha256sum`):",
        "",
        "```sh",
        ("jq -r '.files | to_entries[] | \"\\(.value.sha256)  \\(.key)\"' manifest.json "
         "| sha256sum -c -"),
        "```",
        "",
        "Signature with OpenSSL 3 (writes the raw signature outside the bundle):",
        "",
        "```sh",
        "xxd -r -p manifest.sig > /tmp/manifest.sig.bin",
        ("openssl pkeyutl -verify -pubin -inkey public_key.pem -rawin -in manifest.json "
         "-sigfile /tmp/manifest.sig.bin"),
        "```",
        "",
        ("Everything at once with Python 3 and the `cryptography` package "
         "(`python3 check.py BUNDLE_DIR`):"),
        "",
        "```python",
        SNIPPET.rstrip("\n"),
        "```",
        "",
        "## 3. Inclusion proofs",
        "",
        (f"`{PROOFS_FILE}` holds one proof per sampled audit record. `manifest.json` names the "
         "ledger checkpoint the bundle was built from: for each scope (a run id, or `global`) "
         "the signed seal of the head of its hash chain. A proof shows its record was committed "
         "under that seal:"),
        "",
        ("1. `record.values` (the ledgered columns, in `record.columns` order) hash to "
         "`record.record_hash`: SHA-256 of the compact JSON array `[table, value, ...]`."),
        ("2. `entry.manifest` hashes to `entry.records_digest` (SHA-256 of its base64-decoded "
         "bytes when `entry.manifest_format` is 2, of its UTF-8 text when it is 1), and its last "
         "item for the record's table and key holds `record.record_hash`. Format 2 is binary "
         "(big-endian): magic `GPM\\x02`, a u16 section count, per section a u8 name length, "
         "the table name and a u32 record count, then a u32 length and that many bytes of zlib "
         "over the JSON array of every record key, then 32 raw SHA-256 bytes per record, in "
         "item order. Format 1 is a JSON list of `[table, key, hash]`."),
        ("3. Each entry of `[entry, *chain]` hashes to its `entry_hash`: SHA-256 of the RFC 8785 "
         "JSON of `{v: 1, scope, seq, prev_hash, records_digest, record_count, created_at}`; each "
         "links to the one before (`prev_hash`, consecutive `seq`)."),
        ("4. The last `entry_hash` is the seal's `head_hash`, the seal equals the checkpoint's "
         "seal for the scope, and the seal's signature verifies over the RFC 8785 JSON of "
         "`{v: 1, scope, seq, head_hash, key_id, sealed_at}`."),
        "",
        "`governance-pipeline verify-bundle` performs these steps.",
        "",
        "### The same proofs in standard formats",
        "",
        ("`proofs/<n>.tlog-proof` is proof n as a c2sp.org/tlog-proof@v1 file: its checkpoint "
         "(c2sp.org/tlog-checkpoint, signed note) is `checkpoints/<scope>.checkpoint`, its "
         "signature verifies with the vkey in `trust/log.vkey`, and its inclusion proof is "
         "RFC 6962's for leaf `index` = entry `seq` - 1. The `extra` line (RFC 8785 JSON) holds "
         "the record, the entry's manifest and header: steps 1-3 above lead from the record to "
         "`entry_hash`, and the leaf hash is SHA-256(0x00 || the 32 bytes of `entry_hash`). "
         "Any C2SP/RFC 6962 implementation checks the rest (docs/evidence.md, tlog-proof files)."),
        "",
        "## 4. The in-toto attestation",
        "",
        (f"`{ATTESTATION_FILE}` is a DSSE envelope (payloadType `application/vnd.in-toto+json`) "
         "holding an in-toto Statement v1 whose subjects are every other file of this directory "
         "with its SHA-256 (`manifest.json` and `manifest.sig` included) and whose predicate "
         "(`https://governance-pipeline.dev/bundle/v1`) repeats the manifest's facts. Its "
         f"signature is Ed25519 over the DSSE PAE, by the key in `{PUBLIC_KEY_FILE}` (`keyid` "
         "is the `key_id` above): any DSSE/in-toto verifier checks it, e.g. securesystemslib's "
         "`dsse.Envelope.verify` with an `SSlibKey` of type `ed25519` (docs/evidence.md)."),
        "",
    ]
    return "\n".join(lines).encode("utf-8")
