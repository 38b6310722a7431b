"""The ``extra`` of a bundle's tlog-proof files: what recomputes the proven leaf from the record.

A ``proofs/<n>.tlog-proof`` file (c2sp.org/tlog-proof@v1) proves that one ledger entry is leaf
``index`` of its scope's RFC 6962 tree under a signed checkpoint. Its ``extra`` line carries, as
RFC 8785 canonical JSON, what leads from the sampled record to that entry (docs/evidence.md,
"tlog-proof files"):

```
{"entry": {"created_at", "entry_hash", "prev_hash", "record_count", "records_digest", "seq"},
 "format": "governance-pipeline/tlog-proof-extra@v1",
 "manifest": "<the entry's manifest: base64 of its binary form, or a format-1 JSON text>",
 "manifest_format": 2,  (absent for a format-1 manifest)
 "record": {"columns": [...], "key": "...", "table": "...", "values": [...]},
 "scope": "<run id or global>"}
```

The chain from record to leaf: SHA-256 of the compact JSON ``[table, *values]`` is the record
hash; the manifest's last item for the record's ``(table, key)`` holds it
(``ledger.read_portable``; the format is in docs/landscape.md, "The manifest"); SHA-256 of the
manifest's bytes (base64-decoded, or the UTF-8 of a format-1 text) is ``records_digest``; the
entry header hashes to ``entry_hash``; the leaf hash is SHA-256(0x00 || the 32 bytes of
``entry_hash``) (``checkpoints.entry_leaf``); ``index`` is ``seq - 1``.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from pydantic import ValidationError

from governance_pipeline.contracts.hashing import canonical_json
from governance_pipeline.governance.exports.proofs import EntryHeader, RecordFields, StrictModel
from governance_pipeline.landscape import ledger, tlog_view
from governance_pipeline.landscape.schema import GLOBAL_SCOPE, LEDGERED

EXTRA_FORMAT = "governance-pipeline/tlog-proof-extra@v1"


# The record and entry header exactly as the JSON proofs carry them (one definition of each).
ExtraRecord = RecordFields
ExtraEntry = EntryHeader


class Extra(StrictModel):
    format: str
    scope: str
    record: ExtraRecord
    manifest: str
    manifest_format: int = 1  # ledger.portable_manifest: 1 JSON text, 2 base64 of the binary
    entry: ExtraEntry


def extra_of(proof: dict[str, Any]) -> bytes:
    """The extra bytes for one JSON inclusion proof (``proofs.inclusion_proofs``' form)."""
    record, entry = proof["record"], proof["entry"]
    return canonical_json({
        "format": EXTRA_FORMAT, "scope": proof["scope"],
        "record": {k: record[k] for k in ("table", "key", "columns", "values")},
        "manifest": entry["manifest"],
        **({"manifest_format": entry["manifest_format"]}
           if entry.get("manifest_format", 1) != 1 else {}),
        "entry": {k: entry[k] for k in tlog_view.HEADER_COLUMNS},
    })


def parse_extra(data: bytes | None) -> tuple[Extra | None, str]:
    """(the extra, '') or (None, why it is not one)."""
    if data is None:
        return None, "the proof has no extra line"
    try:
        doc = Extra.model_validate(orjson.loads(data))
    except orjson.JSONDecodeError as exc:
        return None, f"extra is not JSON: {exc}"
    except ValidationError as exc:
        err = exc.errors()[0]
        return None, f"extra malformed: {'.'.join(map(str, err['loc'])) or 'extra'}: {err['msg']}"
    if doc.format != EXTRA_FORMAT:
        return None, f"extra format {doc.format!r} is not {EXTRA_FORMAT}"
    return doc, ""


def leaf_from_extra(extra: Extra) -> tuple[bytes | None, list[str]]:
    """The leaf hash the extra leads to from its record, and every step that fails."""
    problems: list[str] = []
    r, e = extra.record, extra.entry
    spec = LEDGERED.get(r.table)
    if spec is None:
        return None, [f"record table {r.table} is not a ledgered table"]
    if tuple(r.columns) != spec.hashed_columns or len(r.values) != len(r.columns):
        return None, [f"record columns do not match the ledgered columns of {r.table}"]
    row = dict(zip(r.columns, r.values, strict=True))
    try:
        key = ledger.record_key(spec, row)
        record_hash = hashlib.sha256(orjson.dumps([r.table, *r.values])).hexdigest()
    except (TypeError, orjson.JSONEncodeError) as exc:
        return None, [f"record content cannot be hashed: {exc}"]
    if key != r.key:
        problems.append(f"record key {r.key} does not match its key columns ({key})")
    owner = row[spec.scope_column] if spec.scope_column else GLOBAL_SCOPE
    if owner != extra.scope:
        problems.append(f"record belongs to scope {owner}, the extra names {extra.scope}")
    try:
        items, digest = ledger.read_portable(extra.manifest_format, extra.manifest)
    except ledger.ManifestError as exc:
        problems.append(f"manifest of entry seq {e.seq} unreadable: {exc}")
        items, digest = [], None
    if digest is not None and digest != e.records_digest:
        problems.append(f"manifest does not hash to the records_digest of entry seq {e.seq}")
    if len(items) != e.record_count:
        problems.append(f"manifest does not list record_count ({e.record_count}) items")
    latest = None
    for item in items:
        if isinstance(item, tuple) and item[:2] == (r.table, r.key):
            latest = item
    if latest is None:
        problems.append(f"entry seq {e.seq} does not commit {r.table} {r.key}")
    elif len(latest) != 3 or latest[2] != record_hash:
        problems.append(f"entry seq {e.seq} commits another version of {r.table} {r.key} than "
                        "the record in the extra")
    recomputed = ledger.entry_hash(scope=extra.scope, seq=e.seq, prev_hash=e.prev_hash,
                                   records_digest=e.records_digest, record_count=e.record_count,
                                   created_at=e.created_at)
    if recomputed != e.entry_hash:
        problems.append(f"entry seq {e.seq} altered: its header does not hash to its entry_hash")
    try:
        return tlog_view.entry_leaf_hash(e.model_dump()), problems
    except ValueError as exc:
        return None, [*problems, f"entry seq {e.seq}: {exc}"]
