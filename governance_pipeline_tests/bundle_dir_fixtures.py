"""A real, sealed run of the shipped linear example and bundle directories written from it.

Shared by the bundle-directory, verify-bundle and inclusion-proof tests. The run goes through the
engine on a real Landscape (both backends); a policy snapshot adds a record in the global scope,
which is then sealed, so proofs cover both kinds of scope.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import text

from governance_pipeline.contracts.clock import ManualClock, to_iso
from governance_pipeline.contracts.enums import ExportKind, RunStatus
from governance_pipeline.contracts.hashing import (
    CANONICAL_VERSION,
    canonical_json,
    sha256_hex,
)
from governance_pipeline.contracts.ids import new_id
from governance_pipeline.contracts.records import PolicySnapshotRecord
from governance_pipeline.engine.config import load_pipeline
from governance_pipeline.engine.runner import Runner
from governance_pipeline.governance.exports.bundle_dir import BundleResult, write_bundle
from governance_pipeline.governance.exports.checkpoint import (
    Checkpoint,
    checkpoint_for,
    seal_scopes,
)
from governance_pipeline.governance.exports.clearance import ExportClearance
from governance_pipeline.governance.exports.proofs import inclusion_proofs
from governance_pipeline.governance.exports.tlog_files import tlog_files
from governance_pipeline.landscape.keys import Signer
from governance_pipeline.landscape.recorder import Recorder
from governance_pipeline.landscape.schema import GLOBAL_SCOPE
from governance_pipeline.landscape.store import Landscape

REPO = Path(__file__).resolve().parents[1]
LINEAR = REPO / "examples" / "pipelines" / "claims_linear.yaml"
CREATED_AT = "2024-05-01T10:00:00+00:00"

RecordRef = tuple[str, str, str]


@dataclass
class SealedRun:
    run_id: str
    snapshot_id: str
    samples: list[RecordRef]  # (table, key, scope) of real records, both scopes


def query(landscape: Landscape, sql: str, **params: Any) -> list[Any]:
    with landscape.engine.connect() as conn:
        return list(conn.execute(text(sql), params))


def record_policy_snapshot(landscape: Landscape) -> str:
    """An unsealed policy snapshot in the global scope; returns its id."""
    policies = [{"id": "pii-mask", "mode": "enforced"}]
    body = canonical_json(policies)
    snapshot = PolicySnapshotRecord(new_id("ps_"), "acme", sha256_hex(body), CANONICAL_VERSION,
                                    body.decode(), len(policies), to_iso(landscape.clock.now()))
    with Recorder(landscape).unit(GLOBAL_SCOPE) as unit:
        unit.add(snapshot)
    return snapshot.snapshot_id


def sealed_run(landscape: Landscape, clock: ManualClock, tmp_path: Path) -> SealedRun:
    """Run the linear example to completion (the runner seals it) and seal the global scope.

    Samples: the run record (inserted first, re-committed by the sealing entry), the first
    node state, the last outcome, a node (a composite key) and the policy snapshot."""
    config = load_pipeline(LINEAR, env={"GOVERNANCE_HOME": str(tmp_path / "home")})
    result = Runner.start(landscape, config, base_dir=LINEAR.parent, pipeline_path=LINEAR,
                          clock=clock).execute()
    assert result.status is RunStatus.COMPLETED
    run_id = result.run_id
    snapshot_id = record_policy_snapshot(landscape)
    seal_scopes(landscape, [GLOBAL_SCOPE])
    first_state = query(landscape, "SELECT state_id FROM node_states WHERE run_id = :r "
                        "ORDER BY started_at, state_id LIMIT 1", r=run_id)[0][0]
    last_outcome = query(landscape, "SELECT outcome_id FROM token_outcomes WHERE run_id = :r "
                         "ORDER BY recorded_at DESC, outcome_id DESC LIMIT 1", r=run_id)[0][0]
    node_id = query(landscape, "SELECT node_id FROM nodes WHERE run_id = :r ORDER BY node_id "
                    "LIMIT 1", r=run_id)[0][0]
    samples = [
        ("runs", run_id, run_id),
        ("node_states", first_state, run_id),
        ("token_outcomes", last_outcome, run_id),
        ("nodes", json.dumps([run_id, node_id], separators=(",", ":")), run_id),
        ("policy_snapshots", snapshot_id, GLOBAL_SCOPE),
    ]
    return SealedRun(run_id, snapshot_id, samples)


def clearance_for(subject: str, kind: ExportKind = ExportKind.EVIDENCE) -> ExportClearance:
    return ExportClearance(export_id=new_id("exp_"), kind=kind, subject=subject,
                           subject_hash=sha256_hex(subject.encode()), tenant_id="acme",
                           approval_id=new_id("apr_"), surface="test",
                           issued_at=CREATED_AT)


def content_files(subject: str) -> dict[str, bytes]:
    """Placeholder content: a JSON document, PDF-like bytes (every byte value), a subdirectory."""
    return {
        "bundle.json": json.dumps({"subject": subject, "rows": [1, 2, 3]}, indent=2).encode(),
        "bundle.pdf": b"%PDF-1.7\n" + bytes(range(256)) + b"\n%%EOF\n",
        "attachments/notes.txt": f"notes for {subject}\n".encode(),
    }


def build_bundle(landscape: Landscape, run: SealedRun, out: Path, *,
                 signer: Signer | None = None, checkpoint: Checkpoint | None = None,
                 proofs: list[dict[str, Any]] | None = None,
                 subject: str | None = None) -> BundleResult:
    subject = subject or run.run_id
    checkpoint = checkpoint or checkpoint_for(landscape, [run.run_id, GLOBAL_SCOPE])
    if proofs is None:
        proofs = inclusion_proofs(landscape, run.samples, checkpoint)
    return write_bundle(out, content_files(subject), kind=ExportKind.EVIDENCE, subject=subject,
                        clearance=clearance_for(subject), signer=signer or landscape.signer,
                        checkpoint=checkpoint, proofs=proofs, created_at=CREATED_AT,
                        tlog=tlog_files(landscape, proofs, checkpoint))
