"""Sink path confinement: no sink writes onto the audit store, a device, the pipeline's inputs,
another sink's output, or outside the allowed output roots (GP-SINK-006..009).

The rules are checked at validate, at run start and again before each write on the real path;
every refusal has its must-pass twin.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from governance_pipeline.contracts.errors import ConfigError
from governance_pipeline.contracts.settings import Settings
from governance_pipeline.engine.config import parse_pipeline
from governance_pipeline.engine.confinement import check_sink_paths
from governance_pipeline.plugins.sinks.csv_sink import CsvSink
from governance_pipeline_tests.test_cli import run

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Path]:
    """A home with a Landscape file and a key, a pipeline directory with its inputs."""
    home = tmp_path / "home"
    (home / "keys").mkdir(parents=True)
    (home / "keys" / "ledger_ed25519.pem").write_text("key")
    (home / "landscape.db").write_bytes(b"db")
    (home / "dagster").mkdir()
    pipes = tmp_path / "pipes"
    pipes.mkdir()
    (pipes / "claims.csv").write_text("claim_id,amount\nc1,1\n")
    (pipes / "owners.csv").write_text("region,owner\nn,x\n")
    (pipes / "policy.yaml").write_text("policies: []\n")
    return {"home": home, "pipes": pipes, "tmp": tmp_path}


def _config(sinks: dict[str, dict[str, Any]], **extra: Any) -> Any:
    return parse_pipeline({
        "name": "p", "source": {"plugin": "csv", "options": {"path": "claims.csv"},
                                "on_success": "lookup_in"},
        "nodes": [{"id": "lookup", "kind": "transform", "plugin": "lookup", "input": "lookup_in",
                   "on_success": next(iter(sinks)),
                   "options": {"path": "owners.csv", "key": "region", "fields": ["owner"]}}],
        "sinks": sinks, "policy_files": ["policy.yaml"], **extra})


def _check(world: dict[str, Path], sinks: dict[str, dict[str, Any]],
           env: dict[str, str] | None = None, **extra: Any) -> None:
    settings = Settings.from_env({"GOVERNANCE_HOME": str(world["home"]), **(env or {})})
    check_sink_paths(_config(sinks, **extra), world["pipes"] / "p.yaml", settings, env or {})


def _refused(world: dict[str, Path], sinks: dict[str, dict[str, Any]], code: str, field: str,
             **kwargs: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        _check(world, sinks, **kwargs)
    assert caught.value.code.code == code, caught.value.message
    problems = caught.value.details["problems"]
    assert (problems[0]["path"], problems[0]["code"]) == (field, code)
    return caught.value.message


def _csv(path: str) -> dict[str, Any]:
    return {"plugin": "csv", "options": {"path": path}}


@pytest.mark.parametrize(("path", "code", "said"), [
    ("{home}/landscape.db", "GP-SINK-006", "the Landscape database"),
    ("{home}/landscape.db-wal", "GP-SINK-006", "wal file"),
    ("{home}/landscape.db-journal", "GP-SINK-006", "journal file"),
    ("{home}/keys/ledger_ed25519.pem", "GP-SINK-006", "signing key directory"),
    ("{home}/keys/new.pem", "GP-SINK-006", "signing key directory"),
    ("{home}/trusted_keys.json", "GP-SINK-006", "trust file"),
    ("{home}/dagster/dagster.yaml", "GP-SINK-006", "Dagster home"),
    ("{home}/runs/r/chunks/0.json", "GP-SINK-006", "runs/"),
    ("{home}/exports/evidence/x/bundle.json", "GP-SINK-006", "exports/"),
    ("{home}/subscribers.yaml", "GP-SINK-006", "directly in GOVERNANCE_HOME"),
    ("/dev/null", "GP-SINK-007", "under /dev"),
    ("/proc/self/environ", "GP-SINK-007", "under /proc"),
    ("/sys/kernel/x", "GP-SINK-007", "under /sys"),
    ("p.yaml", "GP-SINK-008", "the pipeline file itself"),
    ("claims.csv", "GP-SINK-008", "the pipeline's source"),
    ("owners.csv", "GP-SINK-008", "lookup table"),
    ("policy.yaml", "GP-SINK-008", "a policy file"),
    ("{tmp}/elsewhere/out.csv", "GP-SINK-009", "outside the allowed output roots"),
])
def test_a_sink_path_onto_something_it_must_not_touch_is_refused(
        world: dict[str, Path], path: str, code: str, said: str) -> None:
    (world["pipes"] / "p.yaml").write_text("name: p\n")
    resolved = path.format(home=world["home"], pipes=world["pipes"], tmp=world["tmp"])
    message = _refused(world, {"out": _csv(resolved)}, code, "sinks.out.options.path")
    assert said in message


def test_the_same_pipeline_may_write_into_its_own_tree_and_under_governance_home(
        world: dict[str, Path]) -> None:
    _check(world, {"out": _csv("out/standard.csv"), "home": _csv("{}/out/x.csv".format(
        world["home"])), "other": _csv("{}/output/y/z.jsonl".format(world["home"])),
        "sibling": _csv("claims_out.csv")})


def test_a_symlink_or_hard_link_resolving_to_a_guarded_file_is_refused(
        world: dict[str, Path]) -> None:
    link = world["pipes"] / "innocent.csv"
    link.symlink_to(world["home"] / "landscape.db")
    _refused(world, {"out": _csv("innocent.csv")}, "GP-SINK-006", "sinks.out.options.path")
    link.unlink()
    link.symlink_to(world["home"] / "keys")
    _refused(world, {"out": _csv("innocent.csv/x.pem")}, "GP-SINK-006", "sinks.out.options.path")
    link.unlink()
    os.link(world["pipes"] / "claims.csv", link)  # same inode, another name
    _refused(world, {"out": _csv("innocent.csv")}, "GP-SINK-008", "sinks.out.options.path")
    link.unlink()
    link.symlink_to(world["pipes"] / "out_real.csv")  # a symlink to an allowed place: fine
    _check(world, {"out": _csv("innocent.csv")})


def test_fifos_and_sockets_are_refused_and_a_regular_file_is_not(world: dict[str, Path]) -> None:
    os.mkfifo(world["pipes"] / "fifo")
    _refused(world, {"out": _csv("fifo")}, "GP-SINK-007", "sinks.out.options.path")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(world["pipes"] / "sock"))
        _refused(world, {"out": _csv("sock")}, "GP-SINK-007", "sinks.out.options.path")
    (world["pipes"] / "previous.csv").write_text("an earlier output\n")
    _check(world, {"out": _csv("previous.csv")})


def test_two_sinks_on_one_resolved_path_are_refused(world: dict[str, Path]) -> None:
    (world["pipes"] / "alias").symlink_to(world["pipes"] / "out")
    _refused(world, {"a": _csv("out/a.csv"), "b": {"plugin": "jsonl",
                                                    "options": {"path": "alias/a.csv"}}},
             "GP-SINK-008", "sinks.b.options.path")
    _check(world, {"a": _csv("out/a.csv"), "b": {"plugin": "jsonl",
                                                  "options": {"path": "alias/b.jsonl"}}})


def test_a_sqlite_sql_sink_onto_the_landscape_is_refused_and_its_own_file_is_not(
        world: dict[str, Path]) -> None:
    onto = {"plugin": "sql", "options": {"url": f"sqlite:///{world['home']}/landscape.db",
                                         "table": "t"}}
    _refused(world, {"db": onto}, "GP-SINK-006", "sinks.db.options.url")
    _check(world, {"db": {"plugin": "sql", "options": {"url": "sqlite:///out/results.db",
                                                       "table": "t"}}})


def test_declared_roots_replace_the_default_and_the_operator_roots_bound_them(
        world: dict[str, Path]) -> None:
    exports = world["tmp"] / "exports_area"
    _refused(world, {"out": _csv(f"{exports}/a.csv")}, "GP-SINK-009", "sinks.out.options.path")
    _check(world, {"out": _csv(f"{exports}/a.csv")}, outputs={"roots": [str(exports)]})
    message = _refused(world, {"out": _csv("out/a.csv")}, "GP-SINK-009",
                       "sinks.out.options.path", outputs={"roots": [str(exports)]})
    assert "outputs.roots" in message
    operator = {"GOVERNANCE_OUTPUT_ROOTS": str(world["tmp"] / "operator")}
    _refused(world, {"out": _csv(f"{exports}/a.csv")}, "GP-SINK-009", "sinks.out.options.path",
             env=operator, outputs={"roots": [str(exports)]})
    _check(world, {"out": _csv(f"{world['tmp']}/operator/a.csv")}, env=operator)
    # Declared roots never open the audit store: the guarded places are refused first.
    _refused(world, {"out": _csv(f"{world['home']}/keys/k")}, "GP-SINK-006",
             "sinks.out.options.path", outputs={"roots": ["/"]})


def test_outputs_absent_leaves_the_config_hash_of_existing_pipelines_unchanged() -> None:
    base = {"name": "p", "source": {"plugin": "csv", "options": {"path": "c.csv"},
                                    "on_success": "out"},
            "sinks": {"out": {"plugin": "csv", "options": {"path": "o.csv"}}}}
    assert "outputs" not in parse_pipeline(base).canonical()
    assert parse_pipeline({**base, "outputs": {"roots": ["x"]}}).canonical()["outputs"] == {
        "roots": ["x"]}


def test_a_symlink_swapped_in_after_the_check_is_refused_at_write(tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    sink = CsvSink({"path": "out/data.csv"}, base_dir=tmp_path, sink_name="out")
    sink.write_part("p0", [("t0", {"a": 1})])
    assert sink.finalize(["p0"]).row_count == 1  # the twin: unchanged, it writes
    keys = tmp_path / "keys"
    keys.mkdir()
    moved = tmp_path / "out_moved"
    out_dir.rename(moved)
    out_dir.symlink_to(keys, target_is_directory=True)  # an attacker swaps the directory
    with pytest.raises(ConfigError) as caught:
        sink.write_part("p1", [("t1", {"a": 2})])
    assert caught.value.code.code == "GP-SINK-007"
    assert "symlink" in caught.value.message
    with pytest.raises(ConfigError):
        sink.finalize(["p1"])
    assert list(keys.iterdir()) == [], "nothing was written through the swapped symlink"


# --- the command line, in real subprocesses ---------------------------------------------------
def _pipeline(directory: Path, sink_path: str) -> Path:
    shutil.copy(EXAMPLES / "data" / "claims.csv", directory / "claims.csv")
    doc = {"name": "confined", "source": {"plugin": "csv", "options": {"path": "claims.csv"},
                                          "on_success": "out"},
           "sinks": {"out": {"plugin": "csv", "options": {"path": sink_path}}}}
    path = directory / "confined.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_validate_reports_the_refused_sink_with_its_field_path_and_fix(tmp_path: Path) -> None:
    home = tmp_path / "home"
    pipeline = _pipeline(tmp_path, "${GOVERNANCE_HOME}/keys/ledger_ed25519.pem")
    human = run(home, "validate", str(pipeline))
    assert human.code == 2, human.err
    assert human.err.startswith("error GP-SINK-006: ")
    assert "sinks.out.options.path" in human.err and "\nfix: " in human.err
    assert "Traceback" not in human.err
    doc = run(home, "validate", str(pipeline), "--json")
    assert doc.code == 2 and doc.json()["code"] == "GP-SINK-006"
    assert doc.json()["details"]["problems"][0]["path"] == "sinks.out.options.path"
    for example in sorted((EXAMPLES / "pipelines").glob("*.yaml")):  # the twins
        assert run(home, "validate", str(example)).code == 0, example


def test_run_refuses_a_sink_symlinked_onto_the_landscape_and_leaves_it_intact(
        tmp_path: Path, db_url: str) -> None:
    home = tmp_path / "home"
    assert run(home, "db", "upgrade", db_url=db_url).code == 0
    assert run(home, "keys", "public").code == 0
    key_file = home / "keys" / "ledger_ed25519.pem"
    (tmp_path / "report.csv").symlink_to(key_file)
    before = hashlib.sha256(key_file.read_bytes()).hexdigest()
    refused = run(home, "run", str(_pipeline(tmp_path, "report.csv")), db_url=db_url)
    assert refused.code == 2, refused.err
    assert "error GP-SINK-006: " in refused.err and "Traceback" not in refused.err
    assert hashlib.sha256(key_file.read_bytes()).hexdigest() == before
    assert run(home, "runs", "--json", db_url=db_url).json()["runs"] == []
    (tmp_path / "report.csv").unlink()
    done = run(home, "run", str(_pipeline(tmp_path, "out/report.csv")), db_url=db_url)
    assert done.code == 0, done.err
    assert (tmp_path / "out" / "report.csv").is_file()
    assert run(home, "verify", db_url=db_url).code == 0
