"""The evidence bundle carries the run's code manifest: in bundle.json (the model, read back) and
as a table in the PDF (read back with pypdf), on both backends."""

from __future__ import annotations

import hashlib
from pathlib import Path

from governance_pipeline.contracts.clock import ManualClock
from governance_pipeline.governance.exports.evidence import build_evidence
from governance_pipeline.governance.exports.models import EvidenceBundle
from governance_pipeline.governance.exports.render_json import render_json
from governance_pipeline.landscape.code_manifest import manifest_hash, stored_identities
from governance_pipeline.landscape.recorder import Recorder
from governance_pipeline.landscape.store import Landscape
from governance_pipeline_tests.synthetic import record_synthetic_run
from governance_pipeline_tests.test_bundle_pdf import pdf_of, pdf_text, squeezed
from governance_pipeline_tests.test_engine_run import run_pipeline
from governance_pipeline_tests.test_python_transforms import aggregation, project, python_node


def test_evidence_bundle_lists_each_nodes_code(landscape: Landscape, clock: ManualClock,
                                              tmp_path: Path) -> None:
    path = project(tmp_path, [python_node("tag", on_success="agg_in"),
                              {**aggregation("summary"), "input": "agg_in"}])
    run_id = run_pipeline(landscape, clock, path).run_id
    bundle = build_evidence(landscape, run_id)
    assert EvidenceBundle.model_validate_json(render_json(bundle)) == bundle
    manifest = bundle.code_manifest
    assert manifest is not None
    with landscape.engine.connect() as conn:
        assert manifest.manifest_hash == manifest_hash(stored_identities(conn, run_id))
    digest = hashlib.sha256((path.parent / "ucode" / "fns.py").read_bytes()).hexdigest()
    nodes = {n.node_id: n for n in manifest.nodes}
    assert (nodes["mine"].function_name, nodes["mine"].source_sha256) == ("ucode.fns:tag", digest)
    assert (nodes["summarise"].function_name, nodes["summarise"].plugin_name) == (
        "ucode.fns:summary", "pandas")
    data, _ = pdf_of(bundle)
    _, text = pdf_text(data)
    flat = squeezed(text)
    assert "Codeidentity(manifestSHA-256" + manifest.manifest_hash in flat
    assert "ucode.fns:tag" in flat and "ucode.fns:summary" in flat
    assert flat.count(digest) == 2  # one row per function node
    assert "python(governance-pipeline" in flat


def test_a_run_without_a_manifest_says_so(landscape: Landscape, recorder: Recorder) -> None:
    """Runs recorded without the engine (or before code identities) have no manifest."""
    run = record_synthetic_run(recorder)
    bundle = build_evidence(landscape, run.run_id)
    assert bundle.code_manifest is None
    _, text = pdf_text(pdf_of(bundle)[0])
    assert "No code manifest was recorded for this run." in text
