"""Hostile YAML: one bounded loader for every YAML file the product reads.

Each refusal (duplicate key, alias bomb, recursive alias, deep nesting, oversized document) is
next to its well-formed twin, in the loader and through each reader: pipelines (``validate`` as a
real subprocess), policies, approval ladders and event subscribers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from governance_pipeline.contracts.errors import REGISTRY, ConfigError
from governance_pipeline.contracts.safe_yaml import (
    MAX_ALIASES,
    MAX_DEPTH,
    MAX_DOCUMENT_CHARS,
    load_yaml,
)
from governance_pipeline.contracts.settings import Settings
from governance_pipeline.governance.approvals.ladders import load_ladders
from governance_pipeline.governance.events.subscribers import load_subscribers
from governance_pipeline.governance.policy.model import load_policy_file

REPO = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).with_name("governance-pipeline")
PIPELINE = REPO / "examples" / "pipelines" / "claims_linear.yaml"


def laughs(levels: int) -> str:
    """The "billion laughs" document: each level lists the previous one ten times."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels + 1):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


def nested(depth: int) -> str:
    return "x: " + "[" * (depth - 1) + "1" + "]" * (depth - 1) + "\n"


def refused(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_yaml(text, source="f.yaml")
    assert info.value.code.code.startswith("GP-YAML-")
    assert info.value.details["file"] == "f.yaml"
    return info.value


# --- the loader -----------------------------------------------------------------------------------
def test_duplicate_keys_are_refused_at_any_depth_naming_key_and_lines() -> None:
    top = refused("name: a\ntenant: t\nname: b\n")
    assert top.code.code == "GP-YAML-001"
    assert top.details == {"file": "f.yaml", "key": "name", "line": 3, "first_line": 1}
    deep = refused("a:\n  b:\n    - c: 1\n      d: 2\n      c: 3\n")
    assert (deep.details["key"], deep.details["line"], deep.details["first_line"]) == ("c", 5, 3)
    assert "duplicate key 'c' at line 5 (first at line 3)" in deep.message
    flow = refused("a: {k: 1, k: 2}\n")
    assert flow.details["key"] == "k"


def test_distinct_keys_and_merge_keys_load() -> None:
    assert load_yaml("a:\n  b:\n    - c: 1\n      d: 2\n      e: 3\n", source="f.yaml") == {
        "a": {"b": [{"c": 1, "d": 2, "e": 3}]}}
    # Same text, different types: 1 and "1" are different keys.
    assert load_yaml('m: {1: a, "1": b}\n', source="f.yaml") == {"m": {1: "a", "1": "b"}}
    merged = load_yaml("base: &b {x: 1, y: 1}\nuse:\n  <<: *b\n  y: 2\n", source="f.yaml")
    assert merged["use"] == {"x": 1, "y": 2}


@pytest.mark.timeout(10)
def test_alias_bomb_is_refused_before_anything_expands() -> None:
    err = refused(laughs(9))  # 10**9 strings once expanded
    assert err.code.code == "GP-YAML-002" and "aliases expanded" in err.message


def test_modest_aliases_load() -> None:
    doc = load_yaml(laughs(3), source="f.yaml")  # 10**4 strings: a lot, but bounded
    assert len(doc["l3"]) == 10 and doc["l3"][0][0][0] == doc["l0"]


def test_too_many_aliases_and_recursive_aliases_are_refused() -> None:
    many = "a: &a 1\nb: [" + ", ".join(["*a"] * (MAX_ALIASES + 1)) + "]\n"
    assert "more than 1000 aliases" in refused(many).message
    at_limit = "a: &a 1\nb: [" + ", ".join(["*a"] * MAX_ALIASES) + "]\n"
    assert len(load_yaml(at_limit, source="f.yaml")["b"]) == MAX_ALIASES
    cycle = refused("a: &a [1, *a]\n")
    assert cycle.code.code == "GP-YAML-002" and "contains it" in cycle.message


@pytest.mark.timeout(10)
def test_deep_nesting_is_refused_not_a_crash() -> None:
    for depth in (MAX_DEPTH + 1, 10_000):
        err = refused(nested(depth))
        assert err.code.code == "GP-YAML-003" and err.details["line"] == 1
    block = "a:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(MAX_DEPTH))
    assert refused(block).code.code == "GP-YAML-003"


def test_nesting_up_to_the_limit_loads() -> None:
    value = load_yaml(nested(MAX_DEPTH), source="f.yaml")["x"]
    for _ in range(MAX_DEPTH - 2):
        (value,) = value
    assert value == [1]


def test_oversized_document_is_refused_and_one_under_loads() -> None:
    filler = "# " + "x" * (MAX_DOCUMENT_CHARS - 12) + "\n"
    assert load_yaml(filler + "a: 1\n", source="f.yaml") == {"a": 1}
    err = refused(filler + "a: 1\nb: 22\n")
    assert err.code.code == "GP-YAML-004"


def test_plain_syntax_errors_stay_yaml_errors_for_the_callers() -> None:
    with pytest.raises(yaml.YAMLError):
        load_yaml("a: [1, 2\n", source="f.yaml")


# --- every reader uses it ----------------------------------------------------------------------------
def validate(home: Path, path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GOVERNANCE_DB_URL",
                                                              "GOVERNANCE_DEBUG")}
    env["GOVERNANCE_HOME"] = str(home)
    return subprocess.run([str(CLI), "validate", "--json", str(path)], env=env,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120,
                          cwd=REPO)


