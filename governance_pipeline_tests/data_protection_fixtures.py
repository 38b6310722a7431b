"""Helpers of the data-protection tests: a small claims pipeline naming its customers as data
subjects, run in-process on a real Landscape, and a byte-exact snapshot of the whole database
(to prove that a refused purge or erasure changed nothing)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select

from governance_pipeline.contracts.clock import ManualClock
from governance_pipeline.engine.config import load_pipeline
from governance_pipeline.engine.runner import Runner
from governance_pipeline.landscape.schema import GLOBAL_SCOPE, metadata
from governance_pipeline.landscape.store import Landscape

REPO = Path(__file__).resolve().parents[1]
LINEAR = REPO / "examples" / "pipelines" / "claims_linear.yaml"
DAY = 86_400.0

#: (claim_id, customer, region, amount, description); customer-1 has two claims.
CLAIMS = [(1, "customer-1", "north", 120.5, "hail"), (2, "customer-2", "south", 7300.0, "fire"),
          (3, "customer-1", "east", 88.0, "theft"), (4, "customer-3", "west", 15.25, "water")]


def write_claims(path: Path, claims: list[tuple[Any, ...]] = CLAIMS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["claim_id", "customer", "region", "amount", "description"])
        writer.writerows(claims)
    return path


def claims_pipeline(directory: Path, *, subject_fields: list[str] | None = None,
                    retention: dict[str, str] | None = None,
                    claims: list[tuple[Any, ...]] = CLAIMS, name: str = "pipeline") -> Path:
    """The shipped linear example over ``claims``; its field_map drops ``customer``, so the
    derived rows name no subject themselves (they inherit it through the lineage)."""
    doc = yaml.safe_load(LINEAR.read_text(encoding="utf-8"))
    doc["source"]["options"]["path"] = str(write_claims(directory / f"{name}.csv", claims))
    for sink in doc["sinks"].values():  # each pipeline file writes its own outputs
        sink["options"]["path"] = sink["options"]["path"].replace("claims_linear", name)
    if subject_fields is not None:
        doc["subject_fields"] = subject_fields
    if retention is not None:
        doc["retention"] = retention
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def run_claims(landscape: Landscape, clock: ManualClock, path: Path) -> str:
    config = load_pipeline(path)
    result = Runner.start(landscape, config, base_dir=path.parent, pipeline_path=path,
                          clock=clock).execute()
    assert result.status.value == "completed", result
    return result.run_id


def snapshot(landscape: Landscape) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every Landscape table, bytes as hex, sorted: equal snapshots, equal data."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with landscape.engine.connect() as conn:
        for table in metadata.sorted_tables:
            rows = [tuple(bytes(v).hex() if isinstance(v, (bytes, memoryview)) else v
                          for v in row) for row in conn.execute(select(table))]
            out[table.name] = sorted(rows, key=repr)
    return out


#: What a refused (or no-op) operator action adds: its operator-log entry, in the global chain.
_OPERATOR_TRAIL = frozenset({"operator_events", "ledger_entries", "ledger_seals",
                             "ledger_checkpoints"})


def state_snapshot(landscape: Landscape) -> dict[str, list[tuple[Any, ...]]]:
    """``snapshot`` less the global scope's operator log and the chain entries, seals and
    checkpoints that record it: equal state snapshots, nothing changed but the operator log's own entries."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with landscape.engine.connect() as conn:
        for table in metadata.sorted_tables:
            if table.name == "ledger_origin":
                continue  # the log's name, fixed by the first seal: maybe the refusal's own
            query = select(table)
            if table.name in _OPERATOR_TRAIL:
                query = query.where(table.c.scope != GLOBAL_SCOPE)
            rows = [tuple(bytes(v).hex() if isinstance(v, (bytes, memoryview)) else v
                          for v in row) for row in conn.execute(query)]
            out[table.name] = sorted(rows, key=repr)
    return out

