"""The SOC 2 bundle of one calendar month: each control's population, sample and results.

For every control in ``soc2_controls.CONTROLS`` the population query runs over the period, its
keys are sorted and digested, a seeded sample is drawn and each sampled item is tested. A control
with an empty population is listed as not assessed with the reason, as is every criterion the
product cannot evidence: nothing is omitted. The statement is management's, never an opinion.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from sqlalchemy import Connection

from governance_pipeline.contracts.clock import to_iso
from governance_pipeline.contracts.errors import USAGE_INVALID, AuditIntegrityError, ConfigError
from governance_pipeline.contracts.records import Run
from governance_pipeline.governance.exports import reads, sampling
from governance_pipeline.governance.exports.models import (
    CheckedItem,
    ControlResult,
    ControlStatus,
    ManagementStatement,
    Population,
    SampleResult,
    SOC2Bundle,
)
from governance_pipeline.governance.exports.soc2_controls import (
    CONTROLS,
    NOT_TESTABLE,
    CheckContext,
    Control,
    Period,
    default_ir_hash,
    default_risk_tier,
    runs_in,
)
from governance_pipeline.governance.exports.soc2_operator_controls import OPERATOR_CONTROLS
from governance_pipeline.landscape.queries import reading
from governance_pipeline.landscape.schema import GLOBAL_SCOPE
from governance_pipeline.landscape.store import Landscape

_PERIOD = re.compile(r"(\d{4})-(0[1-9]|1[0-2])")

STATEMENT = (
    "This report was prepared by management from the system's records: the audit Landscape of "
    "governance_pipeline, read at the ledger heads listed in this bundle. It describes the "
    "controls management relies on, the full population of each control in the period (with "
    "the query that produced it and its digest), a reproducible sample and the result of an "
    "automated test of each sampled item. It is management's assertion, not an auditor's "
    "opinion, and it is not a SOC 2 report. Controls shown as not assessed were not tested; "
    "the reason is given for each.")


def period_bounds(period: str) -> tuple[str, str]:
    """[start, end) of a YYYY-MM period as audit timestamps; ``ConfigError`` when malformed."""
    m = _PERIOD.fullmatch(period)
    if m is None:
        raise ConfigError(f"period {period!r} is not a month in the form YYYY-MM",
                          code=USAGE_INVALID, details={"period": period})
    year, month = int(m.group(1)), int(m.group(2))
    nxt = (year + 1, 1) if month == 12 else (year, month + 1)
    return (f"{year:04d}-{month:02d}-01T00:00:00.000000Z",
            f"{nxt[0]:04d}-{nxt[1]:02d}-01T00:00:00.000000Z")


def build_soc2(landscape: Landscape, period: str, *, tenant_id: str | None = None,
               sample_size: int = 25, seed: str | None = None,
               risk_tier_of: Callable[[Run], int] = default_risk_tier,
               ir_hash_of: Callable[[Run], str] = default_ir_hash) -> SOC2Bundle:
    """The SOC 2 bundle of ``period`` (YYYY-MM), optionally restricted to one tenant.

    ``risk_tier_of`` and ``ir_hash_of`` say which runs need an approval (CC8.1) and what it
    must be bound to; the approvals service passes its own.
    """
    start, end = period_bounds(period)
    p = Period(start, end, tenant_id)
    with reading(landscape, snapshot=True) as conn:
        run_ids = sorted(conn.execute(runs_in(p)).scalars())
        heads = reads.ledger_heads(conn, [GLOBAL_SCOPE, *run_ids])
        subject = period if tenant_id is None else f"{period}/{tenant_id}"
        seed = seed or sampling.default_seed("soc2", subject, heads)
        ctx = CheckContext(landscape, conn, risk_tier_of, ir_hash_of)
        controls = [_assess(ctx, control, p, sample_size, seed)
                    for control in (*CONTROLS, *OPERATOR_CONTROLS)]
        decided = reads.approvals_decided_in(conn, start, end, tenant_id)
    controls += [ControlResult(
        control_id=f"GP-{criterion}", criteria=[criterion], title=title,
        description="Not evidenced by this product's records.", status=ControlStatus.NOT_ASSESSED,
        population=None, sample=None, results=[], exceptions=[],
        not_assessed_reason=f"Not testable by this product: {why}.")
        for criterion, title, why in NOT_TESTABLE]
    who = f" for tenant {tenant_id}" if tenant_id else ""
    return SOC2Bundle(
        title=f"SOC 2 controls evidence: {period}{who}", subject=period, tenant_id=tenant_id,
        generated_at=to_iso(landscape.clock.now()), period_start=start, period_end=end,
        ledger_heads=heads, seed=seed, run_ids=run_ids,
        statement=ManagementStatement(text=STATEMENT), controls=controls, approvals=decided)


def _sql(conn: Connection, query: object) -> str:
    compiled = query.compile(dialect=conn.dialect,  # type: ignore[attr-defined]
                             compile_kwargs={"literal_binds": True})
    return str(compiled).strip()


def _assess(ctx: CheckContext, control: Control, p: Period, size: int,
            seed: str) -> ControlResult:
    query = control.population(p)
    scopes = {key: scope for key, scope in ctx.conn.execute(query)}
    text = _sql(ctx.conn, query)
    if control.keep is not None:
        scopes = {k: s for k, s in scopes.items() if control.keep(ctx, k)}
        text += f"\n-- then kept: {control.keep_text}"
    keys = sorted(scopes)
    population = Population(query=text, count=len(keys),
                            digest=sampling.population_digest(keys), keys=keys)
    common = dict(control_id=control.control_id, criteria=list(control.criteria),
                  title=control.title, description=control.description, population=population)
    if not keys:
        return ControlResult(**common, status=ControlStatus.NOT_ASSESSED, sample=None,
                             results=[], exceptions=[],
                             not_assessed_reason=f"No population: {control.empty_reason}.")
    sample = sampling.draw(keys, size, f"{seed}:{control.control_id}")
    results = [_check(ctx, control, key, scopes[key]) for key in sample.drawn]
    exceptions = [r for r in results if r.result is not SampleResult.PASS]
    return ControlResult(**common, sample=sample, results=results, exceptions=exceptions,
                         status=ControlStatus.EXCEPTIONS_NOTED if exceptions
                         else ControlStatus.EFFECTIVE, not_assessed_reason=None)


def _check(ctx: CheckContext, control: Control, key: str, scope: str) -> CheckedItem:
    try:
        result, reason = control.test(ctx, key, scope)
    except AuditIntegrityError as exc:  # a record failed its Tier-1 read: that is the finding
        result, reason = SampleResult.EXCEPTION, f"record failed validation: {exc.message}"
    return CheckedItem(key=key, table=control.table, scope=scope, result=result, reason=reason)
