"""The event catalogue: one JSON Schema (draft 2020-12) per event type, shipped in the package.

``schemas/envelope.json`` is the envelope of DESIGN.md §4; every ``schemas/<type>.json`` refers
to it by a relative ``$ref`` and adds its ``type`` constant and payload. The files are plain JSON
Schema with relative references, so a subscriber can validate with any draft 2020-12 validator
given the directory.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from governance_pipeline.contracts.errors import (
    ExitCode,
    GovernanceError,
    register,
)

ENVELOPE = "envelope"
_SHARED = frozenset({ENVELOPE})

EVENT_INVALID = register(
    "GP-EVENT-001", "Event does not match the JSON Schema of its type",
    "The message names the field and the rule it breaks; the producer of this event type must "
    "emit the payload its schema (governance_pipeline/governance/events/schemas/<type>.json) and "
    "docs/events.md describe, or the schema must change with it.",
    ExitCode.INTEGRITY)
EVENT_TYPE_UNKNOWN = register(
    "GP-EVENT-002", "Event type has no JSON Schema",
    "Every event type needs a schema: add schemas/<type>.json (it $refs envelope.json and "
    "defines the payload) and document the type in docs/events.md.",
    ExitCode.INTEGRITY)


class EventSchemaError(GovernanceError):
    default_code = EVENT_INVALID


def _schema_dir() -> Any:
    return resources.files("governance_pipeline.governance.events") / "schemas"


@cache
def _documents() -> dict[str, dict[str, Any]]:
    docs = {}
    for entry in _schema_dir().iterdir():
        if entry.name.endswith(".json"):
            docs[entry.name.removesuffix(".json")] = json.loads(entry.read_text(encoding="utf-8"))
    return docs


@cache
def _registry() -> Registry:
    return Registry().with_resources(
        (f"{name}.json", Resource.from_contents(doc, default_specification=DRAFT202012))
        for name, doc in _documents().items())


@cache
def _validator(event_type: str) -> Draft202012Validator:
    schema = schema_for(event_type)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, registry=_registry())


def event_types() -> frozenset[str]:
    return frozenset(name for name in _documents() if name not in _SHARED)


EVENT_TYPES: frozenset[str] = event_types()


def schema_for(event_type: str) -> dict[str, Any]:
    """The JSON Schema of ``event_type`` (raises GP-EVENT-002 when there is none)."""
    if event_type not in EVENT_TYPES:
        raise EventSchemaError(f"event type {event_type!r} has no JSON Schema",
                               code=EVENT_TYPE_UNKNOWN, details={"type": event_type})
    return _documents()[event_type]


def envelope_schema() -> dict[str, Any]:
    return _documents()[ENVELOPE]


def validate_event(envelope: Mapping[str, Any]) -> None:
    """Check one envelope against the schema of its ``type``; GP-EVENT-001/002 if it fails."""
    event_type = envelope.get("type")
    if not isinstance(event_type, str):
        raise EventSchemaError(f"event {envelope.get('id')!r} has no string 'type'",
                               details={"id": envelope.get("id")})
    validator = _validator(event_type)
    error = best_match(validator.iter_errors(dict(envelope)))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(envelope)"
        raise EventSchemaError(
            f"event {envelope.get('id')} ({event_type}) at {where}: {error.message}",
            details={"id": envelope.get("id"), "type": event_type, "path": where,
                     "rule": error.validator})
