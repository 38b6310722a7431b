"""The audit record of which code a node ran (table ``code_identities``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from governance_pipeline.contracts.record_base import AuditRecord, _require

#: The fields an identity is compared (and hashed) on; module_path and the times are not.
IDENTITY_FIELDS = ("node_id", "plugin_name", "plugin_version", "distribution", "plugin_class",
                   "function_name", "source_sha256", "function_distribution", "function_version")


@dataclass(frozen=True, slots=True)
class CodeIdentityRecord(AuditRecord):
    TABLE: ClassVar[str] = "code_identities"
    run_id: str
    node_id: str
    position: int
    plugin_name: str
    plugin_version: str | None
    distribution: str | None
    plugin_class: str
    function_name: str | None
    module_path: str | None
    source_sha256: str | None
    function_distribution: str | None
    function_version: str | None
    identity_hash: str
    recorded_at: str

    def __post_init__(self) -> None:
        _require((self.function_name is None) == (self.source_sha256 is None)
                 == (self.module_path is None), "CodeIdentityRecord",
                 "a user function needs its source sha256 and module path, and only it has them")
        _require((self.function_distribution is None) == (self.function_version is None),
                 "CodeIdentityRecord", "a function distribution needs its version")
        _require((self.distribution is None) == (self.plugin_version is None),
                 "CodeIdentityRecord", "a plugin distribution needs its version")

    def identity(self) -> dict[str, Any]:
        """The compared fields, as hashed into ``identity_hash``."""
        return {name: getattr(self, name) for name in IDENTITY_FIELDS}
