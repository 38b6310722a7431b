"""OpenLineage RunEvents for our run lifecycle events, so lineage tools see pipelines run.

Built as plain JSON (spec 2-0-2 RunEvent): the ``openlineage-python`` client is not a dependency,
and the document is small. The OpenLineage run id is a UUID derived from our run id (UUID v5),
so every event of one run — START, resumes, the end — lands on the same OpenLineage run
whichever process emits it. Datasets are the run's file source and sinks: the sinks' written
artifacts once the run completed, the configured sink paths before.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import select

from governance_pipeline.contracts.records import EventRecord
from governance_pipeline.landscape.schema import artifacts, runs
from governance_pipeline.landscape.store import Landscape

SCHEMA_URL = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
ERROR_FACET_URL = ("https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json"
                   "#/$defs/ErrorMessageRunFacet")
RUN_NAMESPACE = uuid.UUID("6f1c2d4e-8b9a-5c3d-9e7f-0a1b2c3d4e5f")
FILE_NAMESPACE = "file"

EVENT_TYPES: Mapping[str, str] = {
    "run.started": "START", "run.resumed": "RUNNING", "run.completed": "COMPLETE",
    "run.failed": "FAIL", "run.failed_policy": "FAIL", "run.interrupted": "ABORT",
    "run.cancelled": "ABORT", "run.abandoned": "ABORT",
}


def _producer() -> str:
    try:
        return f"urn:governance-pipeline:{version('governance-pipeline')}"
    except PackageNotFoundError:
        return "urn:governance-pipeline"


PRODUCER = _producer()


class LineageUnavailable(LookupError):
    """The run an event names is not in this Landscape."""


def openlineage_run_id(run_id: str) -> str:
    return str(uuid.uuid5(RUN_NAMESPACE, run_id))


@dataclass(frozen=True, slots=True)
class RunFacts:
    run_id: str
    pipeline: str
    inputs: tuple[str, ...]     # absolute file paths
    planned_outputs: tuple[str, ...]
    written_outputs: tuple[str, ...]


def _file(path: object, base: Path | None) -> str | None:
    if not isinstance(path, str) or "://" in path:
        return None
    candidate = Path(path)
    if not candidate.is_absolute() and base is not None:
        candidate = base / candidate
    return str(candidate.resolve()) if candidate.is_absolute() else None


def run_facts(landscape: Landscape, run_ids: Iterable[str]) -> dict[str, RunFacts]:
    wanted = sorted(set(run_ids))
    if not wanted:
        return {}
    with landscape.engine.connect() as conn:
        rows = conn.execute(select(runs.c.run_id, runs.c.pipeline_name, runs.c.config_json,
                                   runs.c.pipeline_path).where(runs.c.run_id.in_(wanted))).all()
        arts = conn.execute(select(artifacts.c.run_id, artifacts.c.path_or_uri)
                            .where(artifacts.c.run_id.in_(wanted))
                            .order_by(artifacts.c.artifact_id)).all()
    written: dict[str, list[str]] = {}
    for run_id, location in arts:
        path = _file(location, None)
        if path:
            written.setdefault(run_id, []).append(path)
    facts = {}
    for run_id, pipeline, config_json, pipeline_path in rows:
        config = orjson.loads(config_json)
        base = Path(pipeline_path).parent if pipeline_path else None
        source = _file((config.get("source") or {}).get("options", {}).get("path"), base)
        sinks = [_file((s or {}).get("options", {}).get("path"), base)
                 for s in (config.get("sinks") or {}).values()]
        facts[run_id] = RunFacts(run_id, pipeline, (source,) if source else (),
                                 tuple(s for s in sinks if s), tuple(written.get(run_id, ())))
    return facts


def _datasets(paths: Iterable[str]) -> list[dict[str, Any]]:
    return [{"namespace": FILE_NAMESPACE, "name": p, "facets": {}} for p in paths]


def run_event(event: EventRecord, facts: Mapping[str, RunFacts], *, namespace: str) -> dict[str, Any]:
    """The OpenLineage RunEvent for one of our ``run.*`` events."""
    payload = orjson.loads(event.payload_json)
    run_id = payload.get("run_id") or event.scope
    fact = facts.get(run_id)
    if fact is None:
        raise LineageUnavailable(f"event {event.event_id}: run {run_id} is not in the Landscape")
    event_type = EVENT_TYPES[event.type]
    run_facets: dict[str, Any] = {}
    error = payload.get("error")
    if event_type == "FAIL" and isinstance(error, dict):
        message = error.get("detail") or error.get("message") or error.get("title") or str(error)
        run_facets["errorMessage"] = {"_producer": PRODUCER, "_schemaURL": ERROR_FACET_URL,
                                      "message": str(message), "programmingLanguage": "python"}
    outputs = fact.written_outputs if event_type == "COMPLETE" and fact.written_outputs \
        else fact.planned_outputs
    return {
        "eventType": event_type,
        "eventTime": event.timestamp,
        "run": {"runId": openlineage_run_id(run_id), "facets": run_facets},
        "job": {"namespace": namespace, "name": fact.pipeline, "facets": {}},
        "inputs": _datasets(fact.inputs),
        "outputs": _datasets(outputs),
        "producer": PRODUCER,
        "schemaURL": SCHEMA_URL,
    }
