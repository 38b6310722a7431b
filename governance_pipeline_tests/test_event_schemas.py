"""Every event the code emits matches the JSON Schema of its type, and every type has one.

Events are produced through the real code paths (a pipeline run by the engine, an abandoned and
resumed run, the orchestration lifecycle's failure/claim/abandon, a policy-free interruption, the
demo's synthetic run) on both backends; then every row of the ``events`` table is validated.
"""

from __future__ import annotations

import ast
import copy
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from governance_pipeline.cli.demo import record_synthetic_run
from governance_pipeline.contracts.clock import ManualClock
from governance_pipeline.contracts.enums import RunStatus, TerminationReason
from governance_pipeline.contracts.events import envelope, make_event
from governance_pipeline.contracts.records import EventRecord
from governance_pipeline.contracts.operator_records import OperatorAction
from governance_pipeline.engine.faults import SITES as CRASH_SITES
from governance_pipeline.engine.resume import mark_abandoned, resume
from governance_pipeline.governance.events.catalog import (
    EVENT_INVALID,
    EVENT_TYPE_UNKNOWN,
    EVENT_TYPES,
    EventSchemaError,
    envelope_schema,
    schema_for,
    validate_event,
)
from governance_pipeline.landscape.queries import get_run
from governance_pipeline.landscape.recorder import Recorder
from governance_pipeline.landscape.schema import events
from governance_pipeline.landscape.store import Landscape
from governance_pipeline.orchestration import lifecycle
from governance_pipeline_tests.event_fixtures import linear_pipeline, run_pipeline, start_run

OPERATOR_ACTIONS = frozenset(a.value for a in OperatorAction)

PACKAGE = Path(__file__).resolve().parents[1] / "governance_pipeline"
SCHEMA_DIR = PACKAGE / "governance" / "events" / "schemas"
EVENT_AREAS = ("run", "ir", "approval", "export", "policy", "incident")
TYPE_SHAPE = re.compile(rf"^({'|'.join(EVENT_AREAS)})\.[a-z][a-z0-9_]*$")


def _all_events(landscape: Landscape) -> list[EventRecord]:
    with landscape.engine.connect() as conn:
        return [EventRecord.from_row(r) for r in
                conn.execute(select(events).order_by(events.c.event_id)).mappings()]


def _produce_events(landscape: Landscape, clock: ManualClock, tmp_path: Path,
                    monkeypatch: pytest.MonkeyPatch) -> None:
    path = linear_pipeline(tmp_path, monkeypatch)
    # a complete run: run.started, run.completed
    assert run_pipeline(landscape, clock, path).status is RunStatus.COMPLETED
    # abandoned by the engine, resumed, completed: run.abandoned, run.resumed
    runner = start_run(landscape, clock, path)
    mark_abandoned(landscape, get_run(landscape, runner.run_id))
    assert resume(landscape, runner.run_id, clock=clock).execute().status is RunStatus.COMPLETED
    # the orchestration lifecycle: failure, claim by a new Dagster run, abandonment
    runner = start_run(landscape, clock, path)
    lifecycle.link_dagster_run(landscape, runner.run_id, "dagster-1", "host:1")
    assert lifecycle.record_failure(landscape, runner.run_id, dagster_run_id="dagster-1",
                                    error={"title": "boom", "detail": "step failed"})
    assert lifecycle.claim(landscape, get_run(landscape, runner.run_id), "dagster-2")
    assert lifecycle.mark_abandoned(landscape, get_run(landscape, runner.run_id))
    # closed by the runner itself: run.interrupted
    start_run(landscape, clock, path).fail(RunStatus.INTERRUPTED, TerminationReason.USER_ABORT,
                                           {"title": "cancelled"})
    # the demo's synthetic run: policy.snapshot_created, run.sink_written
    record_synthetic_run(Recorder(landscape), rows=5)


