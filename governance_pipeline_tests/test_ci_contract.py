"""What a fresh clone promises: the README's two commands, the CI entry point running the second
verbatim, the test script's guarantees, and a Dagster code location that loads."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEMO = "bash scripts/demo.sh"
TEST = "bash scripts/test.sh"


def _first_code_block(markdown: str) -> list[str]:
    match = re.search(r"```[a-z]*\n(.*?)```", markdown, re.S)
    assert match, "README has no code block"
    return [line.split("#", 1)[0].strip() for line in match.group(1).splitlines()
            if line.strip()]


def test_readme_starts_with_exactly_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    head = readme.split("```", 1)[0]
    assert head.count("\n") <= 2, "nothing but the title may come before the two commands"
    assert _first_code_block(readme) == [DEMO, TEST]


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    ci = ROOT / ".ci" / "run"
    assert ci.stat().st_mode & stat.S_IXUSR, ".ci/run must be executable"
    text = ci.read_text(encoding="utf-8")
    assert text.startswith("#!/usr/bin/env bash\n")
    commands = [line.strip() for line in text.splitlines()
                if line.strip() and not line.startswith("#")]
    assert commands[-1] == TEST


def test_test_script_guarantees() -> None:
    script = (ROOT / "scripts" / "test.sh").read_text(encoding="utf-8")
    assert "set -euo pipefail" in script
    assert "GOVERNANCE_TEST_PG_URL=" in script
    assert "apt-get install -y" in script and "DEBIAN_FRONTEND=noninteractive" in script
    assert "trap cleanup EXIT" in script
    assert re.search(r'if \[ "\$status" -eq 5 \]; then\s+die', script), \
        "pytest exit 5 (no tests collected) must fail the script"
    assert "dagster definitions validate -w workspace.yaml" in script
    # Every wait is bounded.
    assert "while" not in script
    assert "seq 1 60" in script


def test_scripts_are_valid_bash() -> None:
    for name in ("test.sh", "demo.sh"):
        subprocess.run(["bash", "-n", str(ROOT / "scripts" / name)], check=True, timeout=30)
    subprocess.run(["bash", "-n", str(ROOT / ".ci" / "run")], check=True, timeout=30)


def test_workspace_loads_the_definitions_module() -> None:
    workspace = yaml.safe_load((ROOT / "workspace.yaml").read_text(encoding="utf-8"))
    modules = [entry["python_module"]["module_name"] for entry in workspace["load_from"]]
    assert modules == ["governance_pipeline.definitions"]


def test_dagster_yaml_is_local_with_telemetry_off() -> None:
    config = yaml.safe_load((ROOT / "dagster.yaml").read_text(encoding="utf-8"))
    assert config["telemetry"] == {"enabled": False}
    assert set(config["storage"]) == {"sqlite"}
    assert "postgres:" in (ROOT / "dagster.yaml").read_text(encoding="utf-8")


def test_dagster_validates_the_code_location(tmp_path: Path) -> None:
    shutil.copy(ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "GOVERNANCE_HOME": str(tmp_path / "gh")}
    dagster = Path(sys.executable).with_name("dagster")
    proc = subprocess.run([str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "All code locations passed validation" in proc.stdout + proc.stderr
    assert not (tmp_path / "gh").exists(), "loading the code location must not touch the Landscape"
