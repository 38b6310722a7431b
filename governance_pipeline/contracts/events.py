"""The event envelope (DESIGN.md §4). Events are written to the ``events`` outbox table in the
same transaction as the change they describe; delivery to subscribers happens afterwards."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from governance_pipeline.contracts.ids import new_id
from governance_pipeline.contracts.records import EventRecord

SCHEMA_VERSION = "1.0"
PRODUCER = "governance_pipeline"


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def make_event(event_type: str, *, scope: str, source: str, payload: Mapping[str, Any],
               timestamp: str, tenant_id: str | None = None, target: str | None = None,
               correlation_id: str | None = None, source_module: str | None = None) -> EventRecord:
    meta = {"schema_version": SCHEMA_VERSION, "producer": PRODUCER,
            "source_module": source_module or source, "tenant_id": tenant_id,
            "correlation_id": correlation_id}
    return EventRecord(new_id("evt_"), scope, event_type, source, target, tenant_id,
                       correlation_id, _json(dict(payload)), _json(meta), timestamp)


def envelope(event: EventRecord) -> dict[str, Any]:
    """The envelope as subscribers and ``governance-pipeline events --json`` see it."""
    return {"id": event.event_id, "type": event.type, "source": event.source,
            "target": event.target, "timestamp": event.timestamp,
            "payload": orjson.loads(event.payload_json), "meta": orjson.loads(event.meta_json)}
