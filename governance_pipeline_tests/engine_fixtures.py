"""Pipeline-writing helpers for the engine tests (crash/resume and property tests).

The crash tests run a copy of the shipped fork/coalesce/aggregation example rather than a
pipeline of their own, so what they prove holds for the example a new user runs first; only the
knobs that make a small input exercise every path (chunk size, batch size, thresholds) change.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
TRIAGE_EXAMPLE = EXAMPLES / "pipelines" / "claims_triage.yaml"


def _generator() -> ModuleType:
    """``examples/generate_data.py`` (a script, not a package module)."""
    spec = importlib.util.spec_from_file_location("gp_examples_generate_data",
                                                  EXAMPLES / "generate_data.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_claims(path: Path, rows: int, *, seed: int, malformed: bool = True) -> Path:
    """The example's claims CSV, with its planted malformed records unless ``malformed=False``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _generator().write_claims(path, rows, seed=seed, malformed=malformed)
    return path


def node(doc: dict[str, Any], node_id: str) -> dict[str, Any]:
    for candidate in doc["nodes"]:
        if candidate["id"] == node_id:
            return candidate  # type: ignore[no-any-return]
    raise KeyError(f"the pipeline has no node {node_id!r}")


def triage_variant(data: Path, *, chunk_size: int, batch_count: int, reject_below: float,
                   fail_every_n: int) -> dict[str, Any]:
    """The triage example reading ``data``, tuned so a few hundred rows reach every sink.

    ``batch_count`` small against the rows a chunk sends to the aggregation makes batches flush
    inside chunks and leaves partial batches for the final step; ``reject_below`` fills the
    ``rejected`` sink; ``fail_every_n`` fails some model calls, which fills ``errors`` and makes
    the coalesce see incomplete fork groups. Sink paths stay under ``${GOVERNANCE_HOME}``.
    """
    doc: dict[str, Any] = yaml.safe_load(TRIAGE_EXAMPLE.read_text(encoding="utf-8"))
    doc["chunk_size"] = chunk_size
    doc["source"]["options"]["path"] = str(data)
    gate = node(doc, "triage")
    rejecting = [r for r in gate["routes"] if r.get("to") == "rejected"]
    assert len(rejecting) == 1, "the example's gate no longer has one route to 'rejected'"
    rejecting[0]["when"] = f"amount < {reject_below}"
    model = node(doc, "risk_model")
    assert model["plugin"] == "call" and model["options"]["provider"] == "local"
    model["options"]["fail_every_n"] = fail_every_n
    summarise = node(doc, "summarise")
    summarise["trigger"] = {"count": batch_count}
    for sink in doc["sinks"].values():
        assert "${GOVERNANCE_HOME}" in sink["options"]["path"], sink
    return doc


def write_pipeline(path: Path, doc: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def tree_bytes(root: Path) -> dict[str, bytes | None]:
    """Every file (bytes) and directory (None) under ``root``, hidden ones included.

    Comparing two of these compares the outputs byte for byte and also catches anything a
    crash left behind: a parts directory, a temporary, a trash directory.
    """
    found: dict[str, bytes | None] = {}
    for directory, dirnames, filenames in os.walk(root):
        base = Path(directory)
        for name in dirnames:
            found[str((base / name).relative_to(root)) + "/"] = None
        for name in filenames:
            found[str((base / name).relative_to(root))] = (base / name).read_bytes()
    return found


# --- the engine alone, as a process ------------------------------------------------------------
ENGINE_CHILD = "governance_pipeline_tests.engine_fixtures"


def main(argv: list[str]) -> int:
    """``python -m governance_pipeline_tests.engine_fixtures run PIPELINE | resume RUN_ID``.

    Runs or resumes a pipeline with the engine alone (``Runner.execute``, ``resume``), in this
    process, configured like the CLI (GOVERNANCE_HOME, GOVERNANCE_DB_URL), and prints the
    result as JSON. ``governance-pipeline run`` drives the same engine through a Dagster run,
    which costs seconds per process; the crash tests kill this lighter process at most of their
    crash points and go through the CLI for the rest.
    """
    import json

    from governance_pipeline.contracts.enums import RunStatus
    from governance_pipeline.contracts.settings import Settings
    from governance_pipeline.engine.config import load_pipeline
    from governance_pipeline.engine.resume import resume
    from governance_pipeline.engine.runner import Runner
    from governance_pipeline.landscape.store import Landscape

    command, argument = argv
    settings = Settings.from_env()
    os.environ["GOVERNANCE_HOME"] = str(settings.home)  # as the CLI does, for ${GOVERNANCE_HOME}
    landscape = Landscape.from_settings(settings)
    try:
        if command == "run":
            path = Path(argument).resolve()
            runner = Runner.start(landscape, load_pipeline(path), base_dir=path.parent,
                                  pipeline_path=path)
        elif command == "resume":
            runner = resume(landscape, argument)
        else:
            raise SystemExit(f"unknown command {command!r}: use run PIPELINE or resume RUN_ID")
        result = runner.execute()
    finally:
        landscape.dispose()
    print(json.dumps(result.as_dict()))
    return 0 if result.status is RunStatus.COMPLETED else 1


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