def test_every_emitted_event_matches_its_schema(landscape: Landscape, clock: ManualClock,
                                                tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    _produce_events(landscape, clock, tmp_path, monkeypatch)
    rows = _all_events(landscape)
    seen = {e.type for e in rows}
    assert {"run.started", "run.completed", "run.abandoned", "run.resumed", "run.failed",
            "run.interrupted", "policy.snapshot_created", "run.sink_written"} <= seen
    problems = []
    for event in rows:
        try:
            validate_event(envelope(event))
        except EventSchemaError as exc:
            problems.append(f"{exc.code.code} {exc.message}")
    assert problems == []


# --- must-reject ------------------------------------------------------------------------------
def _valid() -> dict[str, Any]:
    event = make_event("run.started", scope="run_x", source="engine", tenant_id="acme",
                       payload={"run_id": "run_x", "pipeline": "p", "config_hash": "ab" * 32},
                       timestamp="2026-01-01T00:00:00.000000Z")
    doc = envelope(event)
    validate_event(doc)
    return doc


def _rejects(doc: dict[str, Any], where: str) -> None:
    with pytest.raises(EventSchemaError) as info:
        validate_event(doc)
    assert info.value.code is EVENT_INVALID
    assert info.value.details["path"].startswith(where), info.value.message


@pytest.mark.parametrize("field", ["schema_version", "producer", "source_module", "tenant_id",
                                   "correlation_id"])
def test_rejects_missing_meta_field(field: str) -> None:
    doc = _valid()
    del doc["meta"][field]
    _rejects(doc, "meta")


@pytest.mark.parametrize("field", ["id", "source", "target", "timestamp", "payload", "meta"])
def test_rejects_missing_envelope_field(field: str) -> None:
    doc = _valid()
    del doc[field]
    _rejects(doc, "(envelope)")


def test_rejects_payload_of_another_type() -> None:
    doc = _valid()
    doc["type"] = "run.completed"  # a run.started payload under the run.completed schema
    _rejects(doc, "payload")


def test_rejects_status_that_contradicts_the_type() -> None:
    doc = _valid()
    doc["type"] = "run.failed"
    doc["payload"] = {"run_id": "run_x", "status": "completed", "termination_reason": "completed",
                      "error": None}
    _rejects(doc, "payload/status")


def test_rejects_payload_missing_required_key() -> None:
    doc = _valid()
    del doc["payload"]["config_hash"]
    _rejects(doc, "payload")


def test_rejects_non_rfc3339_timestamp_and_extra_envelope_field() -> None:
    doc = _valid()
    doc["timestamp"] = "2026-01-01 00:00:00"
    _rejects(doc, "timestamp")
    doc = _valid()
    doc["extra"] = 1
    _rejects(doc, "(envelope)")


def test_rejects_ir_payload_with_a_field_the_seed_does_not_define() -> None:
    doc = _valid()
    doc["type"] = "ir.dag_diff_ok"
    doc["payload"] = {"tenant_id": "t", "request_id": "req_1", "ir_hash": "sha256:" + "a" * 64,
                      "dag_hash": "sha256:" + "a" * 64, "step_count": 5, "dag_node_count": 5,
                      "all_hashes_match": True, "verified_at": "2025-12-28T10:30:00Z"}
    validate_event(doc)
    doc["payload"]["surprise"] = 1
    _rejects(doc, "payload")
    doc["payload"].pop("surprise")
    doc["payload"]["all_hashes_match"] = False  # an ok diff that does not match is not ok
    _rejects(doc, "payload/all_hashes_match")


def test_unknown_type_is_its_own_error() -> None:
    doc = _valid()
    doc["type"] = "run.teleported"
    with pytest.raises(EventSchemaError) as info:
        validate_event(doc)
    assert info.value.code is EVENT_TYPE_UNKNOWN


# --- the catalogue itself -----------------------------------------------------------------------
def test_schema_files_are_one_per_type_and_require_the_envelope() -> None:
    files = {p.stem for p in SCHEMA_DIR.glob("*.json")}
    assert files - {"envelope"} == set(EVENT_TYPES)
    assert set(envelope_schema()["required"]) == {"id", "type", "source", "target", "timestamp",
                                                   "payload", "meta"}
    for event_type in EVENT_TYPES:
        schema = schema_for(event_type)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert {"$ref": "envelope.json"} in schema["allOf"], event_type
        assert schema["properties"]["type"] == {"const": event_type}


def test_ir_payloads_carry_the_seeds_fields_and_declare_every_addition() -> None:
    seed = {  # field names of seed 004 (IR governance event specifications)
        "ir.approval_created": {"approval_id", "tenant_id", "ir_hash", "ttl_seconds", "expires_at",
                                "created_by", "created_at"},
        "ir.approval_consumed": {"approval_id", "tenant_id", "ir_hash", "consumed_by",
                                 "consumed_at", "time_to_consume_seconds", "was_expired"},
        "ir.approval_expired": {"approval_id", "tenant_id", "ir_hash", "expired_at", "created_at",
                                "ttl_seconds", "was_consumed"},
        "ir.approval_invalid": {"tenant_id", "ir_hash", "reason", "attempted_by", "attempted_at",
                                "approval_id"},
        "ir.validated_pass": {"tenant_id", "request_id", "ir_hash", "risk_tier",
                              "requires_approval", "violations", "validated_at", "step_count"},
        "ir.validated_escalate": {"tenant_id", "request_id", "ir_hash", "risk_tier",
                                  "requires_approval", "violations", "high_risk_steps",
                                  "validated_at", "step_count"},
        "ir.validated_reject": {"tenant_id", "request_id", "ir_hash", "risk_tier",
                                "requires_approval", "violations", "validated_at", "step_count"},
        "ir.dag_diff_ok": {"tenant_id", "request_id", "ir_hash", "dag_hash", "step_count",
                           "dag_node_count", "all_hashes_match", "verified_at"},
        "ir.dag_diff_failed": {"tenant_id", "request_id", "ir_hash", "dag_hash", "step_count",
                               "dag_node_count", "all_hashes_match", "mismatch_details",
                               "verified_at"},
    }
    for event_type, fields in seed.items():
        payload = schema_for(event_type)["properties"]["payload"]
        # Every field of the seed, required; nothing undeclared; an addition is optional and
        # says what it is (consumers written against the seed keep working).
        assert set(payload["required"]) == fields, event_type
        assert payload["additionalProperties"] is False, event_type
        for extra in set(payload["properties"]) - fields:
            assert payload["properties"][extra].get("description"), (event_type, extra)


def test_seed_example_of_dag_diff_failed_validates() -> None:
    doc = copy.deepcopy(_valid())
    doc["type"] = "ir.dag_diff_failed"
    doc["payload"] = {
        "tenant_id": "tenant_123", "request_id": "req_123", "ir_hash": "sha256:" + "a" * 64,
        "dag_hash": "sha256:" + "b" * 64, "step_count": 5, "dag_node_count": 6,
        "all_hashes_match": False,
        "mismatch_details": {"missing_ir_steps": [], "extra_dag_nodes": [3], "hash_mismatches": [
            {"step_index": 1, "ir_step_hash": "sha256:" + "c" * 64,
             "dag_node_hash": "sha256:" + "d" * 64}]},
        "verified_at": "2025-12-28T10:30:00Z"}
    validate_event(doc)


# --- every event type in the code has a schema ----------------------------------------------------
def _types_in_code() -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Event-type literals and f-string prefixes in the package, with where they occur.

    A literal counts if it is shaped like ``<area>.<name>`` for an event area; crash-point sites
    (``engine.faults.SITES``, e.g. ``run.before_close``) and operator-log actions
    (``OperatorAction``, e.g. ``run.start``) are not events. The events package
    itself (which maps types, e.g. for OpenLineage) is not a producer.
    """
    literals: dict[str, list[str]] = {}
    prefixes: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if SCHEMA_DIR.parent in path.parents:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        in_fstring = {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr)
                      for v in n.values}
        for node in ast.walk(tree):
            where = f"{path.relative_to(PACKAGE.parent)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and id(node) not in in_fstring and node.value not in CRASH_SITES \
                    and node.value not in OPERATOR_ACTIONS \
                    and TYPE_SHAPE.match(node.value):
                literals.setdefault(node.value, []).append(where)
            elif isinstance(node, ast.JoinedStr) and node.values \
                    and isinstance(node.values[0], ast.Constant):
                head = str(node.values[0].value)
                if re.match(rf"^({'|'.join(EVENT_AREAS)})\.[a-z0-9_]*$", head):
                    prefixes.setdefault(head, []).append(where)
    return literals, prefixes


def test_every_event_type_in_the_code_has_a_schema() -> None:
    literals, prefixes = _types_in_code()
    assert "run.started" in literals and "run." in prefixes  # the scan sees the engine's events
    missing = {t: places for t, places in literals.items() if t not in EVENT_TYPES}
    assert not missing, (
        "event types emitted in the code without a JSON Schema (add "
        "governance_pipeline/governance/events/schemas/<type>.json and document it in "
        f"docs/events.md): {missing}")
    unmatched = {p: places for p, places in prefixes.items()
                 if not any(t.startswith(p) for t in EVENT_TYPES)}
    assert not unmatched, f"event types built with f-strings match no schema: {unmatched}"


def test_every_run_status_a_run_can_end_in_has_a_schema() -> None:
    # runner.close_in and lifecycle.record_failure emit f"run.{status.value}"
    missing = [s.value for s in RunStatus
               if s is not RunStatus.RUNNING and f"run.{s.value}" not in EVENT_TYPES]
    assert missing == []


def test_the_scan_would_report_a_type_without_schema(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    module = PACKAGE / "governance" / "zz_scan_probe.py"
    monkeypatch.setattr(Path, "rglob", lambda self, pattern: iter([module]))
    module_text = 'EVENT = "approval.teleported"\nTYPE = f"incident.{1}"\n'
    monkeypatch.setattr(Path, "read_text", lambda self, encoding=None: module_text)
    literals, prefixes = _types_in_code()
    assert set(literals) == {"approval.teleported"} and "approval.teleported" not in EVENT_TYPES
    assert set(prefixes) == {"incident."}
