"""The content of the three bundles an auditor receives: evidence (per run), SOC 2 (per period)
and the executive debrief (per incident).

The models hold facts read from the Landscape and nothing else: no wall-clock time (``generated_at``
comes from the Landscape's clock), no random ids, so the same Landscape state gives the same
bundle. They are frozen and refuse unknown fields, so a bundle read back from its JSON
(``model_validate_json``) is exactly the bundle that was rendered. Each bundle names the audit
records it cites as samples (``sampled_records``) so the bundle writer can attach a ledger
inclusion proof for exactly those.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from governance_pipeline.governance.exports.models_data_protection import DataProtectionInfo

SCHEMA_VERSION = 1

#: (table, record key as the ledger writes it, ledger scope)
SampledRecord = tuple[str, str, str]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LedgerHead(_Model):
    """The head of one ledger chain when the bundle was built: the bundle reflects the chain up
    to this entry and nothing written after it."""

    scope: str = Field(description="Ledger scope: a run id, or 'global'.")
    seq: int = Field(description="Sequence number of the head entry (0: empty chain).")
    entry_hash: str = Field(description="SHA-256 of the head entry.")
    sealed: bool = Field(description="Whether a signed seal covers exactly this head.")


class SampleInfo(_Model):
    """How a sample was drawn, so anyone can redraw it: ``random.Random(seed).sample`` over the
    population's keys sorted as text."""

    seed: str = Field(description="Seed of random.Random; defaults to a hash of subject and ledger heads.")
    population_size: int = Field(description="Number of keys in the population.")
    population_digest: str = Field(description="SHA-256 of the canonical JSON list of sorted keys.")
    requested: int = Field(description="Sample size asked for.")
    drawn: list[str] = Field(description="Keys drawn, in sorted order.")


# --- evidence bundle ------------------------------------------------------------------------------
class RunInfo(_Model):
    """The run as recorded."""

    run_id: str
    pipeline_name: str
    tenant_id: str
    status: str = Field(description="Final (or current) run status.")
    termination_reason: str | None = Field(description="Why the run ended, if it did.")
    started_at: str
    ended_at: str | None
    config_hash: str = Field(description="SHA-256 of the canonical pipeline definition.")
    canonical_version: str = Field(description="Canonicalisation version used for every hash.")
    resume_count: int


class PolicySnapshotInfo(_Model):
    """The policies in force for the run, exactly as snapshotted at run start."""

    snapshot_id: str
    content_hash: str = Field(description="SHA-256 of the canonical policies.")
    canonical_version: str
    policy_count: int
    created_at: str
    policies_json: str = Field(description="The snapshot's canonical policies, verbatim.")


class NodeInfo(_Model):
    """One node of the run's graph as registered at run start."""

    node_id: str
    node_type: str
    plugin_name: str
    plugin_version: str
    determinism: str
    position: int
    config_hash: str


class CodeIdentityInfo(_Model):
    """Which code one node ran (the run's code manifest, recorded at run start)."""

    node_id: str
    position: int
    plugin_name: str
    plugin_version: str | None = Field(description="Version of the plugin's distribution.")
    distribution: str | None = Field(description="Distribution that registers the plugin.")
    plugin_class: str
    function_name: str | None = Field(description="A user function's package.module:callable.")
    module_path: str | None
    source_sha256: str | None = Field(description="SHA-256 of the function's module source file.")
    function_distribution: str | None
    function_version: str | None
    identity_hash: str


class CodeManifestInfo(_Model):
    manifest_hash: str = Field(description="SHA-256 of the canonical JSON of every identity.")
    nodes: list[CodeIdentityInfo]


class EdgeInfo(_Model):
    """One edge of the run's graph."""

    from_node_id: str
    to_node_id: str
    label: str
    mode: str = Field(description="Routing mode: move or copy.")


class DecisionInfo(_Model):
    """A failed policy rule on one token (passing decisions are counted, not listed)."""

    decision_id: str
    token_id: str
    node_id: str
    policy_id: str
    rule_id: str
    severity: str
    mode: str = Field(description="advisory or enforced")
    would_block: bool = Field(description="The violation would stop the run under enforcement.")
    detail_json: str | None
    created_at: str


class DecisionSummary(_Model):
    """Counts of the run's policy decisions, and its failed decisions (up to ``listed_limit``)."""

    evaluated: int = Field(description="Policy decisions recorded for the run.")
    failed: int = Field(description="Decisions whose rule failed.")
    would_block: int = Field(description="Failed decisions flagged would_block (advisory or enforced).")
    blocked: int = Field(description="would_block decisions under an enforced policy.")
    listed_limit: int = Field(description="At most this many failed decisions are listed.")
    failures: list[DecisionInfo] = Field(description="Failed decisions, oldest first.")


