"""Bundles as PDF (reportlab platypus): a cover page with the bundle digest, numbered sections,
ruled tables, "page N of M" footers.

Every value taken from a bundle goes through ``pdf_text.safe`` (via ``para``/``cell``/``facts``/
``table``); the renderer's own markup is limited to fixed strings. The cover shows the time the
bundle was generated (from the bundle, never the wall clock) and the bundle digest, the SHA-256
of the bundle's canonical JSON, which the caller passes in.
"""

from __future__ import annotations

import json

from reportlab.platypus import Flowable, PageBreak, Spacer

from governance_pipeline.governance.exports.models import (
    Bundle,
    ControlResult,
    ControlStatus,
    EvidenceBundle,
    ExecutiveDebrief,
    LedgerHead,
    SOC2Bundle,
)
from governance_pipeline.governance.exports.pdf_styles import (
    BODY,
    H1,
    H2,
    NOTE,
    SMALL,
    SUBTITLE,
    TITLE,
    build,
    lines,
    facts,
    markup,
    para,
    table,
)
from governance_pipeline.governance.exports.pdf_text import CELL, safe

_KIND_NAMES = {"evidence": "Evidence bundle", "soc2": "SOC 2 controls evidence",
               "debrief": "Executive debrief"}


def render_pdf(bundle: Bundle, *, bundle_digest: str) -> bytes:
    """The PDF of ``bundle``; ``bundle_digest`` is the SHA-256 of its ``render_json`` bytes."""
    if isinstance(bundle, EvidenceBundle):
        body = _evidence(bundle)
    elif isinstance(bundle, SOC2Bundle):
        body = _soc2(bundle)
    elif isinstance(bundle, ExecutiveDebrief):
        body = _debrief(bundle)
    else:
        raise TypeError(f"not a bundle: {type(bundle).__name__}")
    story = [*_cover(bundle, bundle_digest), PageBreak(), *body]
    return build(story, title=bundle.title, subject=bundle.subject, digest=bundle_digest)


def _cover(bundle: Bundle, digest: str) -> list[Flowable]:
    kind = _KIND_NAMES[bundle.kind]
    pairs: list[tuple[str, object]] = [
        ("Subject", bundle.subject),
        ("Tenant", bundle.tenant_id or "all tenants"),
        ("Generated at (UTC)", bundle.generated_at),
        ("Content digest (SHA-256 of bundle.json)", digest),
        ("Schema version", bundle.schema_version),
    ]
    if isinstance(bundle, SOC2Bundle):
        pairs[1:1] = [("Period", f"{bundle.period_start} to {bundle.period_end} (exclusive)")]
        pairs.append(("Sample seed", bundle.seed))
        pairs.append(("Runs in period", len(bundle.run_ids)))
    if isinstance(bundle, EvidenceBundle):
        pairs.append(("Lineage sample seed", bundle.lineage_sample.seed))
    flow: list[Flowable] = [Spacer(1, 40), markup(safe(kind), TITLE),
                            para(bundle.title, SUBTITLE),
                            facts(pairs, mono=("Content digest (SHA-256 of bundle.json)", "Sample seed",
                                               "Lineage sample seed")),
                            Spacer(1, 10), markup("Ledger heads read", H2), _heads(bundle.ledger_heads)]
    flow.append(markup(
        "The content digest is the SHA-256 of bundle.json, this bundle's canonical JSON (RFC "
        "8785), which is the authoritative content; this document renders it. The bundle's "
        "signed manifest.json lists the digest of every file, this one included. Identifiers, "
        "digests and sample keys can be checked against the JSON and the audit Landscape.",
        NOTE))
    if isinstance(bundle, SOC2Bundle):
        flow += [markup("Management statement", H2), para(bundle.statement.text, NOTE),
                 markup("<b>This is not an auditor's opinion.</b>", BODY)]
    return flow


def _heads(heads: list[LedgerHead], limit: int = 12) -> Flowable:
    rows = [[h.scope, h.seq, h.entry_hash, "yes" if h.sealed else "no"] for h in heads[:limit]]
    if len(heads) > limit:
        rows.append([f"... and {len(heads) - limit} more scopes (see JSON)", "", "", ""])
    return table(["Scope", "Seq", "Head entry hash", "Sealed"], rows,
                 [0.3, 0.06, 0.56, 0.08], mono=(0, 2))


def _section(n: int, title: str) -> Flowable:
    return markup(f"{n}. {safe(title)}", H1)


