"""Reading a run's code manifest (``code_identities``), with Tier-1 validation."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from governance_pipeline.contracts.code_records import CodeIdentityRecord
from governance_pipeline.contracts.hashing import stable_hash
from governance_pipeline.landscape.reader import Reader, as_reader

if TYPE_CHECKING:
    from sqlalchemy import Connection

CODE_IDENTITIES = ("SELECT * FROM code_identities WHERE run_id = :run_id "
                   "ORDER BY position, node_id")


def stored_identities(conn: Connection | Reader, run_id: str) -> list[CodeIdentityRecord]:
    return [CodeIdentityRecord.from_row(r)
            for r in as_reader(conn).rows(CODE_IDENTITIES, {"run_id": run_id})]


def manifest_hash(records: list[CodeIdentityRecord]) -> str:
    """SHA-256 of the canonical JSON of every node's compared identity, in step order."""
    return stable_hash([r.identity() for r in sorted(records, key=lambda r: r.position)])


def identity_view(r: CodeIdentityRecord) -> dict[str, Any]:
    return {"node_id": r.node_id, "step": r.position, "plugin": r.plugin_name,
            "plugin_version": r.plugin_version, "distribution": r.distribution,
            "plugin_class": r.plugin_class, "function": r.function_name,
            "module_path": r.module_path, "source_sha256": r.source_sha256,
            "function_distribution": r.function_distribution,
            "function_version": r.function_version, "identity_hash": r.identity_hash}


def identity_line(r: CodeIdentityRecord) -> str:
    """One line of text: plugin, its distribution, and the user function if there is one."""
    dist = f"{r.distribution} {r.plugin_version}" if r.distribution else "no distribution"
    line = f"[{r.position}] {r.node_id}: {r.plugin_name} ({dist})"
    if r.function_name:
        fdist = (f"{r.function_distribution} {r.function_version}" if r.function_distribution
                 else "no distribution")
        line += f" · {r.function_name} in {r.module_path} sha256 {r.source_sha256} ({fdist})"
    return line
