"""The engine's policy hook, built from a stored snapshot: rules compiled once per run.

Decisions are recorded for every rule evaluated on every token (pass or fail), each naming the
snapshot id and hash, the rule, its mode and whether it would block. ``would_block`` does not
depend on the mode: advisory and enforced runs of the same input flag the same tokens; only an
enforced decision stops the run. Budgets and rates count across chunks: their counters travel
in each chunk's checkpoint, so a resumed or multi-process run continues from what was recorded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from governance_pipeline.contracts.enums import PolicyMode, RuleResult, Severity
from governance_pipeline.contracts.records import PolicyDecision
from governance_pipeline.engine import ids
from governance_pipeline.engine.config import PipelineConfig
from governance_pipeline.engine.policy_hook import Block, PolicySubject, PolicyVerdict
from governance_pipeline.governance.policy.model import parse_policy
from governance_pipeline.governance.policy.rules import (
    CompiledRule,
    Counters,
    compile_policy,
)
from governance_pipeline.governance.policy.snapshot import StoredSnapshot, attached_policy_ids


def _dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def reason_of(rule: CompiledRule, detail: Mapping[str, Any] | None) -> str:
    """One line saying why a rule failed, from its detail (never a raw sensitive value: the
    detail holds redacted values only)."""
    return f"{rule.policy_id}/{rule.rule_id} ({rule.kind}): {_why(detail or {})}"


def _why(detail: Mapping[str, Any]) -> str:
    findings = detail.get("findings")
    if isinstance(findings, list) and findings:
        shown = []
        for f in findings[:3]:
            what = f.get("detector") or f.get("kind") or "term"
            mark = f.get("redacted") or f.get("term")
            shown.append(f"{what} in {f.get('field', '?')}"
                         + (f" at {f['offset']}" if "offset" in f else "")
                         + (f" ({mark})" if mark else ""))
        more = detail.get("total", len(findings)) - len(shown)
        return "; ".join(shown) + (f" and {more} more" if more > 0 else "")
    if "missing" in detail and isinstance(detail["missing"], list):
        return "missing " + ", ".join(map(str, detail["missing"]))
    reason = detail.get("reason")
    if reason:
        extras = {k: v for k, v in detail.items() if k != "reason"}
        return f"{reason} {_dumps(extras)[:240]}" if extras else str(reason)
    return _dumps(detail)[:300]


@dataclass(frozen=True, slots=True)
class _Attached:
    policy_id: str
    mode: PolicyMode
    rule: CompiledRule


class SnapshotPolicy:
    """``PolicyHook`` for one run, from its snapshot and its pipeline's attachments."""

    def __init__(self, run_id: str, snapshot: StoredSnapshot, config: PipelineConfig) -> None:
        self.run_id = run_id
        self.snapshot_id = snapshot.snapshot_id
        self.snapshot_hash = snapshot.content_hash
        compiled: dict[str, tuple[PolicyMode, list[CompiledRule]]] = {}
        for entry in snapshot.content["policies"]:
            policy = parse_policy(entry["definition"], origin=f"snapshot {snapshot.snapshot_id}")
            compiled[entry["policy"]] = (PolicyMode(entry["mode"]), compile_policy(policy))
        self._at: dict[str, list[_Attached]] = {}
        for where, policy_ids in attached_policy_ids(config).items():
            rules = [_Attached(pid, compiled[pid][0], rule) for pid in policy_ids
                     if compiled[pid][0].evaluates for rule in compiled[pid][1]]
            if rules:
                self._at[where] = rules
        self.counters = Counters()
        self._base = Counters()
        self._content = snapshot.content

    def describe(self) -> dict[str, Any]:
        """The snapshot as ``validate`` shows it: each policy's mode and where it is evaluated."""
        where: dict[str, list[str]] = {}
        for node, attached in self._at.items():
            for policy_id in dict.fromkeys(a.policy_id for a in attached):
                where.setdefault(policy_id, []).append(node)
        return {"snapshot_hash": self.snapshot_hash,
                "default_mode": self._content["default_mode"],
                "kill_switch": self._content["kill_switch"],
                "policies": [{"policy": p["policy"], "version": p["version"], "mode": p["mode"],
                              "declared_mode": p["declared_mode"],
                              "rules": len(p["definition"]["rules"]),
                              "evaluated_at": where.get(p["policy"], [])}
                             for p in self._content["policies"]]}

    # -- the hook ----------------------------------------------------------------------------
    def applies(self, node_id: str) -> bool:
        return node_id in self._at

    def evaluate(self, node_id: str, step_index: int, subjects: Sequence[PolicySubject], *,
                 now_iso: str, now_ts: float) -> PolicyVerdict:
        verdict = PolicyVerdict()
        for ordinal, attached in enumerate(self._at.get(node_id, ())):
            rule = attached.rule
            results = rule.evaluate(subjects, self.counters, now_ts)
            for index, (subject, result) in enumerate(zip(subjects, results, strict=True)):
                would_block = not result.passed and rule.blocks
                decision_id = ids.decision_id(subject.token_id, step_index, ordinal)
                detail = None if result.passed else _dumps({"detail": result.detail,
                                                            "fix": rule.fix})
                verdict.records.append(PolicyDecision(
                    decision_id, self.run_id, subject.token_id, node_id, step_index,
                    subject.state_id, self.snapshot_id, self.snapshot_hash, attached.policy_id,
                    rule.rule_id, rule.kind, Severity(rule.severity), attached.mode,
                    RuleResult.PASS if result.passed else RuleResult.FAIL, would_block, detail,
                    now_iso))
                if would_block and attached.mode.stops:
                    verdict.blocks.append(Block(index, decision_id, attached.policy_id,
                                                rule.rule_id, Severity(rule.severity).value,
                                                reason_of(rule, result.detail), rule.fix))
        return verdict

    def begin_chunk(self) -> None:
        self._base = Counters.from_json(self.counters.to_json())

    def rollback_chunk(self) -> None:
        self.counters = Counters.from_json(self._base.to_json())

    def chunk_state(self) -> dict[str, Any]:
        return self.counters.delta_since(self._base)

    def restore(self, chunk_states: Sequence[Mapping[str, Any]]) -> None:
        self.counters = Counters.merged(chunk_states)
        self._base = Counters.from_json(self.counters.to_json())