# --- evidence ------------------------------------------------------------------------------------
def _evidence(b: EvidenceBundle) -> list[Flowable]:
    r = b.run
    out: list[Flowable] = [_section(1, "Run"), facts([
        ("Run id", r.run_id), ("Pipeline", r.pipeline_name), ("Status", r.status),
        ("Termination reason", r.termination_reason or "-"), ("Started", r.started_at),
        ("Ended", r.ended_at or "-"), ("Config hash", r.config_hash),
        ("Canonical form", r.canonical_version), ("Resumed", r.resume_count)],
        mono=("Run id", "Config hash"))]
    out.append(_section(2, "Policy snapshot"))
    s = b.policy_snapshot
    if s is None:
        out.append(para("No policy snapshot was recorded for this run."))
    else:
        out += [facts([("Snapshot id", s.snapshot_id), ("Content hash", s.content_hash),
                       ("Policies", s.policy_count), ("Created", s.created_at)],
                      mono=("Snapshot id", "Content hash")),
                Spacer(1, 4), *_policy_rules(s.policies_json)]
    out += [_section(3, "Node graph"),
            table(["#", "Node", "Type", "Plugin", "Determinism", "Config hash"],
                  [[n.position, n.node_id, n.node_type, f"{n.plugin_name} {n.plugin_version}",
                    n.determinism, n.config_hash] for n in b.nodes],
                  [0.04, 0.14, 0.09, 0.12, 0.1, 0.51], mono=(5,)),
            Spacer(1, 6),
            table(["From", "To", "Label", "Mode"],
                  [[e.from_node_id, e.to_node_id, e.label, e.mode] for e in b.edges],
                  [0.3, 0.3, 0.28, 0.12])]
    out += _code_manifest(b)
    out += [_section(4, "Token outcomes"),
            para(f"{b.token_count} tokens; terminal outcomes:"),
            table(["Outcome", "Tokens"], sorted(b.outcome_counts.items()), [0.7, 0.3])]
    d = b.decisions
    out += [_section(5, "Policy decisions"),
            para(f"{d.evaluated} decisions recorded; {d.failed} failed; {d.would_block} flagged "
                 f"would_block; {d.blocked} blocked under enforcement. Failed decisions (up to "
                 f"{d.listed_limit}):"),
            table(["Decision", "Node", "Policy / rule", "Severity", "Mode", "Would block",
                   "Detail"],
                  [[x.decision_id, x.node_id, f"{x.policy_id} / {x.rule_id}", x.severity, x.mode,
                    "yes" if x.would_block else "no", x.detail_json or ""] for x in d.failures],
                  [0.2, 0.12, 0.17, 0.08, 0.09, 0.07, 0.27], mono=(0,))]
    out.append(_section(6, "Inflection point"))
    p = b.inflection_point
    out.append(para("The run was not stopped by a policy.") if p is None else facts([
        ("Inflection id", p.inflection_id), ("Occurred", p.occurred_at),
        ("Row index", p.row_index), ("Token", p.token_id), ("Node", p.node_id),
        ("Step", p.step_index), ("Policy / rule", f"{p.policy_id} / {p.rule_id}"),
        ("Decision", p.decision_id), ("Snapshot", p.snapshot_id), ("Reason", p.reason)],
        mono=("Inflection id", "Token", "Decision", "Snapshot")))
    out += [_section(7, "Incidents"),
            table(["Incident", "Severity", "Status", "Detected", "Summary"],
                  [[i.incident_id, i.severity, i.status, i.detected_at, i.summary]
                   for i in b.incidents], [0.26, 0.09, 0.1, 0.2, 0.35], mono=(0,))]
    out += [_section(8, "Sink artifacts"),
            table(["Sink", "Rows", "Bytes", "Content SHA-256", "Location"],
                  [[a.sink_node_id, a.row_count, a.size_bytes, a.content_hash, a.path_or_uri]
                   for a in b.artifacts], [0.12, 0.06, 0.07, 0.52, 0.23], mono=(3,))]
    out += [_section(9, "Approvals"), *_approvals(b)]
    ls = b.lineage_sample
    out += [_section(10, "Lineage sample"),
            facts([("Population", f"{ls.population_size} source rows"),
                   ("Population digest", ls.population_digest), ("Seed", ls.seed),
                   ("Sample", f"{len(ls.drawn)} of {ls.requested} requested")],
                  mono=("Population digest", "Seed")), Spacer(1, 6),
            table(["Row", "Row id / source SHA-256", "Outcomes (token: outcome -> sink)"],
                  [[x.row_index, lines(f"{x.row_id}\n{x.source_data_hash}", limit=CELL),
                    lines("\n".join(x.outcomes), limit=CELL)] for x in b.lineage],
                  [0.06, 0.52, 0.42])]
    out += [_section(11, "Data protection"), *_data_protection(b)]
    return out


