"""IR validation: the ir_hash, the declared risk rules (each with a pipeline that triggers it and
one that does not), the outcome per tier, the recorded ``ir.validated_*`` events on both
backends, and ``governance-pipeline validate`` reporting tier, outcome, ir_hash and reasons.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from sqlalchemy import create_engine, select

from governance_pipeline.contracts.clock import ManualClock, to_iso
from governance_pipeline.contracts.errors import REGISTRY, ExitCode
from governance_pipeline.engine.config import load_pipeline
from governance_pipeline.engine.runner import config_hash
from governance_pipeline.governance.ir.model import build_ir, ir_hash
from governance_pipeline.governance.ir.record import record_validation
from governance_pipeline.governance.ir.risk import (
    IR_REJECTED,
    RULES,
    HighRiskStep,
    IRRejectedError,
    Outcome,
    Validation,
    Violation,
    assess,
    rejection,
    validate_ir,
)
from governance_pipeline.landscape import schema
from governance_pipeline.landscape.store import Landscape
from governance_pipeline.landscape.verify import verify
from governance_pipeline_tests.ir_fixtures import (
    ProbePackage,
    base,
    install_probe_package,
    parse,
    step_index,
    transform,
)

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "examples" / "pipelines").glob("*.yaml"))
CLI = Path(sys.executable).with_name("governance-pipeline")
Doc = dict[str, Any]


@pytest.fixture
def probe_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ProbePackage:
    return install_probe_package(tmp_path, monkeypatch)

SEED_KEYS = {"tenant_id", "request_id", "ir_hash", "risk_tier", "requires_approval", "violations",
             "validated_at", "step_count"}
SEED_ESCALATE_KEYS = SEED_KEYS | {"high_risk_steps"}


# --- pipelines that trigger each rule ---------------------------------------------------------
def _sql_source(doc: Doc) -> None:
    doc["source"] = {"plugin": "sql", "options": {"url": "postgresql://db/claims",
                                                  "query": "select 1"},
                     "on_success": "raw", "on_invalid": "quarantine"}


def _sql_sink(doc: Doc) -> None:
    doc["sinks"]["out"] = {"plugin": "sql", "options": {"url": "sqlite:///x.db", "table": "t"}}


def _node0(plugin: str, **options: Any) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        doc["nodes"][0] = transform("prep", "raw", "prepared", plugin, **options)
    return mutate


def _pii(doc: Doc) -> None:
    doc["pii_fields"] = ["customer", "email"]


def _external(doc: Doc) -> None:
    doc["sinks"]["out"]["external"] = True


def _external_pii(doc: Doc) -> None:
    _pii(doc)
    _external(doc)


# rule → (mutation that triggers it, id of the step it fires on)
TRIGGERS: dict[str, tuple[Callable[[Doc], None], str]] = {
    "DATABASE_SOURCE": (_sql_source, "source"),
    "DATABASE_SINK": (_sql_sink, "out"),
    "LOOKUP_FILE": (_node0("lookup", path="ref.csv", key="id", fields=["x"]), "prep"),
    "LOCAL_MODEL_CALL": (_node0("call", provider="local"), "prep"),
    "EXTERNAL_CALL": (_node0("call", provider="http", url="https://api.example/score"), "prep"),
    "PII_DECLARED": (_pii, "source"),
    "EXTERNAL_SINK": (_external, "out"),
    "UNKNOWN_PLUGIN": (_node0("mapper"), "prep"),
    "UNKNOWN_ACTION": (_node0("call", provider="ftp"), "prep"),
    "PII_LEAVES_UNGOVERNED": (_external_pii, "out"),
}
# Tier-0 rules fire on the base pipeline; their twin replaces the step with a riskier one.
TIER0_TWINS: dict[str, tuple[str, Callable[[Doc], None]]] = {
    "LOCAL_FILE": ("source", _sql_source),
    "PURE_STEP": ("prep", _node0("call", provider="local")),
}


def _rules_at(doc: Doc, step_id: str) -> set[str]:
    config = parse(doc)
    validation = validate_ir(config)
    step = validation.steps[step_index(config, step_id)]
    assert step.step_id == step_id
    return {hit.rule.id for hit in step.hits}


def _all_rules(doc: Doc) -> set[str]:
    return {hit.rule.id for step in validate_ir(parse(doc)).steps for hit in step.hits}


def test_every_declared_rule_has_a_trigger_case() -> None:
    assert {r.id for r in RULES} == set(TRIGGERS) | set(TIER0_TWINS) | {"UNCLASSIFIED_PLUGIN"}
    assert len({r.id for r in RULES}) == len(RULES)
    assert {r.tier for r in RULES} == {0, 1, 2, 3}


@pytest.mark.parametrize("rule", sorted(TRIGGERS))
def test_each_rule_fires_on_its_trigger_and_not_on_the_base(rule: str) -> None:
    mutate, step_id = TRIGGERS[rule]
    doc = base()
    assert rule not in _all_rules(doc)
    mutate(doc)
    assert rule in _rules_at(doc, step_id)
    tier = next(r.tier for r in RULES if r.id == rule)
    assert validate_ir(parse(doc)).risk_tier >= tier


@pytest.mark.parametrize("rule", sorted(TIER0_TWINS))
def test_tier0_rules_fire_on_local_pure_steps_and_not_on_their_risky_twin(rule: str) -> None:
    step_id, riskier = TIER0_TWINS[rule]
    doc = base()
    assert rule in _rules_at(doc, step_id)
    riskier(doc)
    assert rule not in _rules_at(doc, step_id)


def test_a_pipeline_of_local_files_and_pure_steps_is_tier_0_and_passes() -> None:
    validation = validate_ir(parse(base()))
    assert (validation.risk_tier, validation.outcome) == (0, Outcome.PASS)
    assert not validation.requires_approval and not validation.high_risk_steps
    assert not validation.violations
    assert validation.step_count == len(validation.steps) == 6
    assert all(step.hits for step in validation.steps)  # a reason for every step


def test_tier_1_passes_without_approval() -> None:
    doc = base()
    _sql_sink(doc)
    validation = validate_ir(parse(doc))
    assert (validation.risk_tier, validation.outcome, validation.requires_approval) == \
        (1, Outcome.PASS, False)
    step = validation.steps[step_index(parse(doc), "out")]
    assert (step.action, step.provider, step.risk_tier) == ("sink.sql", "sqlite", 1)


def test_tier_2_escalates_and_names_the_high_risk_steps() -> None:
    doc = base()
    TRIGGERS["EXTERNAL_CALL"][0](doc)
    config = parse(doc)
    validation = validate_ir(config)
    assert (validation.risk_tier, validation.outcome, validation.requires_approval) == \
        (2, Outcome.ESCALATE, True)
    assert validation.violations == ()
    (high,) = validation.high_risk_steps
    assert high == HighRiskStep(step_index(config, "prep"), "transform.call", "http", 2,
                                high.reason)
    assert high.reason.startswith("EXTERNAL_CALL: ") and "api.example" in high.reason


def test_external_pii_with_a_boundary_policy_escalates_instead_of_rejecting() -> None:
    doc = base()
    _external_pii(doc)
    assert validate_ir(parse(doc)).outcome is Outcome.REJECT
    doc["policies"] = ["no_raw_email"]
    validation = validate_ir(parse(doc))
    assert validation.outcome is Outcome.ESCALATE
    assert {h.reason.split(":")[0] for h in validation.high_risk_steps} == \
        {"PII_DECLARED", "EXTERNAL_SINK"}


def test_tier_3_rejects_with_one_violation_per_finding() -> None:
    doc = base()
    TRIGGERS["UNKNOWN_ACTION"][0](doc)
    _external_pii(doc)
    config = parse(doc)
    validation = validate_ir(config)
    assert (validation.risk_tier, validation.outcome, validation.requires_approval) == \
        (3, Outcome.REJECT, False)
    assert [(v.step_index, v.code, v.severity) for v in validation.violations] == [
        (step_index(config, "prep"), "UNKNOWN_ACTION", "ERROR"),
        (step_index(config, "out"), "PII_LEAVES_UNGOVERNED", "ERROR")]
    err = rejection(validation)
    assert isinstance(err, IRRejectedError) and err.code is IR_REJECTED
    assert err.exit_code is ExitCode.INVALID_INPUT and REGISTRY["GP-IR-001"] is IR_REJECTED
    assert "UNKNOWN_ACTION" in err.message and len(err.details["violations"]) == 2


def test_a_builtin_name_shadowed_by_another_class_is_not_trusted(
        probe_package: ProbePackage) -> None:
    doc = base()
    assert "UNCLASSIFIED_PLUGIN" not in _rules_at(doc, "prep")
    probe_package.register({"compute": "ShadowCompute"})
    assert _rules_at(doc, "prep") == {"UNCLASSIFIED_PLUGIN"}
    validation = validate_ir(parse(doc))
    assert validation.outcome is Outcome.ESCALATE
    assert validation.high_risk_steps[0].provider == "gp_ir_probe_plugins"


def test_a_registered_third_party_plugin_escalates_and_an_unregistered_one_rejects(
        probe_package: ProbePackage) -> None:
    doc = base()
    _node0("ir_probe")(doc)
    assert _rules_at(doc, "prep") == {"UNKNOWN_PLUGIN"}
    probe_package.register({"ir_probe": "ProbeA"})
    assert _rules_at(doc, "prep") == {"UNCLASSIFIED_PLUGIN"}
    step = build_ir(parse(doc)).steps[1]
    assert step.implementation == "gp_ir_probe_plugins:ProbeA"


@pytest.mark.parametrize("bad", [
    {"outcome": Outcome.PASS},                 # tier 3 but pass
    {"requires_approval": True},               # reject needing approval
    {"violations": ()},                        # reject without violations
])
def test_an_inconsistent_validation_cannot_be_built(bad: dict[str, Any]) -> None:
    good: dict[str, Any] = {
        "pipeline": "p", "tenant": "t", "ir_hash": "sha256:x", "risk_tier": 3,
        "outcome": Outcome.REJECT, "requires_approval": False, "high_risk_steps": (),
        "violations": (Violation(0, "UNKNOWN_PLUGIN", "m"),), "step_count": 1, "steps": ()}
    Validation(**good)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Validation(**{**good, **bad})  # type: ignore[arg-type]


# --- ir_hash ----------------------------------------------------------------------------------
def test_ir_hash_is_the_canonical_definition_hash() -> None:
    config = parse(base())
    assert ir_hash(config) == f"sha256:{config_hash(config)}"
    assert build_ir(config).ir_hash == validate_ir(config).ir_hash == ir_hash(config)
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", ir_hash(config))


def _reordered(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _reordered(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_reordered(v) for v in value]
    return value


def test_ir_hash_ignores_key_order_whitespace_comments_and_yaml_style(tmp_path: Path) -> None:
    doc = base()
    block = tmp_path / "block.yaml"
    block.write_text("# a comment\n" + yaml.safe_dump(doc, sort_keys=True, indent=4),
                     encoding="utf-8")
    flow = tmp_path / "flow.yaml"
    flow.write_text(yaml.safe_dump(_reordered(doc), sort_keys=False, default_flow_style=True,
                                   width=60), encoding="utf-8")
    as_json = tmp_path / "json.yaml"
    as_json.write_text(json.dumps(_reordered(doc), indent=1), encoding="utf-8")
    assert block.read_text() != flow.read_text()
    hashes = {ir_hash(load_pipeline(p, env={})) for p in (block, flow, as_json)}
    assert hashes == {ir_hash(parse(doc))}


def _set(path: str, value: Any) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        *parents, last = path.split(".")
        target: Any = doc
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        target[int(last) if isinstance(target, list) else last] = value
    return mutate


SEMANTIC_EDITS = {
    "chunk size": _set("chunk_size", 11),
    "tenant": _set("tenant", "t2"),
    "source path": _set("source.options.path", "other.csv"),
    "node option": _set("nodes.0.options.fields.prep", "2"),
    "gate condition": _set("nodes.1.routes.0.when", "amount >= 101"),
    "sink path": _set("sinks.out.options.path", "out2.csv"),
    "sink plugin": _set("sinks.out.plugin", "jsonl"),
    "external flag": _external,
    "pii fields": _pii,
    "boundary policy": _set("policies", ["p1"]),
    "default made explicit then changed": _set("sinks.out.on_reject", "quarantine"),
}


@pytest.mark.parametrize("edit", sorted(SEMANTIC_EDITS))
def test_any_semantic_edit_changes_the_ir_hash(edit: str) -> None:
    doc = base()
    before = ir_hash(parse(doc))
    changed = copy.deepcopy(doc)
    SEMANTIC_EDITS[edit](changed)
    assert ir_hash(parse(changed)) != before
    assert ir_hash(parse(copy.deepcopy(doc))) == before


def test_a_default_written_out_does_not_change_the_ir_hash() -> None:
    doc = base()
    explicit = copy.deepcopy(doc)
    explicit["sinks"]["out"]["external"] = False
    explicit["pii_fields"] = []
    assert ir_hash(parse(explicit)) == ir_hash(parse(doc))


# --- recorded events ----------------------------------------------------------------------------
def _events(landscape: Landscape) -> list[Any]:
    with landscape.engine.connect() as conn:
        return list(conn.execute(select(schema.events).order_by(schema.events.c.event_id)))


CASES = {"pass": lambda d: None, "escalate": TRIGGERS["EXTERNAL_SINK"][0],
         "reject": TRIGGERS["PII_LEAVES_UNGOVERNED"][0]}


@pytest.mark.parametrize("outcome", sorted(CASES))
def test_validation_events_carry_the_seed_payload(outcome: str, landscape: Landscape,
                                                  clock: ManualClock) -> None:
    doc = base()
    CASES[outcome](doc)
    validation = validate_ir(parse(doc))
    assert validation.outcome.value == outcome
    clock.advance(42)
    event = record_validation(landscape, validation, tenant_id="tenant_123",
                              request_id="req_123")
    (row,) = _events(landscape)
    assert row.event_id == event.event_id and row.type == f"ir.validated_{outcome}"
    assert (row.scope, row.tenant_id, row.correlation_id) == \
        (schema.GLOBAL_SCOPE, "tenant_123", "req_123")
    payload = orjson.loads(row.payload_json)
    assert set(payload) == (SEED_ESCALATE_KEYS if outcome == "escalate" else SEED_KEYS)
    assert payload["validated_at"] == to_iso(clock.now()) == row.timestamp
    assert (payload["ir_hash"], payload["risk_tier"], payload["step_count"]) == \
        (validation.ir_hash, validation.risk_tier, validation.step_count)
    assert payload["requires_approval"] is (outcome == "escalate")
    assert payload["violations"] == [v.as_dict() for v in validation.violations]
    if outcome == "reject":
        assert {tuple(sorted(v)) for v in payload["violations"]} == \
            {("code", "message", "severity", "step_index")}
    if outcome == "escalate":
        assert payload["high_risk_steps"] and all(
            set(h) == {"step_index", "action", "provider", "risk_tier", "reason"}
            for h in payload["high_risk_steps"])
    assert verify(landscape).ok


def test_a_validation_recorded_in_a_run_scope_sits_in_that_chain(landscape: Landscape) -> None:
    record_validation(landscape, validate_ir(parse(base())), tenant_id="t1",
                      request_id="req_9", scope="run_ir_probe")
    (row,) = _events(landscape)
    assert row.scope == "run_ir_probe" and row.type == "ir.validated_pass"


# --- governance-pipeline validate ------------------------------------------------------------------
def _validate(home: Path, *args: str | Path, db_url: str | None = None
              ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GOVERNANCE_DB_URL",
                                                              "GOVERNANCE_DEBUG")}
    env["GOVERNANCE_HOME"] = str(home)
    if db_url:
        env["GOVERNANCE_DB_URL"] = db_url
    return subprocess.run([str(CLI), "validate", *map(str, args)], env=env, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=120, cwd=home.parent,
                          check=False)


def _write(tmp_path: Path, doc: Doc, name: str) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def test_validate_reports_tier_outcome_hash_and_a_reason_per_step(tmp_path: Path) -> None:
    home = tmp_path / "home"
    for example in EXAMPLES:
        config = load_pipeline(example, env={"GOVERNANCE_HOME": str(home.resolve())})
        expected = validate_ir(config)
        human = _validate(home, example)
        assert human.returncode == 0, human.stderr
        outcome = expected.outcome.value
        assert f"risk tier {expected.risk_tier} ({outcome}" in human.stdout
        assert f"ir hash {expected.ir_hash}" in human.stdout
        for step in expected.steps:
            assert f"[{step.step_index}] {step.step_id} ({step.action}" in human.stdout
        doc = json.loads(_validate(home, example, "--json").stdout)
        assert (doc["ir_hash"], doc["risk_tier"], doc["outcome"], doc["requires_approval"]) == \
            (expected.ir_hash, expected.risk_tier, outcome, expected.risk_tier >= 2)
        assert [s["reasons"] for s in doc["steps"]] == \
            [s.as_dict()["reasons"] for s in expected.steps]
    assert not (home / "landscape.db").exists()  # validate needs no database


def test_validate_exits_2_on_reject_and_0_on_escalate(tmp_path: Path) -> None:
    home = tmp_path / "home"
    rejected = copy.deepcopy(base())
    _external_pii(rejected)
    path = _write(tmp_path, rejected, "rejected.yaml")
    human = _validate(home, path)
    assert human.returncode == 2
    assert "risk tier 3 (reject" in human.stdout and "PII_LEAVES_UNGOVERNED" in human.stdout
    assert human.stderr.splitlines()[0].startswith("error GP-IR-001: ")
    assert f"fix: {IR_REJECTED.fix}" in human.stderr.splitlines()
    machine = _validate(home, path, "--json")
    assert machine.returncode == 2
    doc = json.loads(machine.stdout)
    assert doc["valid"] is False and doc["outcome"] == "reject"
    assert doc["problem"]["code"] == "GP-IR-001" and doc["problem"]["exit_code"] == 2
    assert [v["code"] for v in doc["violations"]] == ["PII_LEAVES_UNGOVERNED"]

    escalated = copy.deepcopy(base())
    _external(escalated)
    doc = json.loads(_validate(home, _write(tmp_path, escalated, "esc.yaml"), "--json").stdout)
    assert (doc["valid"], doc["outcome"], doc["requires_approval"], doc["risk_tier"]) == \
        (True, "escalate", True, 2)
    assert doc["high_risk_steps"][0]["action"] == "sink.csv"


def test_validate_record_writes_the_event(tmp_path: Path) -> None:
    home = tmp_path / "home"
    db = tmp_path / "audit.db"
    doc = copy.deepcopy(base())
    _external_pii(doc)
    path = _write(tmp_path, doc, "rejected.yaml")
    url = f"sqlite:///{db}"
    assert _validate(home, path, "--record", db_url=url).returncode == 2
    assert _validate(home, _write(tmp_path, base(), "ok.yaml"), "--record", "--json",
                     db_url=url).returncode == 0
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = list(conn.execute(select(schema.events).order_by(schema.events.c.event_id)))
    engine.dispose()
    assert [r.type for r in rows] == ["ir.validated_reject", "ir.validated_pass"]
    assert set(orjson.loads(rows[0].payload_json)) == SEED_KEYS
    assert orjson.loads(rows[1].payload_json)["ir_hash"] == ir_hash(parse(base()))


def test_assess_of_a_prebuilt_ir_equals_validate_ir() -> None:
    config = parse(base())
    assert assess(build_ir(config)) == validate_ir(config)


def test_the_documented_rule_table_is_the_declared_rules() -> None:
    text = (REPO / "docs" / "approvals.md").read_text(encoding="utf-8")
    section = text.split("## Risk tiers and IR validation", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([A-Z0-9_]+)` \| (\d) \| (.+) \|$", section, flags=re.MULTILINE)
    assert {(rule_id, int(tier)) for rule_id, tier, _ in rows} == \
        {(r.id, r.tier) for r in RULES}
    assert len(rows) == len(RULES)
