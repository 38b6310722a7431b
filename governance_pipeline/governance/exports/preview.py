"""A few lines of markdown that say what a bundle holds (Dagster metadata, CLI summaries).

The values come from the records, so they are escaped like any other untrusted text before they
reach markdown (``pdf_text.safe`` does the same for the PDF).
"""

from __future__ import annotations

from collections import Counter

from governance_pipeline.governance.exports.models import (
    Bundle,
    EvidenceBundle,
    ExecutiveDebrief,
    SOC2Bundle,
)

_MAX = 300
# Every value follows a prefix of ours, never starts a line: inline markup is what to neutralise.
_MD_SPECIAL = str.maketrans({c: f"\\{c}" for c in "\\`*_{}[]<>#|~"})


def md(value: object, limit: int = _MAX) -> str:
    """One value as inert markdown text on one line, cut to ``limit`` characters."""
    text = " ".join(str(value).split())
    if len(text) > limit:
        text = text[:limit] + "…"
    return text.translate(_MD_SPECIAL)


def preview_markdown(bundle: Bundle) -> str:
    lines = [f"**{md(bundle.title)}**", "", f"- tenant: {md(bundle.tenant_id or 'all')}",
             f"- generated at: {md(bundle.generated_at)}"]
    if isinstance(bundle, EvidenceBundle):
        run = bundle.run
        outcomes = ", ".join(f"{md(k)} {v}" for k, v in sorted(bundle.outcome_counts.items()))
        decisions = bundle.decisions
        lines += [f"- pipeline {md(run.pipeline_name)}, status {md(run.status)}",
                  f"- tokens: {bundle.token_count} ({outcomes or 'none'})",
                  (f"- policy decisions: {decisions.evaluated} evaluated, {decisions.failed} "
                   f"failed, {decisions.blocked} blocked"),
                  (f"- incidents: {len(bundle.incidents)}; artifacts: {len(bundle.artifacts)}; "
                   f"lineage sample: {len(bundle.lineage)} row(s)")]
    elif isinstance(bundle, SOC2Bundle):
        counts = Counter(c.status.value for c in bundle.controls)
        lines += [(f"- period {md(bundle.period_start)} to {md(bundle.period_end)}, "
                   f"{len(bundle.run_ids)} run(s)"),
                  "- controls: " + ", ".join(f"{v} {md(k)}" for k, v in sorted(counts.items()))]
        lines += [f"  - {md(c.control_id)}: {md(c.status.value)}" for c in bundle.controls
                  if c.population is not None]
    elif isinstance(bundle, ExecutiveDebrief):
        lines += [(f"- run {md(bundle.run_id)} of {md(bundle.pipeline_name)}, risk "
                   f"{md(bundle.risk_level)}, status {md(bundle.remediation_status)}"),
                  f"- {md(bundle.summary)}"]
    return "\n".join(lines)