class InflectionInfo(_Model):
    """Where an enforced policy stopped the run."""

    inflection_id: str
    token_id: str
    row_index: int
    node_id: str
    step_index: int
    decision_id: str
    snapshot_id: str
    policy_id: str
    rule_id: str
    reason: str
    occurred_at: str


class IncidentInfo(_Model):
    """An incident opened for the run."""

    incident_id: str
    severity: str
    status: str
    summary: str
    policy_id: str | None
    rule_id: str | None
    inflection_id: str | None
    detected_at: str
    resolved_at: str | None
    resolution: str | None


class ArtifactInfo(_Model):
    """A file or object a sink wrote, with the digest of its content."""

    artifact_id: str
    sink_node_id: str
    artifact_type: str
    path_or_uri: str
    content_hash: str = Field(description="SHA-256 of the artifact's bytes.")
    size_bytes: int
    row_count: int


class DecisionSignatureInfo(_Model):
    """The approver's signature of a decision: checkable offline against the ladder's keys."""

    statement_json: str = Field(description="The signed statement (RFC 8785 JSON), verbatim.")
    signature: str = Field(description="Base64 Ed25519 signature over statement_json.")
    key_fingerprint: str = Field(description="OpenSSH SHA256 fingerprint of the signing key.")


class ApprovalDecisionInfo(_Model):
    """One vote on an approval stage."""

    decision_id: str
    stage_name: str
    round: int
    actor: str
    role: str
    decision: str
    delegated_from: str | None
    decided_at: str
    signature: DecisionSignatureInfo | None = Field(
        default=None, description="The approver's signature (signed ladders).")


class ApprovalInfo(_Model):
    """An approval bound to the subject (consumed by the run, or referring to it)."""

    approval_id: str
    subject_type: str
    subject_hash: str
    subject_ref: str
    requested_by: str
    status: str
    consumed_at: str | None
    consumed_by: str | None
    consumed_for: str | None
    decisions: list[ApprovalDecisionInfo]
    signatures: str = Field(default="unsigned", description=(
        "'required': every decision is signed by a key the ladder lists; 'unsigned': the "
        "documented demo mode, identities are claims."))
    ladder_json: str | None = Field(default=None, description=(
        "The ladder the request was made under, verbatim (with the approvers' public keys)."))


class LineageItem(_Model):
    """One sampled source row and what became of each of its tokens."""

    row_id: str
    row_index: int
    source_data_hash: str = Field(description="SHA-256 of the row's stored payload.")
    outcomes: list[str] = Field(description="'token: outcome -> sink' for each terminal outcome.")


class EvidenceBundle(_Model):
    """Everything the Landscape knows about one run, for an auditor."""

    kind: Literal["evidence"] = "evidence"
    schema_version: int = SCHEMA_VERSION
    title: str
    subject: str = Field(description="The run id.")
    tenant_id: str
    generated_at: str = Field(description="Landscape clock time the bundle was built.")
    ledger_heads: list[LedgerHead]
    run: RunInfo
    policy_snapshot: PolicySnapshotInfo | None
    nodes: list[NodeInfo]
    edges: list[EdgeInfo]
    token_count: int
    outcome_counts: dict[str, int] = Field(description="Tokens per terminal outcome (and buffered).")
    decisions: DecisionSummary
    inflection_point: InflectionInfo | None
    incidents: list[IncidentInfo]
    artifacts: list[ArtifactInfo]
    approvals: list[ApprovalInfo]
    lineage_sample: SampleInfo
    lineage: list[LineageItem] = Field(description="The sampled rows, in sample order.")
    code_manifest: CodeManifestInfo | None = Field(
        default=None, description="The code each node ran; None for runs recorded before "
                                  "code identities existed.")
    data_protection: DataProtectionInfo = Field(
        default_factory=DataProtectionInfo,
        description="Erasures, purges and legal holds that concern the run.")

    def sampled_records(self) -> list[SampledRecord]:
        return [("rows", item.row_id, self.run.run_id) for item in self.lineage]


# --- SOC 2 bundle ---------------------------------------------------------------------------------
class ControlStatus(StrEnum):
    EFFECTIVE = "effective"                  # population tested, no exception in the sample
    EXCEPTIONS_NOTED = "exceptions_noted"    # at least one sampled item failed or errored
    NOT_ASSESSED = "not_assessed"            # no population in the period, or not testable here