def _data_protection(b: EvidenceBundle) -> list[Flowable]:
    dp = b.data_protection
    retention = ", ".join(f"{k} {v}" for k, v in dp.retention.items()) or "not declared"
    out: list[Flowable] = [facts([
        ("Subject fields", ", ".join(dp.subject_fields) or "none declared"),
        ("Retention", retention)])]
    out += [Spacer(1, 4), para("Erasures (crypto-shredded: data keys destroyed):"),
            table(["Erasure", "When", "By", "Reason", "What", "Payloads"],
                  [[e.erasure_id, e.at, e.actor, e.reason,
                    f"{e.field_name} = HMAC {e.value_hmac}" if e.selector == "subject"
                    else f"run {e.run_id} row {e.row_index}",
                    f"{e.payload_count} erased ({e.row_count} rows)"] for e in dp.erasures],
                  [0.18, 0.14, 0.1, 0.16, 0.28, 0.14], mono=(0,))]
    out += [Spacer(1, 4), para("Purges (payload contents removed past retention):"),
            table(["Purge", "When", "By", "Scope", "Retention", "Payloads"],
                  [[p.purge_id, p.at, p.actor, p.scope, f"{p.retention_days} days",
                    p.payload_count] for p in dp.purges],
                  [0.26, 0.2, 0.14, 0.12, 0.14, 0.14], mono=(0,))]
    out += [Spacer(1, 4), para("Legal holds:"),
            table(["Hold", "Target", "Placed", "Reason", "Released"],
                  [[h.hold_id, h.target, f"{h.placed_at} by {h.placed_by}", h.reason,
                    f"{h.released_at} by {h.released_by}" if h.released_at else "active"]
                   for h in dp.holds], [0.22, 0.2, 0.22, 0.18, 0.18], mono=(0,))]
    return out


def _code_manifest(b: EvidenceBundle) -> list[Flowable]:
    """Which code each node ran: plugin and distribution, and a user function's source hash."""
    m = b.code_manifest
    if m is None:
        return [Spacer(1, 6), para("No code manifest was recorded for this run.")]
    return [Spacer(1, 6), para(f"Code identity (manifest SHA-256 {m.manifest_hash}):"),
            table(["#", "Node", "Plugin / distribution", "Function", "Source SHA-256"],
                  [[c.position, c.node_id,
                    f"{c.plugin_name} ({c.distribution or 'no distribution'} "
                    f"{c.plugin_version or ''})".replace(" )", ")"),
                    c.function_name or "-", c.source_sha256 or "-"] for c in m.nodes],
                  [0.04, 0.14, 0.2, 0.22, 0.4], mono=(4,))]


def _policy_rules(text: str) -> list[Flowable]:
    """A policy snapshot as a reader needs it: each policy's mode and each rule's kind,
    severity and fix. Rule options (patterns, deny-list terms) stay in bundle.json, verbatim."""
    try:
        content = json.loads(text)
        policies = content["policies"]
        rows = [[p["policy"], f"v{p['version']} {p['mode']}", r["id"], r["kind"],
                 r.get("severity", "-"), "yes" if r.get("blocks", True) else "no",
                 r.get("fix", "")]
                for p in policies for r in p["definition"]["rules"]]
    except (ValueError, KeyError, TypeError):
        return [lines(_pretty(text))]  # not the current snapshot format: shown as stored
    note = para(f"Default mode {content.get('default_mode', '-')}; kill switch "
                f"{'on' if content.get('kill_switch') else 'off'}. The full definitions "
                "(patterns, thresholds, deny-list terms) are in bundle.json.")
    if not rows:
        return [note, para("No policy was attached to this run's nodes.")]
    return [note, table(["Policy", "Mode", "Rule", "Kind", "Severity", "Blocks", "Fix"], rows,
                        [0.12, 0.11, 0.15, 0.09, 0.08, 0.08, 0.37])]


def _pretty(text: str) -> str:
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False, sort_keys=True)
    except ValueError:
        return text  # shown as stored: the snapshot's text is the evidence


_SIGNATURE_TEXT = {
    "required": "required: every decision is signed by the approver's listed key",
    "unsigned": "unsigned (demo mode): approver identities are claims, not proven"}


