"""The export guard: the one gate every export surface passes right before it writes.

A surface (``governance-pipeline export ...``, a Dagster asset, any later one) is declared with
``@export_surface("name")`` and calls ``guard_export`` immediately before its bundle writer. The
guard re-checks the approval ladder of the export (tenant, kind and subject) by consuming its
token, and issues the ``ExportClearance`` every bundle writer requires; a blocked attempt is
recorded (``exports`` row with status blocked and its reason, ``export.blocked`` event) and
raises ``BlockedError`` (exit 4). ``record_export_written`` records the written bundle.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from governance_pipeline.contracts.clock import Clock
from governance_pipeline.contracts.enums import ExportKind, ExportStatus
from governance_pipeline.contracts.errors import BlockedError, ConfigError
from governance_pipeline.contracts.hashing import stable_hash
from governance_pipeline.contracts.ids import new_id
from governance_pipeline.contracts.records import ExportRecord
from governance_pipeline.governance.exports.clearance import ExportClearance
from governance_pipeline.landscape.recorder import Recorder
from governance_pipeline.landscape.schema import GLOBAL_SCOPE
from governance_pipeline.landscape.store import Landscape

from governance_pipeline.governance.operator_log import (
    OperatorAction,
    OperatorActionScope,
    OperatorSurface,
    operator_action,
)
from governance_pipeline.governance.approvals import emit
from governance_pipeline.governance.approvals.codes import EXPORT_APPROVAL_REQUIRED, TokenRefused
from governance_pipeline.governance.approvals.service import ApprovalService

EXPORT_GUARD_SOURCE = "export_guard"
_SURFACE_MAX = 32  # exports.surface column width


@dataclass(frozen=True, slots=True)
class ExportSurface:
    name: str
    module: str
    qualname: str


#: Every declared export surface, by name (filled as surface modules are imported).
EXPORT_SURFACES: dict[str, ExportSurface] = {}

F = TypeVar("F", bound=Callable[..., Any])


def export_surface(name: str) -> Callable[[F], F]:
    """Declare a function as an export surface: it must call ``guard_export`` before writing
    (``test_export_guard`` checks every declared surface and every bundle-writer call site)."""
    if not name or len(name) > _SURFACE_MAX:
        raise ValueError(f"export surface name must be 1-{_SURFACE_MAX} characters: {name!r}")

    def mark(fn: F) -> F:
        known = EXPORT_SURFACES.get(name)
        here = ExportSurface(name, fn.__module__, fn.__qualname__)
        if known is not None and known != here:
            raise ValueError(f"export surface {name!r} declared twice ({known.qualname}, "
                             f"{here.qualname})")
        EXPORT_SURFACES[name] = here
        fn.__export_surface__ = name  # type: ignore[attr-defined]
        return fn
    return mark


def export_subject_hash(kind: ExportKind | str, subject: str, tenant_id: str) -> str:
    """What an export approval is bound to: its kind, subject and tenant."""
    return "sha256:" + stable_hash({"kind": ExportKind(kind).value, "subject": subject,
                                    "tenant_id": tenant_id})


def export_action(landscape: Landscape, kind: ExportKind | str, subject: str, *,
                  requested_by: str, surface: str) -> Any:
    """The operator-log scope of one export attempt (``with export_action(...) as act``): pass
    ``act`` to ``guard_export`` and ``write_export`` so a block and the written bundle are
    logged in their own transactions; any other refusal is logged when the block raises."""
    return operator_action(
        landscape, action=OperatorAction.EXPORT, actor=requested_by,
        subject=f"{ExportKind(kind).value} {subject}",
        surface=OperatorSurface.DAGSTER if surface.startswith("dagster:") else OperatorSurface.CLI
        if surface.startswith("cli:") else None,
        inputs={"kind": ExportKind(kind).value, "subject": subject, "export_surface": surface})


def guard_export(landscape: Landscape, *, kind: ExportKind, subject: str, tenant_id: str,
                 surface: str, requested_by: str, approval_token: str | None,
                 clock: Clock | None = None,
                 operator: OperatorActionScope | None = None) -> ExportClearance:
    """Re-check the export's ladder and consume its token; the clearance lets one bundle be
    written. Blocked → recorded (with ``operator``'s refused entry), then ``BlockedError``
    (exit 4)."""
    if not surface or len(surface) > _SURFACE_MAX:
        raise ConfigError(f"export surface name must be 1-{_SURFACE_MAX} characters: {surface!r}")
    if clock is not None and clock is not landscape.clock:
        landscape = dataclasses.replace(landscape, clock=clock)
    kind = ExportKind(kind)
    subject_hash = export_subject_hash(kind, subject, tenant_id)
    export_id = new_id("exp_")
    if operator is not None:
        operator.inputs.update(export_id=export_id, subject_hash=subject_hash,
                               tenant_id=tenant_id)
    if not approval_token:
        blocked = BlockedError(
            f"{kind.value} export of {subject} (tenant {tenant_id}) needs an approved export "
            f"ladder: run `governance-pipeline approvals request --export {kind.value} "
            f"--subject {subject} --tenant {tenant_id}`", code=EXPORT_APPROVAL_REQUIRED,
            details={"export_id": export_id, "subject_hash": subject_hash,
                     "reason": "approval_required"})
        _record_blocked(landscape, export_id, kind, subject, subject_hash, tenant_id, surface,
                        requested_by, "approval_required", None, operator, blocked)
        raise blocked
    try:
        approval = ApprovalService(landscape).consume(
            approval_token, tenant_id=tenant_id, subject_hash=subject_hash,
            actor=requested_by, consumed_for=export_id)
    except TokenRefused as exc:
        exc.message = f"{exc.message}; the {kind.value} export of {subject} was not written"
        exc.details = {**exc.details, "export_id": export_id, "subject_hash": subject_hash}
        _record_blocked(landscape, export_id, kind, subject, subject_hash, tenant_id, surface,
                        requested_by, exc.reason.value, exc.approval_id, operator, exc)
        raise
    if operator is not None:
        operator.inputs["approval_id"] = approval.approval_id
    return ExportClearance(export_id=export_id, kind=kind, subject=subject,
                           subject_hash=subject_hash, tenant_id=tenant_id,
                           approval_id=approval.approval_id, surface=surface,
                           issued_at=approval.consumed_at or Recorder(landscape).now())


def _record_blocked(landscape: Landscape, export_id: str, kind: ExportKind, subject: str,
                    subject_hash: str, tenant_id: str, surface: str, requested_by: str,
                    reason: str, approval_id: str | None,
                    operator: OperatorActionScope | None, refusal: BlockedError) -> None:
    with Recorder(landscape).unit(GLOBAL_SCOPE) as uow:
        if operator is not None:
            operator.inputs["approval_id"] = approval_id
            operator.refusal_in(uow, refusal)
        uow.add(ExportRecord(
            export_id=export_id, tenant_id=tenant_id, kind=kind, subject=subject,
            subject_hash=subject_hash, surface=surface, status=ExportStatus.BLOCKED,
            approval_id=approval_id, bundle_digest=None, path=None, requested_by=requested_by,
            reason=reason, created_at=uow.now))
        uow.add(emit.event(emit.EXPORT_BLOCKED, {
            "export_id": export_id, "kind": kind.value, "subject": subject,
            "subject_hash": subject_hash, "tenant_id": tenant_id, "surface": surface,
            "requested_by": requested_by, "reason": reason, "approval_id": approval_id,
        }, now=uow.now, tenant_id=tenant_id, source=EXPORT_GUARD_SOURCE))


def record_export_written(landscape: Landscape, clearance: ExportClearance, *, path: str,
                          bundle_digest: str, requested_by: str | None = None,
                          operator: OperatorActionScope | None = None) -> ExportRecord:
    """Record the bundle a clearance let through (``exports`` row + ``export.written``, and
    ``operator``'s entry in the operator log)."""
    digest = bundle_digest.removeprefix("sha256:")
    with Recorder(landscape).unit(GLOBAL_SCOPE) as uow:
        if operator is not None:
            operator.inputs.update(export_id=clearance.export_id, bundle_digest=digest,
                                   approval_id=clearance.approval_id)
            operator.record_in(uow)
        record = ExportRecord(
            export_id=clearance.export_id, tenant_id=clearance.tenant_id, kind=clearance.kind,
            subject=clearance.subject, subject_hash=clearance.subject_hash,
            surface=clearance.surface, status=ExportStatus.WRITTEN,
            approval_id=clearance.approval_id, bundle_digest=digest, path=path,
            requested_by=requested_by or _consumer(landscape, clearance), reason=None,
            created_at=uow.now)
        uow.add(record)
        uow.add(emit.event(emit.EXPORT_WRITTEN, {
            "export_id": clearance.export_id, "kind": clearance.kind.value,
            "subject": clearance.subject, "subject_hash": clearance.subject_hash,
            "tenant_id": clearance.tenant_id, "surface": clearance.surface,
            "approval_id": clearance.approval_id, "bundle_digest": digest, "path": path,
        }, now=uow.now, tenant_id=clearance.tenant_id, source=EXPORT_GUARD_SOURCE))
    return record


def _consumer(landscape: Landscape, clearance: ExportClearance) -> str:
    """Who passed the guard: the actor that consumed the clearance's approval."""
    approval = ApprovalService(landscape).get(clearance.approval_id).approval
    return approval.consumed_by or approval.requested_by