class SampleResult(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    EXCEPTION = "exception"   # the test itself could not be carried out on the item


class CheckedItem(_Model):
    """The result of the control's test on one sampled population item."""

    key: str = Field(description="Key of the population item (see the population query).")
    table: str = Field(description="Landscape table of the item.")
    scope: str = Field(description="Ledger scope of the item's record.")
    result: SampleResult
    reason: str = Field(description="What was checked and what was found.")


class Population(_Model):
    """The full population of a control in the period."""

    query: str = Field(description="The SQL that produced the population, as executed.")
    count: int
    digest: str = Field(description="SHA-256 of the canonical JSON list of the sorted keys.")
    keys: list[str] = Field(description="Every key, sorted.")


class ControlResult(_Model):
    """One control mapped to a 2017 Trust Services Criterion, and its test."""

    control_id: str = Field(description="Product control id, e.g. GP-CC6.1.")
    criteria: list[str] = Field(description="2017 TSC criteria the control addresses.")
    title: str
    description: str = Field(description="What the control is and how it was tested.")
    status: ControlStatus
    population: Population | None
    sample: SampleInfo | None
    results: list[CheckedItem] = Field(description="Per-sample results, in sample order.")
    exceptions: list[CheckedItem] = Field(description="Sampled items that failed or errored.")
    not_assessed_reason: str | None = Field(description="Why the control was not assessed.")


class ManagementStatement(_Model):
    """Management's description of the evidence: not an auditor's opinion."""

    prepared_by: Literal["management"] = "management"
    is_auditor_opinion: Literal[False] = False
    text: str


class SOC2Bundle(_Model):
    """Controls tested over one calendar month of the Landscape's records."""

    kind: Literal["soc2"] = "soc2"
    schema_version: int = SCHEMA_VERSION
    title: str
    subject: str = Field(description="The period, YYYY-MM.")
    tenant_id: str | None = Field(description="Tenant the bundle is restricted to; None: all.")
    generated_at: str
    period_start: str = Field(description="Inclusive start (UTC).")
    period_end: str = Field(description="Exclusive end (UTC).")
    ledger_heads: list[LedgerHead]
    seed: str = Field(description="Seed of every control's sample.")
    run_ids: list[str] = Field(description="Runs started in the period.")
    statement: ManagementStatement
    controls: list[ControlResult]
    approvals: list[ApprovalInfo] = Field(default_factory=list, description=(
        "Approvals with a decision in the period, with their votes and signatures."))

    def sampled_records(self) -> list[SampledRecord]:
        seen: dict[SampledRecord, None] = {}
        for control in self.controls:
            for item in control.results:
                seen.setdefault((item.table, item.key, item.scope), None)
        return list(seen)


# --- executive debrief ----------------------------------------------------------------------------
class TimelineEntry(_Model):
    at: str
    event: str


class BusinessImpact(_Model):
    """What the stop meant for the data."""

    rows_read: int = Field(description="Source rows the run had read when it ended.")
    rows_written_before_stop: int = Field(description="Rows delivered to a sink.")
    rows_stopped: int = Field(description="Rows read but not delivered to any sink.")
    sinks_affected: list[str] = Field(description="Sinks of the run that received no or partial data.")
    description: str


class ExecutiveDebrief(_Model):
    """One incident explained for a non-technical reader."""

    kind: Literal["debrief"] = "debrief"
    schema_version: int = SCHEMA_VERSION
    title: str
    subject: str = Field(description="The incident id.")
    tenant_id: str
    generated_at: str
    ledger_heads: list[LedgerHead]
    run_id: str
    pipeline_name: str
    summary: str = Field(description="Plain-language account of what happened.")
    risk_level: str = Field(description="low, medium, high or critical (the incident's severity).")
    policy_id: str | None
    rule_id: str | None
    violation_reason: str | None
    business_impact: BusinessImpact
    timeline: list[TimelineEntry]
    time_to_detect_seconds: float | None
    time_to_detect_basis: str = Field(description="What the time to detect is measured from.")
    cost: float = Field(description="Sum of the recorded cost of the run's external calls.")
    cost_calls: int = Field(description="External calls recorded for the run.")
    recommended_actions: list[str]
    remediation_status: str = Field(description="The incident's status: open, acknowledged or resolved.")
    resolution: str | None

    def sampled_records(self) -> list[SampledRecord]:
        return [("incidents", self.subject, self.run_id)]


Bundle = EvidenceBundle | SOC2Bundle | ExecutiveDebrief
