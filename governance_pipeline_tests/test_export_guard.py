"""The export guard on both backends (blocked, allowed, recorded), and the enumeration of export
surfaces: every declared surface calls the guard, every bundle writer is reached only from a
surface, and only the guard issues clearances."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest
from sqlalchemy import select

import governance_pipeline
from governance_pipeline.contracts.enums import ApprovalStatus, Decision, ExportKind, ExportStatus
from governance_pipeline.contracts.errors import BlockedError
from governance_pipeline.contracts.records import ExportRecord
from governance_pipeline.governance.approvals import ApprovalService, InvalidReason, TokenRefused
from governance_pipeline.governance.approvals.codes import EXPORT_APPROVAL_REQUIRED
from governance_pipeline.governance.approvals.export_guard import (
    EXPORT_SURFACES,
    export_subject_hash,
    export_surface,
    guard_export,
    record_export_written,
)
from governance_pipeline.landscape.schema import exports
from governance_pipeline.landscape.store import Landscape
from governance_pipeline.landscape.verify import verify

from governance_pipeline_tests.approval_fixtures import REQUESTER, TENANT, catalog, events_of

PACKAGE = Path(governance_pipeline.__file__).resolve().parent
GUARD_MODULE = "governance_pipeline.governance.approvals.export_guard"


def _exports(landscape: Landscape) -> list[ExportRecord]:
    with landscape.engine.connect() as conn:
        rows = conn.execute(select(exports).order_by(exports.c.created_at,
                                                     exports.c.export_id)).mappings().all()
    return [ExportRecord.from_row(r) for r in rows]


def _export_request(service: ApprovalService, *, approve: bool = True,
                    subject: str = "2026-01") -> tuple[str, str]:
    approval, token = service.request(
        tenant_id=TENANT, subject_type="export",
        subject_hash=export_subject_hash(ExportKind.SOC2, subject, TENANT),
        subject_ref=f"soc2 {subject}", requested_by=REQUESTER, ladder="export")
    if approve:
        service.decide(approval.approval_id, actor="compliance-officer", role="compliance",
                       decision=Decision.APPROVE)
        service.decide(approval.approval_id, actor="security-officer", role="security",
                       decision=Decision.APPROVE)
    return approval.approval_id, token


def _guard(landscape: Landscape, token: str | None, subject: str = "2026-01"):  # type: ignore[no-untyped-def]
    return guard_export(landscape, kind=ExportKind.SOC2, subject=subject, tenant_id=TENANT,
                        surface="test:soc2", requested_by="auditor", approval_token=token)


def test_export_without_approval_is_refused_and_recorded(landscape: Landscape) -> None:
    with pytest.raises(BlockedError) as blocked:
        _guard(landscape, None)
    assert blocked.value.code is EXPORT_APPROVAL_REQUIRED and blocked.value.exit_code == 4
    assert "approvals request --export soc2 --subject 2026-01" in blocked.value.message
    (record,) = _exports(landscape)
    assert (record.status, record.reason, record.surface) == \
        (ExportStatus.BLOCKED, "approval_required", "test:soc2")
    assert record.subject_hash == export_subject_hash("soc2", "2026-01", TENANT)
    (event,) = events_of(landscape, "export.blocked")
    assert event["payload"]["export_id"] == record.export_id
    assert event["source"] == "export_guard"


def test_export_before_the_ladder_completes_is_refused(landscape: Landscape) -> None:
    service = ApprovalService(landscape, ladders=catalog())
    aid, token = _export_request(service, approve=False)
    service.decide(aid, actor="compliance-officer", role="compliance", decision=Decision.APPROVE)
    with pytest.raises(TokenRefused) as blocked:
        _guard(landscape, token)
    assert blocked.value.reason is InvalidReason.NOT_APPROVED and blocked.value.exit_code == 4
    (record,) = _exports(landscape)
    assert (record.status, record.reason, record.approval_id) == \
        (ExportStatus.BLOCKED, "not_approved", aid)
    assert service.get(aid).approval.status is ApprovalStatus.PENDING


def test_approved_export_is_cleared_once_and_written(landscape: Landscape) -> None:
    service = ApprovalService(landscape, ladders=catalog())
    aid, token = _export_request(service)
    clearance = _guard(landscape, token)
    assert (clearance.approval_id, clearance.kind, clearance.tenant_id) == \
        (aid, ExportKind.SOC2, TENANT)
    consumed = service.get(aid).approval
    assert consumed.status is ApprovalStatus.CONSUMED
    assert consumed.consumed_for == clearance.export_id and consumed.consumed_by == "auditor"
    written = record_export_written(landscape, clearance, path="/tmp/bundle",
                                    bundle_digest="sha256:" + "ab" * 32)
    assert written.status is ExportStatus.WRITTEN and written.bundle_digest == "ab" * 32
    assert written.requested_by == "auditor"
    with pytest.raises(TokenRefused) as again:
        _guard(landscape, token)
    assert again.value.reason is InvalidReason.ALREADY_CONSUMED
    assert [(r.status, r.reason) for r in _exports(landscape)] == [
        (ExportStatus.WRITTEN, None), (ExportStatus.BLOCKED, "already_consumed")]
    assert [e["type"] for e in events_of(landscape)
            if e["type"].startswith("export.")] == ["export.written", "export.blocked"]
    assert verify(landscape, "global").ok


def test_a_token_is_bound_to_its_export_subject(landscape: Landscape) -> None:
    service = ApprovalService(landscape, ladders=catalog())
    _, token = _export_request(service, subject="2026-01")
    with pytest.raises(TokenRefused) as other:
        _guard(landscape, token, subject="2026-02")
    assert other.value.reason is InvalidReason.IR_HASH_MISMATCH
    assert len({export_subject_hash(k, s, t) for k in ("soc2", "evidence")
                for s in ("a", "b") for t in ("x", "y")}) == 8
    assert _guard(landscape, token, subject="2026-01").subject == "2026-01"


# --- the surfaces --------------------------------------------------------------------------------
def _name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Call):
        return _name(node.func)
    return None


def _takes_clearance(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    args = [*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs]
    return any(a.annotation is not None and "ExportClearance" in ast.unparse(a.annotation)
               for a in args)


def _surface_name(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> str | None:
    for deco in fn.decorator_list:
        if isinstance(deco, ast.Call) and _name(deco.func) == "export_surface" and deco.args:
            arg = deco.args[0]
            return arg.value if isinstance(arg, ast.Constant) else "?"
    return None


def _functions(tree: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def audit_surfaces(sources: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """(surface name → module, problems) over module sources."""
    trees = {mod: ast.parse(src) for mod, src in sources.items()}
    writers = {fn.name for tree in trees.values() for fn in _functions(tree)
               if _takes_clearance(fn)}
    surfaces: dict[str, str] = {}
    problems: list[str] = []
    for mod, tree in trees.items():
        for fn in _functions(tree):
            name = _surface_name(fn)
            calls = {_name(c.func) for c in ast.walk(fn) if isinstance(c, ast.Call)}
            if name is not None:
                surfaces[name] = mod
                if "guard_export" not in calls:
                    problems.append(f"{mod}.{fn.name}: export surface {name!r} never calls "
                                    "guard_export")
            elif not _takes_clearance(fn):
                for called in sorted(c for c in calls if c in writers):
                    problems.append(f"{mod}.{fn.name}: calls bundle writer {called} without "
                                    "being an @export_surface")
        if mod != GUARD_MODULE:
            for call in ast.walk(tree):
                if isinstance(call, ast.Call) and _name(call.func) == "ExportClearance":
                    problems.append(f"{mod}: builds an ExportClearance outside the guard")
        module_calls = [n for n in tree.body if isinstance(n, ast.Expr)
                        and isinstance(n.value, ast.Call) and _name(n.value.func) in writers]
        problems += [f"{mod}: calls a bundle writer at import time" for _ in module_calls]
    return surfaces, problems


def _package_sources() -> dict[str, str]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        if "migrations" in rel.parts:
            continue
        out[".".join(rel.parts).removesuffix(".__init__")] = path.read_text(encoding="utf-8")
    return out


def test_every_export_surface_passes_the_guard() -> None:
    surfaces, problems = audit_surfaces(_package_sources())
    assert problems == []
    for module in pkgutil.walk_packages(governance_pipeline.__path__, "governance_pipeline."):
        if ".migrations" not in module.name and not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    declared = {name: s.module for name, s in EXPORT_SURFACES.items()
                if not s.module.startswith("governance_pipeline_tests")}
    assert declared == surfaces


_BYPASS = {
    "pkg.writer": "def write_bundle(clearance: ExportClearance, out): ...\n",
    "pkg.cli": "def export_cmd(out):\n    write_bundle(None, out)\n",
}
_NO_GUARD = {
    "pkg.writer": "def write_bundle(clearance: 'ExportClearance', out): ...\n",
    "pkg.asset": "@export_surface('dagster:x')\ndef asset_fn(out):\n    write_bundle(None, out)\n",
}
_FORGED = {"pkg.cli": "def f():\n    return ExportClearance('e', 'soc2', 's', 'h', 't', 'a',"
                      " 'cli', 'now')\n"}
_GOOD = {
    "pkg.writer": "def write_bundle(clearance: ExportClearance, out): ...\n"
                  "def helper(c: ExportClearance):\n    write_bundle(c, 1)\n",
    "pkg.cli": "@export_surface('cli:export x')\ndef export_cmd(out):\n"
               "    c = guard_export(None)\n    write_bundle(c, out)\n",
}


@pytest.mark.parametrize(("sources", "expected"), [
    (_BYPASS, "without being an @export_surface"),
    (_NO_GUARD, "never calls guard_export"),
    (_FORGED, "outside the guard"),
])
def test_the_surface_audit_catches_a_bypass(sources: dict[str, str], expected: str) -> None:
    _, problems = audit_surfaces(sources)
    assert len(problems) == 1 and expected in problems[0]


def test_the_surface_audit_accepts_a_guarded_surface() -> None:
    surfaces, problems = audit_surfaces(_GOOD)
    assert problems == [] and surfaces == {"cli:export x": "pkg.cli"}


def test_export_surface_registers_and_refuses_duplicates() -> None:
    @export_surface("test:registry")
    def one() -> None: ...

    assert EXPORT_SURFACES["test:registry"].qualname.endswith("one")
    assert one.__export_surface__ == "test:registry"  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="declared twice"):
        @export_surface("test:registry")
        def two() -> None: ...
    with pytest.raises(ValueError, match="1-32 characters"):
        export_surface("x" * 33)
    del EXPORT_SURFACES["test:registry"]
