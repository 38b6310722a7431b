"""The IR↔DAG diff: the graph actually built (plugin instances included) against the IR, and a
Dagster job's load-time manifest against the pipeline as it is at run time. Every detection has
a must-pass twin; a failed diff is recorded, then blocks with GP-IR-002 (exit 5).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from governance_pipeline.contracts.clock import ManualClock, to_iso
from governance_pipeline.contracts.errors import REGISTRY, AuditIntegrityError, ExitCode
from governance_pipeline.engine.config import load_pipeline
from governance_pipeline.engine.context import RunContext
from governance_pipeline.governance.ir.dag import (
    IR_DAG_MISMATCH,
    DagMismatchError,
    build_dag,
    dag_from_context,
    diff,
    diff_against_manifest,
    job_manifest,
    manifest_dag,
)
from governance_pipeline.governance.ir.model import build_ir
from governance_pipeline.governance.ir.record import (
    check_dag,
    check_diff,
    record_dag_diff,
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
Doc = dict[str, Any]


@pytest.fixture
def probe_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ProbePackage:
    return install_probe_package(tmp_path, monkeypatch)

SEED_OK_KEYS = {"tenant_id", "request_id", "ir_hash", "dag_hash", "step_count", "dag_node_count",
                "all_hashes_match", "verified_at"}
SEED_FAILED_KEYS = SEED_OK_KEYS | {"mismatch_details"}


def _dag(doc: Doc, tmp_path: Path) -> Any:
    return build_dag(parse(doc), tmp_path)


def _with_extra_node(doc: Doc) -> Doc:
    """``base`` with one more transform between prep and the gate."""
    changed = copy.deepcopy(doc)
    changed["nodes"][0]["on_success"] = "stamped_in"
    changed["nodes"].insert(1, transform("stamp", "stamped_in", "prepared"))
    return changed


def test_the_dag_built_from_the_validated_definition_matches(tmp_path: Path) -> None:
    for example in EXAMPLES:
        config = load_pipeline(example, env={"GOVERNANCE_HOME": str(tmp_path)})
        result = diff(build_ir(config), build_dag(config, example.parent))
        assert result.all_hashes_match, result.describe()
        assert result.ir_hash == result.dag_hash
        assert result.step_count == result.dag_node_count == len(config.nodes) + \
            len(config.sinks) + 1
        assert result.event_type == "ir.dag_diff_ok"


def test_dag_nodes_name_the_instantiated_class_and_match_ir_steps(tmp_path: Path) -> None:
    config = parse(base())
    graph_ctx = RunContext.build("run_probe", config, tmp_path, ManualClock())
    dag = dag_from_context(graph_ctx.graph, graph_ctx.plugins)
    ir = build_ir(config)
    assert [(n.index, n.id, n.node_hash) for n in dag.nodes] == \
        [(s.index, s.id, s.step_hash) for s in ir.steps]
    by_id = {n.id: n for n in dag.nodes}
    assert by_id["prep"].implementation == \
        f"{type(graph_ctx.plugins.transforms['prep']).__module__}:" \
        f"{type(graph_ctx.plugins.transforms['prep']).__qualname__}"
    assert by_id["route"].implementation is None and by_id["route"].plugin is None
    assert by_id["out"].implementation.endswith(":CsvSink")


def test_a_changed_node_config_is_a_hash_mismatch_at_that_step(tmp_path: Path) -> None:
    doc = base()
    changed = copy.deepcopy(doc)
    changed["nodes"][0]["options"]["fields"]["prep"] = "2"
    ir = build_ir(parse(doc))
    result = diff(ir, _dag(changed, tmp_path))
    assert not result.all_hashes_match and result.event_type == "ir.dag_diff_failed"
    (mismatch,) = result.hash_mismatches
    prep = step_index(parse(doc), "prep")
    assert (mismatch.step_index, mismatch.step_id) == (prep, "prep")
    assert mismatch.ir_step_hash == ir.steps[prep].step_hash != mismatch.dag_node_hash
    assert result.missing_ir_steps == () and result.extra_dag_nodes == ()
    assert diff(ir, _dag(doc, tmp_path)).all_hashes_match  # the twin


def test_a_removed_node_is_a_missing_ir_step(tmp_path: Path) -> None:
    doc = _with_extra_node(base())
    without = base()
    result = diff(build_ir(parse(doc)), _dag(without, tmp_path))
    assert result.missing_ir_steps == (step_index(parse(doc), "stamp"),)
    assert result.missing_ids == ("stamp",) and result.extra_dag_nodes == ()
    # prep now sends to another channel: its own config changed, so it is reported too
    assert [m.step_id for m in result.hash_mismatches] == ["prep"]
    assert (result.step_count, result.dag_node_count) == (7, 6)


def test_an_added_node_is_an_extra_dag_node(tmp_path: Path) -> None:
    doc = base()
    added = _with_extra_node(doc)
    result = diff(build_ir(parse(doc)), _dag(added, tmp_path))
    assert result.extra_dag_nodes == (step_index(parse(added), "stamp"),)
    assert result.extra_ids == ("stamp",) and result.missing_ir_steps == ()
    assert result.mismatch_details()["extra_dag_nodes"] == [step_index(parse(added), "stamp")]


def test_a_pipeline_setting_outside_any_step_still_fails_the_diff(tmp_path: Path) -> None:
    doc = base()
    changed = copy.deepcopy(doc)
    changed["chunk_size"] = 99
    result = diff(build_ir(parse(doc)), _dag(changed, tmp_path))
    assert not result.hash_mismatches and not result.missing_ir_steps
    assert result.ir_hash != result.dag_hash and not result.all_hashes_match


def test_a_plugin_resolving_to_another_class_is_a_hash_mismatch(
        probe_package: ProbePackage, tmp_path: Path) -> None:
    doc = base()
    doc["nodes"][0] = transform("prep", "raw", "prepared", "ir_probe", flag=True)
    probe_package.register({"ir_probe": "ProbeA"})
    ir = build_ir(parse(doc))
    assert ir.steps[1].implementation == "gp_ir_probe_plugins:ProbeA"
    assert diff(ir, _dag(doc, tmp_path)).all_hashes_match  # same class: the twin
    probe_package.register({"ir_probe": "ProbeB"})  # e.g. another package version installed
    result = diff(ir, _dag(doc, tmp_path))
    assert [m.step_id for m in result.hash_mismatches] == ["prep"]
    assert result.ir_hash == result.dag_hash  # same definition, different code
    assert _dag(doc, tmp_path).nodes[1].implementation == "gp_ir_probe_plugins:ProbeB"


# --- the Dagster job's manifest ----------------------------------------------------------------
def test_the_job_manifest_is_json_and_matches_an_unchanged_pipeline() -> None:
    config = parse(base())
    manifest = json.loads(json.dumps(job_manifest(config)))  # e.g. through a Dagster tag
    assert manifest["ir_hash"] == build_ir(config).ir_hash
    assert [s["step_hash"] for s in manifest["steps"]] == \
        [s.step_hash for s in build_ir(config).steps]
    result = diff_against_manifest(config, manifest)
    assert result.all_hashes_match, result.describe()


@pytest.mark.parametrize("edit", ["node option", "added node", "chunk size"])
def test_an_edit_after_the_code_location_loaded_fails_against_the_manifest(edit: str) -> None:
    doc = base()
    manifest = job_manifest(parse(doc))
    if edit == "node option":
        doc["nodes"][0]["options"]["fields"]["prep"] = "3"
    elif edit == "added node":
        doc = _with_extra_node(doc)
    else:
        doc["chunk_size"] = 3
    result = diff_against_manifest(parse(doc), manifest)
    assert not result.all_hashes_match
    assert result.dag_hash == manifest["ir_hash"] != result.ir_hash


@pytest.mark.parametrize("damage", ["version", "no steps", "step without hash", "bad kind"])
def test_a_malformed_manifest_is_refused(damage: str) -> None:
    manifest = job_manifest(parse(base()))
    if damage == "version":
        manifest["manifest_version"] = 99
    elif damage == "no steps":
        del manifest["steps"]
    elif damage == "step without hash":
        del manifest["steps"][0]["step_hash"]
    else:
        manifest["steps"][0]["kind"] = "teleport"
    with pytest.raises(DagMismatchError) as caught:
        manifest_dag(manifest)
    assert caught.value.code is IR_DAG_MISMATCH
    manifest_dag(job_manifest(parse(base())))  # the twin loads


# --- recorded events and the block ---------------------------------------------------------------
def _events(landscape: Landscape) -> list[Any]:
    with landscape.engine.connect() as conn:
        return list(conn.execute(select(schema.events).order_by(schema.events.c.event_id)))


def test_a_matching_dag_is_recorded_ok_and_does_not_block(
        landscape: Landscape, clock: ManualClock, tmp_path: Path) -> None:
    config = parse(base())
    clock.advance(7)
    result = check_dag(landscape, build_ir(config), build_dag(config, tmp_path),
                       tenant_id="tenant_123", request_id="req_123")
    assert result.all_hashes_match
    (row,) = _events(landscape)
    payload = orjson.loads(row.payload_json)
    assert row.type == "ir.dag_diff_ok" and set(payload) == SEED_OK_KEYS
    assert payload["verified_at"] == to_iso(clock.now())
    assert (payload["ir_hash"], payload["dag_hash"], payload["all_hashes_match"]) == \
        (result.ir_hash, result.dag_hash, True)
    assert (payload["step_count"], payload["dag_node_count"]) == (6, 6)
    assert (row.scope, row.tenant_id, row.correlation_id) == \
        (schema.GLOBAL_SCOPE, "tenant_123", "req_123")
    assert verify(landscape).ok


def test_a_failed_diff_is_recorded_then_blocks_with_gp_ir_002(
        landscape: Landscape, tmp_path: Path) -> None:
    doc = base()
    ir = build_ir(parse(doc))
    changed = _with_extra_node(doc)
    changed["nodes"][2]["routes"][0]["when"] = "amount >= 5"
    with pytest.raises(DagMismatchError) as caught:
        check_dag(landscape, ir, _dag(changed, tmp_path), tenant_id="t1", request_id="req_1",
                  scope="run_ir_probe")
    err = caught.value
    assert isinstance(err, AuditIntegrityError) and err.code is IR_DAG_MISMATCH
    assert err.exit_code is ExitCode.INTEGRITY and REGISTRY["GP-IR-002"] is IR_DAG_MISMATCH
    assert "stamp" in err.message and "route" in err.message
    (row,) = _events(landscape)  # recorded before the block
    payload = orjson.loads(row.payload_json)
    assert row.type == "ir.dag_diff_failed" and row.scope == "run_ir_probe"
    assert set(payload) == SEED_FAILED_KEYS and payload["all_hashes_match"] is False
    details = payload["mismatch_details"]
    assert set(details) == {"missing_ir_steps", "extra_dag_nodes", "hash_mismatches"}
    assert details["extra_dag_nodes"] == [step_index(parse(changed), "stamp")]
    assert {tuple(sorted(m)) for m in details["hash_mismatches"]} == \
        {("dag_node_hash", "ir_step_hash", "step_index")}
    assert sorted(m["step_index"] for m in details["hash_mismatches"]) == \
        sorted(step_index(parse(doc), s) for s in ("prep", "route"))
    assert err.details["mismatch_details"] == details


def test_check_diff_against_a_manifest_records_and_blocks(landscape: Landscape) -> None:
    doc = base()
    manifest = job_manifest(parse(doc))
    assert check_diff(landscape, diff_against_manifest(parse(doc), manifest),
                      tenant_id="t1").all_hashes_match
    doc["sinks"]["out"]["options"]["path"] = "elsewhere.csv"
    with pytest.raises(DagMismatchError):
        check_diff(landscape, diff_against_manifest(parse(doc), manifest), tenant_id="t1")
    assert [r.type for r in _events(landscape)] == ["ir.dag_diff_ok", "ir.dag_diff_failed"]


def test_record_dag_diff_generates_a_request_id_when_none_is_given(
        landscape: Landscape, tmp_path: Path) -> None:
    config = parse(base())
    event = record_dag_diff(landscape, diff(build_ir(config), build_dag(config, tmp_path)),
                            tenant_id="t1")
    payload = orjson.loads(event.payload_json)
    assert payload["request_id"].startswith("req_") and event.correlation_id == \
        payload["request_id"]