PIPELINE_ATTACKS = {
    "duplicate": ("tenant: someone_else\n", "GP-YAML-001", "duplicate key 'tenant'"),
    "bomb": (laughs(9).replace("l", "x_l"), "GP-YAML-002", "aliases expanded"),
    "deep": (nested(5_000).replace("x:", "x_deep:"), "GP-YAML-003", "nested deeper than 64"),
}


@pytest.mark.parametrize("case", sorted(PIPELINE_ATTACKS))
def test_validate_refuses_hostile_pipeline_yaml_with_code_and_fix(case: str,
                                                                  tmp_path: Path) -> None:
    tail, code, text = PIPELINE_ATTACKS[case]
    path = tmp_path / "p.yaml"
    path.write_text(PIPELINE.read_text() + tail)
    proc = validate(tmp_path / "home", path)
    assert proc.returncode == 2, proc.stderr
    problem = json.loads(proc.stdout)
    assert problem["code"] == code and text in problem["detail"]
    assert problem["fix"] == REGISTRY[code].fix
    assert "Traceback" not in proc.stderr


def test_validate_accepts_the_untouched_pipeline(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(PIPELINE.read_text())
    proc = validate(tmp_path / "home", path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["valid"] is True


def test_policy_file_with_a_duplicate_rule_key_is_refused(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("policy: p\nversion: 1\nmode: enforced\nrules:\n  - id: r1\n"
                    "    kind: expression\n    expression: \"amount > 0\"\n    severity: high\n"
                    "    fix: correct it\n")
    assert load_policy_file(good).policy == "p"
    bad = tmp_path / "bad.yaml"
    bad.write_text(good.read_text().replace("    severity: high\n",
                                            "    severity: high\n    severity: info\n"))
    with pytest.raises(ConfigError) as info:
        load_policy_file(bad)
    assert info.value.code.code == "GP-YAML-001" and info.value.details["line"] == 9


def test_ladders_file_with_a_duplicate_key_is_refused(tmp_path: Path) -> None:
    good = tmp_path / "ladders.yaml"
    good.write_text("ladders:\n  mine:\n    stages:\n      - name: s\n        role: r\n"
                    "        approvers: [a]\n        quorum: 1\n        sla_seconds: 60\n")
    assert "mine" in load_ladders(good).names()
    bad = tmp_path / "bad.yaml"
    bad.write_text(good.read_text() + "        quorum: 2\n")
    with pytest.raises(ConfigError) as info:
        load_ladders(bad)
    assert info.value.code.code == "GP-YAML-001" and info.value.details["key"] == "quorum"


def test_subscribers_file_with_an_alias_bomb_is_refused(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, db_url="sqlite://", pipelines_dir=tmp_path,
                        dagster_home=tmp_path)
    path = tmp_path / "subscribers.yaml"
    path.write_text("subscribers: []\n")
    env = {"GOVERNANCE_SUBSCRIBERS_FILE": str(path)}
    assert load_subscribers(settings, env) == []
    path.write_text(laughs(9) + "subscribers: []\n")
    with pytest.raises(ConfigError) as info:
        load_subscribers(settings, env)
    assert info.value.code.code == "GP-YAML-002"
