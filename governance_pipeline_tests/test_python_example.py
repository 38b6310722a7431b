"""The shipped ``claims_pandas`` example through the real command line, and a SIGKILL'd run of a
copy of it: resumed with its module edited, resume refuses with GP-CODE-001 naming the nodes; with
the module as it was, the resumed run's outputs are byte-identical to an uninterrupted run's."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from governance_pipeline_tests.engine_fixtures import tree_bytes
from governance_pipeline_tests.test_crash_resume import CLI, KILLED, Case, describe, sqlite_url

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "pipelines" / "claims_pandas.yaml"
MODULE = REPO / "examples" / "pipelines" / "claims_code" / "rules.py"
PLANTED_ROW = 200  # examples/generate_data.py: (5 * rows) // 6 of the shipped 240 rows


def test_the_example_runs_from_the_repository_and_explain_names_the_code(tmp_path: Path) -> None:
    case = Case(tmp_path / "home", sqlite_url(tmp_path / "home"))
    case.home.mkdir()
    env = case.env()
    proc = subprocess.run([str(CLI), "run", "examples/pipelines/claims_pandas.yaml", "--json"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, describe(proc)
    doc = json.loads(proc.stdout)
    assert doc["status"] == "completed"
    assert doc["counts"]["diverted"] == 1 and doc["counts"]["quarantined"] == 4
    assert doc["counts"]["dropped"] >= 1 and doc["counts"]["consumed_in_batch"] >= 1
    (error,) = [json.loads(x) for x in (case.home / "out" / "claims_pandas" / "errors.jsonl")
                .read_text().splitlines()]
    assert error["claim_id"] == PLANTED_ROW and error["_error_node"] == "parse_customer"
    assert error["_error_code"] == "GP-TRANSFORM-008"
    assert error["_error_reason"] == ("claims_code.rules:parse_customer raised ValueError: "
                                      "customer id 'customer-O1573' is not customer-NNNNN")
    digest = hashlib.sha256(MODULE.read_bytes()).hexdigest()
    run_id = doc["run_id"]
    text = subprocess.run([str(CLI), "explain", run_id, "--row", str(PLANTED_ROW)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120)
    assert text.returncode == 0, describe(text)
    assert f"claims_code.rules:parse_customer in claims_code/rules.py sha256 {digest}" in text.stdout
    assert '"type":"ValueError"' in text.stdout
    as_json = subprocess.run([str(CLI), "explain", run_id, "--row", str(PLANTED_ROW), "--json"],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    code = {n["node_id"]: n for n in json.loads(as_json.stdout)["code"]["nodes"]}
    assert code["parse_customer"]["function"] == "claims_code.rules:parse_customer"
    assert code["parse_customer"]["source_sha256"] == digest
    assert "score" not in code  # the row never reached it: only the nodes of its lineage


@pytest.fixture(scope="module")
def copy_and_baseline(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, bytes | None]]:
    root = tmp_path_factory.mktemp("pandas_example")
    shutil.copytree(REPO / "examples" / "data", root / "data")
    (root / "pipelines").mkdir()
    shutil.copy(EXAMPLE, root / "pipelines" / EXAMPLE.name)
    shutil.copytree(MODULE.parent, root / "pipelines" / "claims_code",
                    ignore=shutil.ignore_patterns("__pycache__"))
    base = Case(root / "baseline", sqlite_url(root / "baseline"))
    proc = base.run("engine", "run", str(root / "pipelines" / EXAMPLE.name))
    assert proc.returncode == 0, describe(proc)
    return root, tree_bytes(base.home / "out")


def _killed(root: Path, name: str) -> tuple[Case, str]:
    case = Case(root / name, sqlite_url(root / name))
    proc = case.run("engine", "run", str(root / "pipelines" / EXAMPLE.name),
                    crash_at="chunk.committed:2")
    assert proc.returncode == KILLED, describe(proc)
    return case, case.only_run().run_id


def test_resume_after_sigkill_refuses_an_edited_module_naming_the_node(
        copy_and_baseline: tuple[Path, dict[str, bytes | None]]) -> None:
    root, baseline = copy_and_baseline
    case, run_id = _killed(root, "edited")
    module = root / "pipelines" / "claims_code" / "rules.py"
    original = module.read_bytes()
    module.write_bytes(original.replace(b"amount\"] >= 50.0", b"amount\"] >= 40.0"))
    assert module.read_bytes() != original
    try:
        proc = case.run("cli", "resume", run_id)
    finally:
        module.write_bytes(original)
    assert proc.returncode == 2, describe(proc)
    problem = json.loads(proc.stdout)  # --json: the RFC 9457 problem document
    assert problem["code"] == "GP-CODE-001" and problem["exit_code"] == 2, problem
    assert problem["details"]["nodes"] == ["parse_customer", "score", "summarise_reviews"]
    assert "the code of node 'parse_customer', 'score', 'summarise_reviews' changed" in \
        problem["detail"]
    assert problem["fix"].startswith("Restore the code the run started with")
    assert case.only_run().resume_count == 0  # refused before the run was claimed
    # Restored, the same run resumes and ends as the uninterrupted run did.
    case.resume("cli", run_id)
    assert tree_bytes(case.home / "out") == baseline


def test_resume_after_sigkill_with_the_module_unchanged_is_byte_identical(
        copy_and_baseline: tuple[Path, dict[str, bytes | None]]) -> None:
    root, baseline = copy_and_baseline
    case, run_id = _killed(root, "unchanged")
    case.resume("cli", run_id)
    assert tree_bytes(case.home / "out") == baseline
