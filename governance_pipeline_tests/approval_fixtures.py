"""Shared helpers of the approval tests: a test ladder catalog, event reads, subject hashes."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import select

from governance_pipeline.contracts.hashing import stable_hash
from governance_pipeline.governance.approvals.ladders import (
    BUILTIN_LADDERS,
    LadderCatalog,
    LadderSpec,
    StageSpec,
)
from governance_pipeline.landscape.schema import events
from governance_pipeline.landscape.store import Landscape

TENANT = "acme"
REQUESTER = "rita"


def catalog() -> LadderCatalog:
    """The built-ins plus ladders whose approvers are named in the tests."""
    return LadderCatalog({
        **BUILTIN_LADDERS,
        "two_stage": LadderSpec(stages=[
            StageSpec(name="data_owner", role="data_owner", approvers=["olga", "oscar"],
                      quorum=1, sla_seconds=3600),
            StageSpec(name="compliance", role="compliance", approvers=["carl", "rita"],
                      quorum=1, sla_seconds=7200)]),
        "quorum2": LadderSpec(stages=[
            StageSpec(name="board", role="board", approvers=["ann", "ben", "cid"], quorum=2,
                      sla_seconds=600)]),
    })


def subject(text: str = "pipeline-v1") -> str:
    return "sha256:" + stable_hash({"test_subject": text})


def events_of(landscape: Landscape, type_: str | None = None) -> list[dict[str, Any]]:
    query = select(events).order_by(events.c.event_id)
    if type_ is not None:
        query = query.where(events.c.type == type_)
    with landscape.engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return [{"type": r["type"], "source": r["source"], "scope": r["scope"],
             "tenant_id": r["tenant_id"], "payload": orjson.loads(r["payload_json"])}
            for r in rows]
