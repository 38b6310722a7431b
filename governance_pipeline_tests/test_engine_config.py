"""Pipeline definitions: every invalid one is refused before a run starts, with the field path,
the problem and a fix; ``governance-pipeline validate`` exits 2 with the same message (an RFC 9457
document under ``--json``) and 0 for the shipped examples.

Each refusal has a must-pass twin: the valid base pipeline, or the same construct written
correctly, loads and builds.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
import yaml

from governance_pipeline.contracts.clock import ManualClock
from governance_pipeline.contracts.errors import REGISTRY, ConfigError, ExitCode, GovernanceError
from governance_pipeline.engine.config import PipelineConfig, load_pipeline, parse_pipeline
from governance_pipeline.engine.context import RunContext
from governance_pipeline.governance.policy.runtime import preview_policy
from governance_pipeline.engine.runner import config_hash

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "examples" / "pipelines").glob("*.yaml"))
CLI = Path(sys.executable).with_name("governance-pipeline")

Doc = dict[str, Any]


def _t(node_id: str, source: str, target: str, **extra: Any) -> Doc:
    """A compute transform node: adds the field ``<node_id>`` and sends rows on."""
    return {"id": node_id, "kind": "transform", "plugin": "compute", "input": source,
            "options": {"fields": {node_id: "1"}}, "on_success": target, **extra}


def base() -> Doc:
    """A valid pipeline with every node kind: transform, gate + fork, coalesce, aggregation."""
    return {
        "name": "config_probe",
        "tenant": "t1",
        "chunk_size": 10,
        "source": {"plugin": "csv", "options": {"path": "in.csv"},
                   "schema": {"fields": {"id": {"type": "int"}, "amount": {"type": "float"}}},
                   "on_success": "raw", "on_invalid": "quarantine"},
        "nodes": [
            _t("prep", "raw", "prepared", on_error="errors"),                     # nodes[0]
            {"id": "route", "kind": "gate", "input": "prepared",                  # nodes[1]
             "routes": [{"when": "amount < 0", "to": "errors"},
                        {"when": "amount >= 100", "fork": ["left_in", "right_in"]}],
             "default": "out"},
            _t("left", "left_in", "left_done"),                                   # nodes[2]
            _t("right", "right_in", "right_done"),                                # nodes[3]
            {"id": "join", "kind": "coalesce", "branches": ["left_done", "right_done"],  # [4]
             "policy": "require_all", "merge": "union", "on_success": "joined"},
            {"id": "batch", "kind": "aggregation", "input": "joined",             # nodes[5]
             "trigger": {"count": 5, "condition": "amount > 1000"},
             "output": "transform",
             "function": {"plugin": "summarize", "options": {"aggregates": {"n": "count"}}},
             "on_success": "summary"},
        ],
        "sinks": {
            "out": {"plugin": "csv", "options": {"path": "out.csv"}, "on_reject": "errors"},
            "summary": {"plugin": "csv", "options": {"path": "summary.csv"}},
            "errors": {"plugin": "jsonl", "options": {"path": "errors.jsonl"}},
            "quarantine": {"plugin": "jsonl", "options": {"path": "quarantine.jsonl"}},
        },
    }


def build(doc: Doc, base_dir: Path = Path(".")) -> RunContext:
    """What ``validate`` checks: schema, wiring, plugins and their options, expressions."""
    return RunContext.build("run_probe", parse_pipeline(doc), base_dir, ManualClock())


def refused(doc: Doc) -> GovernanceError:
    with pytest.raises(GovernanceError) as info:
        build(doc)
    err = info.value
    assert isinstance(err, ConfigError), f"{type(err).__name__} is not a configuration error"
    assert err.exit_code is ExitCode.INVALID_INPUT
    problem = err.problem()
    assert problem["fix"] == err.code.fix and len(problem["fix"]) > 20
    assert problem["exit_code"] == 2 and problem["detail"] == err.message
    return err


def test_the_base_pipeline_is_valid_and_wires_every_kind_of_node() -> None:
    ctx = build(base())
    assert [n.id for n in ctx.graph.order] == ["prep", "route", "left", "right", "join", "batch"]
    assert ctx.graph.consumer == {"raw": "prep", "prepared": "route", "left_in": "left",
                                  "right_in": "right", "left_done": "join",
                                  "right_done": "join", "joined": "batch"}
    assert ctx.graph.fork_of == {"join": "route"}


# --- schema errors: GP-CONFIG-001 with the field path --------------------------------------------
Mutation = Callable[[Doc], None]


def _set(path: str, value: Any) -> Mutation:
    def mutate(doc: Doc) -> None:
        *parents, last = path.split(".")
        target: Any = doc
        for key in parents:
            target = target[int(key)] if key.isdigit() else target[key]
        target[int(last) if last.isdigit() else last] = value
    return mutate


def _drop(path: str) -> Mutation:
    def mutate(doc: Doc) -> None:
        *parents, last = path.split(".")
        target: Any = doc
        for key in parents:
            target = target[int(key)] if key.isdigit() else target[key]
        del target[last]
    return mutate


SCHEMA_CASES: dict[str, tuple[Mutation, str, str]] = {
    # case: (mutation, field path in the message, the problem in the message)
    "unknown top-level key": (_set("colour", "blue"), "colour", "Extra inputs are not permitted"),
    "unknown node key": (_set("nodes.2.colour", 1), "nodes[2].colour", "Extra inputs"),
    "unknown source key": (_set("source.format", "csv"), "source.format", "Extra inputs"),
    "unknown trigger key": (_set("nodes.5.trigger.every", 3), "nodes[5].trigger.every",
                            "Extra inputs"),
    "missing source": (_drop("source"), "source", "Field required"),
    "missing node input": (_drop("nodes.0.input"), "nodes[0].input", "Field required"),
    "no sinks": (_set("sinks", {}), "sinks", "at least 1 item"),
    "bad node id": (_set("nodes.0.id", "1 prep!"), "nodes[0].id", "should match pattern"),
    "bad channel name": (_set("nodes.0.on_success", "pre pared"), "nodes[0].on_success",
                         "should match pattern"),
    "bad sink name": (_set("sinks.bad name!", {"plugin": "csv", "options": {"path": "x"}}),
                      "sinks.bad name!", "should match pattern"),
    "unknown node kind": (_set("nodes.0.kind", "mapper"), "nodes[0]", "does not match any"),
    "route with to and fork": (_set("nodes.1.routes.1.to", "out"), "nodes[1].routes[1]",
                               "exactly one of 'to'"),
    "route with neither": (_drop("nodes.1.routes.0.to"), "nodes[1].routes[0]",
                           "exactly one of 'to'"),
    "fork of one branch": (_set("nodes.1.routes.1.fork", ["left_in"]), "nodes[1].routes[1]",
                           "at least two branches"),
    "fork naming a branch twice": (_set("nodes.1.routes.1.fork", ["left_in", "left_in"]),
                                   "nodes[1].routes[1]", "distinct"),
    "gate without routes": (_set("nodes.1.routes", []), "nodes[1].routes", "at least 1 item"),
    "quorum without quorum": (_set("nodes.4.policy", "quorum"), "nodes[4]",
                              "policy 'quorum' needs 'quorum'"),
    "unknown coalesce policy": (_set("nodes.4.policy", "majority"), "nodes[4].policy",
                                "Input should be"),
    "best_effort without timeout": (_set("nodes.4.policy", "best_effort"), "nodes[4]",
                                    "needs 'timeout_seconds'"),
    "negative timeout": (_set("nodes.4.timeout_seconds", -1), "nodes[4].timeout_seconds",
                         "greater than 0"),
    "select without branch": (_set("nodes.4.merge", "select"), "nodes[4]",
                              "merge 'select' needs 'select_branch'"),
    "coalesce of one branch": (_set("nodes.4.branches", ["left_done"]), "nodes[4].branches",
                               "at least 2 items"),
    "aggregation transform without function": (_drop("nodes.5.function"), "nodes[5]",
                                               "output 'transform' needs a 'function'"),
    "end_of_source switched off": (_set("nodes.5.trigger.end_of_source", False), "nodes[5]",
                                   "end_of_source cannot be false"),
    "zero count trigger": (_set("nodes.5.trigger.count", 0), "nodes[5].trigger.count",
                           "greater than or equal to 1"),
    "chunk size zero": (_set("chunk_size", 0), "chunk_size", "greater than or equal to 1"),
    "chunk size as text": (_set("chunk_size", "many"), "chunk_size", "valid integer"),
    "duplicate node ids": (_set("nodes.3.id", "left"), "nodes", "node id 'left' is used twice"),
    "bad schema type": (_set("source.schema.fields.id.type", "integer"),
                        "source.schema.fields.id.type", "Input should be"),
}


@pytest.mark.parametrize("case", sorted(SCHEMA_CASES))
def test_schema_errors_name_the_field_path_and_the_problem(case: str) -> None:
    mutate, path, problem = SCHEMA_CASES[case]
    doc = base()
    mutate(doc)
    err = refused(doc)
    assert err.code.code == "GP-CONFIG-001"
    assert f"{path}: " in err.message, err.message
    assert problem in err.message, err.message
    listed = err.details["problems"]
    assert any(p["path"] == path and problem in p["problem"] for p in listed), listed


def test_every_problem_of_a_file_is_listed_not_only_the_first() -> None:
    doc = base()
    doc["colour"] = "blue"
    doc["nodes"][0]["id"] = "1 bad"
    doc["nodes"][4]["policy"] = "quorum"
    err = refused(doc)
    paths = [p["path"] for p in err.details["problems"]]
    assert {"colour", "nodes[0].id", "nodes[4]"} <= set(paths)
    assert err.message.count("; ") >= 2 and "3 problem(s)" in err.message


def test_the_constructs_refused_above_are_accepted_when_written_correctly() -> None:
    doc = base()
    doc["nodes"][4].update(policy="quorum", quorum=2)
    build(doc)
    doc["nodes"][4].update(policy="best_effort", timeout_seconds=0.5, merge="select",
                           select_branch="right_done")
    build(doc)
    doc["nodes"][5].update(output="passthrough")
    del doc["nodes"][5]["function"]
    build(doc)
    doc["nodes"][5]["trigger"] = {"timeout_seconds": 2.5}
    build(doc)


# --- plugins: unknown names (GP-CONFIG-010) and bad options ---------------------------------------
def _available(group: str) -> str:
    return ", ".join(sorted(ep.name for ep in entry_points(group=group)))


@pytest.mark.parametrize(("where", "mutate", "group"), [
    ("source.plugin", _set("source.plugin", "excel"), "governance_pipeline.sources"),
    ("nodes[0].plugin", _set("nodes.0.plugin", "mapper"), "governance_pipeline.transforms"),
    ("nodes[5].function.plugin", _set("nodes.5.function.plugin", "median"),
     "governance_pipeline.batch_functions"),
    ("sinks.out.plugin", _set("sinks.out.plugin", "excel"), "governance_pipeline.sinks"),
])
def test_an_unknown_plugin_is_named_with_the_plugins_available(
        where: str, mutate: Mutation, group: str) -> None:
    doc = base()
    mutate(doc)
    err = refused(doc)
    assert err.code.code == "GP-CONFIG-010"
    assert err.message.startswith(f"{where}: unknown ")
    known = _available(group)
    assert known and f"(available: {known})" in err.message
    assert err.details["group"] == group


@pytest.mark.parametrize(("mutate", "code", "fragments"), [
    (_set("nodes.0.options", {"fieldz": {"a": "1"}}), "GP-TRANSFORM-001",
     ["nodes[0]: compute: ", "options.fieldz: unknown option", "options.fields: field required"]),
    (_set("nodes.3.options.fields", {}), "GP-TRANSFORM-001",
     ["nodes[3]: compute: options.fields: "]),
    (_set("nodes.5.function.options.aggregates", {"n": "median:amount"}), "GP-TRANSFORM-001",
     ["nodes[5].function: summarize: options.aggregates.n: ", "unknown aggregate"]),
    (_set("sinks.summary.options", {"path": "s.csv", "colour": "red"}), "GP-SINK-001",
     ["sink 'summary' (csv): options.colour: "]),
    (_set("source.options", {"pathname": "in.csv"}), "GP-SOURCE-001",
     ["source csv: ", "options.path: field required", "options.pathname: unknown option"]),
])
def test_a_bad_plugin_option_names_its_node_and_option_path(
        mutate: Mutation, code: str, fragments: list[str]) -> None:
    doc = base()
    mutate(doc)
    err = refused(doc)
    assert err.code.code == code
    for fragment in fragments:
        assert fragment in err.message, err.message


# --- expressions: syntax errors with their position -----------------------------------------------
@pytest.mark.parametrize(("mutate", "where", "position"), [
    (_set("nodes.1.routes.1.when", "amount >=  >= 100"), "nodes[1].routes[1].when", "1:12"),
    (_set("nodes.1.routes.0.when", "__import__('os')"), "nodes[1].routes[0].when", "1:1"),
    (_set("nodes.5.trigger.condition", "amount >> 2"), "nodes[5].trigger.condition", "1:8"),
    (_set("nodes.0.options.fields", {"prep": "upper(name"}), "nodes[0]: compute: "
     "options.fields.prep", "1:"),
])
def test_an_expression_error_is_reported_at_validate_time_with_its_position(
        mutate: Mutation, where: str, position: str) -> None:
    doc = base()
    mutate(doc)
    err = refused(doc)
    assert err.code.code == "GP-EXPR-001"
    assert err.message.startswith(f"{where}: expression error at {position}"), err.message
    assert "^" in err.message.splitlines()[-1]  # the caret under the offending place


def test_aggregation_conditions_may_use_the_batch_variables_but_gates_may_not() -> None:
    doc = base()
    doc["nodes"][5]["trigger"]["condition"] = "batch_count >= 3 or batch_age_seconds > 60"
    build(doc)
    assert {"batch_count", "batch_age_seconds"} <= build(doc).plugins.conditions["batch"].variables
    doc["nodes"][1]["routes"][0]["when"] = "batch_count >= 3"
    gate_expr = build(doc).plugins.gate_routes["route"][0]
    assert gate_expr.fields == {"batch_count"}  # a row field for a gate, not a batch variable


# --- wiring: GP-CONFIG-011 ----------------------------------------------------------------------
def _add(*nodes: Doc) -> Mutation:
    return lambda doc: doc["nodes"].extend(copy.deepcopy(list(nodes)))


def _replace_nodes(*nodes: Doc) -> Mutation:
    return lambda doc: doc.__setitem__("nodes", copy.deepcopy(list(nodes)))


FORK = {"id": "split", "kind": "gate", "input": "raw",
        "routes": [{"when": "amount > 1", "fork": ["a_in", "b_in"]},
                   {"when": "amount > 0", "fork": ["c_in", "d_in"]}],
        "default": "out"}

WIRING_CASES: dict[str, tuple[Mutation, str, str]] = {
    "unknown target": (_set("nodes.2.on_success", "nowhere"), "nodes[2].on_success",
                       "'nowhere' is neither a sink nor a channel consumed by a node"),
    "unknown route target": (_set("nodes.1.routes.0.to", "nowhere"), "nodes[1].route[0]",
                             "'nowhere' is neither a sink nor a channel"),
    "unknown default": (_set("nodes.1.default", "nowhere"), "nodes[1].default",
                        "'nowhere' is neither a sink nor a channel"),
    "source target unknown": (_set("source.on_success", "nowhere"), "source.on_success",
                              "'nowhere' is neither"),
    "channel without consumer": (_set("nodes.3.on_success", "dangling"), "nodes[3].on_success",
                                 "'dangling' is neither a sink nor a channel consumed"),
    "channel without producer": (_add(_t("extra", "ghost", "out")), "nodes[6]",
                                 "channel 'ghost' is consumed by 'extra' but nothing sends to it"),
    "two consumers": (_add(_t("extra", "prepared", "out")), "nodes[6]",
                      "channel 'prepared' is consumed by both 'route' and 'extra'"),
    "input is a sink": (_set("nodes.0.input", "out"), "nodes[0]",
                        "input 'out' is a sink, not a channel"),
    "discard as success target": (_set("nodes.0.on_success", "discard"), "nodes[0].on_success",
                                  "'discard' is only allowed for on_error / on_invalid"),
    "on_error to a channel": (_set("nodes.0.on_error", "left_in"), "nodes[0].on_error",
                              "'left_in' is not a sink"),
    "on_invalid to a channel": (_set("source.on_invalid", "raw"), "source.on_invalid",
                                "'raw' is not a sink"),
    "on_reject to itself": (_set("sinks.out.on_reject", "out"), "sinks.out.on_reject",
                            "must be another sink"),
    "on_reject unknown": (_set("sinks.out.on_reject", "nowhere"), "sinks.out.on_reject",
                          "must be another sink"),
    "node named like a sink": (_set("nodes.2.id", "out"), "nodes[2].id",
                               "'out' is also a sink name or reserved"),
    "node named source": (_set("nodes.2.id", "source"), "nodes[2].id", "reserved ('source')"),
    "cycle": (_replace_nodes(_t("a", "raw", "out"), _t("b", "c1", "c2"), _t("c", "c2", "c1")),
              "nodes", "the wiring has a cycle through b, c"),
    "unreachable island": (_replace_nodes(
        _t("a", "raw", "out"),
        {"id": "b", "kind": "gate", "input": "c1", "routes": [{"when": "true", "to": "out"}],
         "default": "c2"},
        _t("c", "c2", "c1")), "nodes", "cycle through b, c"),
    "coalesce of branches from different gates": (_replace_nodes(
        {**FORK, "routes": FORK["routes"][:1], "default": "rest"},
        {"id": "split2", "kind": "gate", "input": "rest",
         "routes": [{"when": "amount > 0", "fork": ["c_in", "d_in"]}], "default": "out"},
        _t("a", "a_in", "a_done"), _t("b", "b_in", "out"),
        _t("c", "c_in", "c_done"), _t("d", "d_in", "out"),
        {"id": "join", "kind": "coalesce", "branches": ["a_done", "c_done"], "on_success": "out"},
    ), "nodes[6].branches",
        "coalesce 'join': branches come from different forks (split.routes[0], split2.routes[0])"),
    "coalesce of two fork routes of one gate": (_replace_nodes(
        FORK, _t("a", "a_in", "a_done"), _t("b", "b_in", "out"),
        _t("c", "c_in", "c_done"), _t("d", "d_in", "out"),
        {"id": "join", "kind": "coalesce", "branches": ["a_done", "c_done"], "on_success": "out"},
    ), "nodes[5].branches", "branches come from different forks (split.routes[0], "
                            "split.routes[1])"),
    "coalesce of branches that were never forked": (_replace_nodes(
        {"id": "split", "kind": "gate", "input": "raw",
         "routes": [{"when": "amount > 1", "to": "a_in"}], "default": "b_in"},
        _t("a", "a_in", "a_done"), _t("b", "b_in", "b_done"),
        {"id": "join", "kind": "coalesce", "branches": ["a_done", "b_done"], "on_success": "out"},
    ), "nodes[3].branches", "branch 'a_done' does not come from a fork"),
    "aggregation inside a fork before a coalesce": (_replace_nodes(
        {**FORK, "routes": FORK["routes"][:1]},
        {"id": "agg", "kind": "aggregation", "input": "a_in", "trigger": {"count": 2},
         "on_success": "a_done"},
        _t("b", "b_in", "b_done"),
        {"id": "join", "kind": "coalesce", "branches": ["a_done", "b_done"], "on_success": "out"},
    ), "nodes[3].branches", "branch 'a_done' passes aggregation 'agg': batching inside a fork"),
}


@pytest.mark.parametrize("case", sorted(WIRING_CASES))
def test_wiring_errors_name_the_place_and_the_problem(case: str) -> None:
    mutate, path, problem = WIRING_CASES[case]
    doc = base()
    mutate(doc)
    err = refused(doc)
    assert err.code.code in ("GP-CONFIG-011", "GP-CONFIG-001"), err.message
    assert err.message.startswith(f"{path}: ") or f"{path}: " in err.message, err.message
    assert problem in err.message, err.message
    if err.code.code == "GP-CONFIG-011":
        assert err.details["path"] == path
        assert "docs/pipelines.md#wiring" in err.code.fix


def test_wiring_that_is_close_to_the_refused_cases_is_accepted() -> None:
    # A gate inside a fork branch is fine; so is an aggregation in a branch that ends in a sink.
    doc = base()
    doc["nodes"] = [
        {**FORK, "routes": FORK["routes"][:1]},
        {"id": "inner", "kind": "gate", "input": "a_in", "routes": [{"when": "id > 3",
                                                                     "to": "out"}],
         "default": "a_mid"},
        _t("a", "a_mid", "a_done"), _t("b", "b_in", "b_done"),
        {"id": "join", "kind": "coalesce", "branches": ["a_done", "b_done"], "on_success": "out"},
    ]
    ctx = build(doc)
    assert ctx.graph.fork_of == {"join": "split"}
    doc["nodes"] = [
        {**FORK, "routes": FORK["routes"][:1]},
        {"id": "agg", "kind": "aggregation", "input": "a_in", "trigger": {"count": 2},
         "on_success": "out"},
        _t("b", "b_in", "out"),
    ]
    assert [n.id for n in build(doc).graph.order] == ["split", "agg", "b"]


# --- interpolation and files ----------------------------------------------------------------------
def _write(tmp_path: Path, doc: Doc | str, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False))
    return path


def test_variables_are_interpolated_in_values_with_defaults(tmp_path: Path) -> None:
    doc = base()
    doc["sinks"]["out"]["options"]["path"] = "${OUT_DIR}/out.csv"
    doc["sinks"]["summary"]["options"]["path"] = "${SUMMARY_DIR:-fallback}/s.csv"
    doc["tenant"] = "${TENANT}"
    path = _write(tmp_path, doc)
    config = load_pipeline(path, env={"OUT_DIR": "/data/out", "TENANT": "acme"})
    assert config.sinks["out"].options["path"] == "/data/out/out.csv"
    assert config.sinks["summary"].options["path"] == "fallback/s.csv"
    assert config.tenant == "acme"
    other = load_pipeline(path, env={"OUT_DIR": "/elsewhere", "TENANT": "acme"})
    assert config_hash(other) != config_hash(config)  # the hash covers the resolved values


def test_an_unset_variable_names_the_field_and_the_variable(tmp_path: Path) -> None:
    doc = base()
    doc["sinks"]["out"]["options"]["path"] = "${OUT_DIR}/out.csv"
    with pytest.raises(ConfigError) as info:
        load_pipeline(_write(tmp_path, doc), env={})
    assert info.value.message == "sinks.out.options.path: environment variable OUT_DIR is not set"
    assert info.value.details == {"path": "sinks.out.options.path", "variable": "OUT_DIR"}


def test_files_that_are_not_pipelines_are_refused_with_where(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_pipeline(_write(tmp_path, "name: x\nsource: [unclosed\n"))
    assert "not valid YAML at line 3, column 1" in info.value.message
    with pytest.raises(ConfigError) as info:
        load_pipeline(_write(tmp_path, "- just\n- a list\n"))
    assert "a pipeline file is a YAML mapping" in info.value.message
    with pytest.raises(ConfigError) as info:
        load_pipeline(tmp_path / "missing.yaml")
    assert "cannot read pipeline file" in info.value.message


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_the_shipped_examples_load_and_build(example: Path) -> None:
    config = load_pipeline(example, env={"GOVERNANCE_HOME": "/tmp/gp-home"})
    assert isinstance(config, PipelineConfig)
    ctx = RunContext.build("run_probe", config, example.parent, ManualClock(),
                           policy=preview_policy(config, example.parent, env={}))
    assert ctx.graph.order and set(ctx.plugins.sinks) == set(config.sinks)


def test_a_pipeline_with_policies_needs_its_snapshot_to_build() -> None:
    """Without a policy hook, a pipeline that attaches policies must not run unenforced."""
    example = next(p for p in EXAMPLES if p.stem == "claims_screening")
    config = load_pipeline(example, env={"GOVERNANCE_HOME": "/tmp/gp-home"})
    with pytest.raises(ConfigError, match="no policy snapshot"):
        RunContext.build("run_probe", config, example.parent, ManualClock())


# --- governance-pipeline validate -----------------------------------------------------------------
def validate(home: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GOVERNANCE_DB_URL",
                                                              "GOVERNANCE_DEBUG")}
    env["GOVERNANCE_HOME"] = str(home)
    return subprocess.run([str(CLI), "validate", *map(str, args)], env=env, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=120, cwd=home.parent)


def test_validate_accepts_the_shipped_examples(tmp_path: Path) -> None:
    home = tmp_path / "home"
    for example in EXAMPLES:
        human = validate(home, example)
        assert human.returncode == 0, human.stderr + human.stdout
        assert "valid pipeline" in human.stdout
        doc = json.loads(validate(home, example, "--json").stdout)
        config = load_pipeline(example, env={"GOVERNANCE_HOME": str(home.resolve())})
        assert doc["valid"] is True and doc["pipeline"] == config.name
        assert doc["config_hash"] == config_hash(config)
        assert [n["id"] for n in doc["nodes"]] == [n.id for n in config.nodes]
    assert len(EXAMPLES) >= 2


CLI_CASES = {
    # file name: (mutation, code, text the message must contain)
    "extra_key": (_set("nodes.2.colour", 1), "GP-CONFIG-001",
                  "nodes[2].colour: Extra inputs are not permitted"),
    "quorum": (_set("nodes.4.policy", "quorum"), "GP-CONFIG-001",
               "nodes[4]: Value error, policy 'quorum' needs 'quorum'"),
    "plugin": (_set("nodes.0.plugin", "mapper"), "GP-CONFIG-010",
               "nodes[0].plugin: unknown transform plugin 'mapper' (available: "),
    "expression": (_set("nodes.1.routes.1.when", "amount >=  >= 100"), "GP-EXPR-001",
                   "nodes[1].routes[1].when: expression error at 1:12"),
    "backreference": (_set("nodes.1.routes.1.when", "matches(str(amount), '(1)\\\\1')"),
                      "GP-EXPR-003", "nodes[1].routes[1].when: expression error at 1:22: "
                      "matches(): invalid escape sequence: \\1"),
    "wiring": (WIRING_CASES["two consumers"][0], "GP-CONFIG-011",
               "nodes[6]: channel 'prepared' is consumed by both 'route' and 'extra'"),
}


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_validate_exits_2_with_the_code_message_and_fix(case: str, tmp_path: Path) -> None:
    mutate, code, text = CLI_CASES[case]
    doc = base()
    mutate(doc)
    path = _write(tmp_path, doc, f"{case}.yaml")
    home = tmp_path / "home"
    human = validate(home, path)
    assert human.returncode == 2, human.stderr + human.stdout
    assert human.stdout == ""
    lines = human.stderr.splitlines()
    assert lines[0].startswith(f"error {code}: ") and text in human.stderr, human.stderr
    assert f"fix: {REGISTRY[code].fix}" in lines
    machine = validate(home, path, "--json")
    assert machine.returncode == 2
    problem = json.loads(machine.stdout)  # stdout is exactly one JSON document
    assert problem["type"] == f"urn:governance-pipeline:error:{code}"
    assert problem["code"] == code and problem["title"] == REGISTRY[code].title
    assert text in problem["detail"] and problem["fix"] == REGISTRY[code].fix
    assert problem["exit_code"] == 2 and problem["docs"]