def _approvals(b: EvidenceBundle) -> list[Flowable]:
    if not b.approvals:
        return [para("No approval was bound to this run.")]
    out: list[Flowable] = []
    for a in b.approvals:
        out += [markup(f"Approval {safe(a.approval_id)}", H2), facts([
            ("Subject", f"{a.subject_type}: {a.subject_ref}"), ("Subject hash", a.subject_hash),
            ("Requested by", a.requested_by), ("Status", a.status),
            ("Consumed", f"{a.consumed_at or '-'} by {a.consumed_by or '-'} for "
                         f"{a.consumed_for or '-'}"),
            ("Signatures", _SIGNATURE_TEXT.get(a.signatures, a.signatures))],
            mono=("Subject hash",)), Spacer(1, 4),
            table(["Stage", "Round", "Actor", "Role", "Decision", "Delegated from", "At"],
                  [[v.stage_name, v.round, v.actor, v.role, v.decision, v.delegated_from or "-",
                    v.decided_at] for v in a.decisions],
                  [0.17, 0.07, 0.14, 0.15, 0.1, 0.14, 0.23])]
    return out


# --- SOC 2 ---------------------------------------------------------------------------------------
_STATUS_TEXT = {ControlStatus.EFFECTIVE: "No exceptions",
                ControlStatus.EXCEPTIONS_NOTED: "Exceptions noted",
                ControlStatus.NOT_ASSESSED: "Not assessed"}


def _soc2(b: SOC2Bundle) -> list[Flowable]:
    out: list[Flowable] = [_section(1, "Controls overview"), table(
        ["Control", "TSC 2017", "Control title", "Result", "Population", "Sampled", "Exceptions"],
        [[c.control_id, ", ".join(c.criteria), c.title, _STATUS_TEXT[c.status],
          c.population.count if c.population else "-", len(c.results) if c.sample else "-",
          len(c.exceptions) if c.sample else "-"] for c in b.controls],
        [0.12, 0.09, 0.33, 0.16, 0.11, 0.09, 0.1])]
    for n, control in enumerate(b.controls, start=2):
        out += _control(n, control)
    return out


def _control(n: int, c: ControlResult) -> list[Flowable]:
    out: list[Flowable] = [_section(n, f"{c.control_id}: {c.title}"), facts([
        ("Criteria (TSC 2017)", ", ".join(c.criteria)), ("Control and test", c.description),
        ("Result", _STATUS_TEXT[c.status])])]
    if c.status is ControlStatus.NOT_ASSESSED:
        out.append(para(c.not_assessed_reason or "", NOTE))
    if c.population is not None:
        p = c.population
        out += [markup("Population", H2),
                facts([("Count", p.count), ("Digest (SHA-256 of sorted keys)", p.digest)],
                      mono=("Digest (SHA-256 of sorted keys)",)),
                Spacer(1, 3), para("Query:", SMALL), lines(p.query)]
    if c.sample is not None:
        s = c.sample
        out += [markup("Sample and results", H2),
                para(f"{len(s.drawn)} of {s.population_size} items, seed {s.seed}.", SMALL),
                Spacer(1, 3),
                table(["Sample key", "Result", "What was checked and found"],
                      [[r.key, r.result.value.upper(), r.reason] for r in c.results],
                      [0.34, 0.1, 0.56], mono=(0,))]
        out.append(markup("Exceptions", H2))
        out.append(para("None.") if not c.exceptions else table(
            ["Sample key", "Result", "Reason"],
            [[r.key, r.result.value.upper(), r.reason] for r in c.exceptions],
            [0.34, 0.1, 0.56], mono=(0,)))
    return out


# --- executive debrief ---------------------------------------------------------------------------
def _debrief(b: ExecutiveDebrief) -> list[Flowable]:
    ttd = ("not available" if b.time_to_detect_seconds is None
           else f"{b.time_to_detect_seconds:.3f} seconds ({b.time_to_detect_basis})")
    impact = b.business_impact
    return [
        _section(1, "What happened"), para(b.summary),
        _section(2, "Key facts"), facts([
            ("Risk level", b.risk_level.upper()), ("Remediation status", b.remediation_status),
            ("Pipeline", b.pipeline_name), ("Run", b.run_id),
            ("Policy / rule", f"{b.policy_id or '-'} / {b.rule_id or '-'}"),
            ("Violation", b.violation_reason or "-"), ("Time to detect", ttd),
            ("Cost of the run", f"{b.cost:.4f} ({b.cost_calls} external calls recorded)"),
            ("Resolution", b.resolution or "-")], mono=("Run",)),
        _section(3, "Business impact"), para(impact.description), table(
            ["Rows read", "Delivered before the stop", "Held back", "Outputs affected"],
            [[impact.rows_read, impact.rows_written_before_stop, impact.rows_stopped,
              ", ".join(impact.sinks_affected) or "none"]], [0.18, 0.26, 0.16, 0.4]),
        _section(4, "Timeline (UTC)"),
        table(["When", "What"], [[t.at, t.event] for t in b.timeline], [0.3, 0.7]),
        _section(5, "Recommended actions"),
        *[para(f"{i}. {a}") for i, a in enumerate(b.recommended_actions, start=1)],
    ]
