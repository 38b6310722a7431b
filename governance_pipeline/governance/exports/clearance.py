"""The capability an export needs: only the export guard issues it, after re-checking approvals.

Bundle writers take an ``ExportClearance`` argument, so no surface (CLI, Dagster asset, any later
one) can write a bundle without passing the guard first.
"""

from __future__ import annotations

from dataclasses import dataclass

from governance_pipeline.contracts.enums import ExportKind


@dataclass(frozen=True, slots=True)
class ExportClearance:
    export_id: str
    kind: ExportKind
    subject: str          # run id, period (YYYY-MM) or incident id
    subject_hash: str     # what the approval is bound to
    tenant_id: str
    approval_id: str
    surface: str          # e.g. "cli", "dagster"
    issued_at: str
