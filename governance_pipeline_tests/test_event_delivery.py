"""Delivering the outbox: JSON Lines, webhooks on a real loopback HTTP server, OpenLineage, retry
with backoff on an injected clock, failures that stay visible, and two real deliverer processes
racing without sending anything twice. Both backends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from governance_pipeline.contracts.clock import ManualClock, to_iso
from governance_pipeline.contracts.enums import DeliveryStatus, RunStatus
from governance_pipeline.contracts.errors import ConfigError
from governance_pipeline.contracts.events import envelope
from governance_pipeline.governance.events.catalog import validate_event
from governance_pipeline.governance.events.delivery import backoff_seconds, deliver_pending
from governance_pipeline.governance.events.outbox import list_deliveries, read_events
from governance_pipeline.governance.events.subscribers import (
    SUBSCRIBERS_INVALID,
    parse_subscribers,
)
from governance_pipeline.landscape.store import Landscape
from governance_pipeline_tests.event_fixtures import (
    dead_url,
    linear_pipeline,
    record_ir_events,
    run_pipeline,
    webhook_server,
)

CLI = Path(sys.executable).with_name("governance-pipeline")


def subs(tmp_path: Path, *entries: dict[str, Any]) -> list[Any]:
    return parse_subscribers({"subscribers": list(entries)}, tmp_path)


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def test_jsonl_receives_each_event_once_in_order(landscape: Landscape, clock: ManualClock,
                                                 tmp_path: Path) -> None:
    made = record_ir_events(landscape, 4)
    config = subs(tmp_path, {"name": "log", "kind": "jsonl", "path": "out/events.jsonl"},
                  {"name": "runs-only", "kind": "jsonl", "path": "runs.jsonl",
                   "types": ["run.*"]})
    report = deliver_pending(landscape, config, clock=clock)
    assert report.ok and report.delivered == 4
    got = lines(tmp_path / "out" / "events.jsonl")
    assert got == [envelope(e) for e in made]
    for doc in got:
        validate_event(doc)
    assert deliver_pending(landscape, config, clock=clock).delivered == 0  # nothing twice
    assert len(lines(tmp_path / "out" / "events.jsonl")) == 4
    assert not (tmp_path / "runs.jsonl").exists()  # its type filter excludes ir.*
    states = list_deliveries(landscape)
    assert [(s.subscriber, s.status, s.attempts) for s in states] == \
        [("log", DeliveryStatus.DELIVERED, 1)] * 4


def test_webhook_posts_each_envelope_with_its_idempotency_key(landscape: Landscape,
                                                              clock: ManualClock,
                                                              tmp_path: Path) -> None:
    made = record_ir_events(landscape, 3)
    with webhook_server() as hook:
        config = subs(tmp_path, {"name": "hook", "kind": "webhook", "url": hook.url,
                                 "headers": {"X-Tenant": "acme"}})
        assert deliver_pending(landscape, config, clock=clock).delivered == 3
    assert hook.received == [envelope(e) for e in made]
    assert [h["Idempotency-Key"] for h in hook.headers] == [e.event_id for e in made]
    assert {h["X-Tenant"] for h in hook.headers} == {"acme"}


def test_webhook_500_is_retried_after_backoff_and_holds_later_events(
        landscape: Landscape, clock: ManualClock, tmp_path: Path) -> None:
    first, second = record_ir_events(landscape, 2)
    with webhook_server() as hook:
        hook.script = [500]
        config = subs(tmp_path, {"name": "hook", "kind": "webhook", "url": hook.url})
        report = deliver_pending(landscape, config, clock=clock)
        assert (report.delivered, report.retrying, report.failed) == (0, 1, 0)
        [(failed_id, error)] = report.subscribers[0].errors
        assert failed_id == first.event_id and "HTTP 500" in error
        state = {s.event_id: s for s in list_deliveries(landscape)}
        assert state[first.event_id].status is DeliveryStatus.PENDING
        assert state[first.event_id].attempts == 1
        assert state[first.event_id].next_attempt_at == to_iso(
            clock.now() + timedelta(seconds=backoff_seconds(1)))
        assert "HTTP 500" in (state[first.event_id].last_error or "")
        # before the backoff has passed nothing is sent, not even the later event
        clock.advance(backoff_seconds(1) - 1)
        held = deliver_pending(landscape, config, clock=clock)
        assert held.delivered == 0 and held.subscribers[0].held
        assert hook.received == []
        clock.advance(1)
        assert deliver_pending(landscape, config, clock=clock).delivered == 2
    assert hook.ids() == [first.event_id, second.event_id]
    state = {s.event_id: s for s in list_deliveries(landscape)}
    assert state[first.event_id].attempts == 2 and state[first.event_id].last_error is None
    assert state[second.event_id].attempts == 1


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff_seconds(n, 30) for n in (1, 2, 3, 4)] == [30, 60, 120, 240]
    assert backoff_seconds(30, 30) == 3600


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CLI), *args], env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def test_dead_webhook_never_breaks_the_run_and_its_failure_is_visible(
        landscape: Landscape, clock: ManualClock, db_url: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    path = linear_pipeline(tmp_path, monkeypatch)
    home = Path(os.environ["GOVERNANCE_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "subscribers.yaml").write_text(json.dumps({"subscribers": [
        {"name": "dead", "kind": "webhook", "url": dead_url(), "timeout_s": 2}]}))
    config = parse_subscribers(json.loads((home / "subscribers.yaml").read_text()), home)
    result = run_pipeline(landscape, clock, path)
    assert result.status is RunStatus.COMPLETED  # the business operation does not care
    for _ in range(2):
        report = deliver_pending(landscape, config, clock=clock, max_attempts=2)
        assert report.delivered == 0 and not report.ok
        clock.advance(backoff_seconds(1))
    assert report.failed == 1  # the first event exhausted its attempts
    env = {**os.environ, "GOVERNANCE_DB_URL": db_url, "GOVERNANCE_HOME": str(home)}
    shown = _cli(env, "events", "deliveries", "--failed", "--json")
    assert shown.returncode == 0, shown.stderr
    failed = json.loads(shown.stdout)["deliveries"]
    assert [(d["subscriber"], d["status"], d["attempts"]) for d in failed] == \
        [("dead", "failed", 2)]
    assert failed[0]["type"] == "run.started" and failed[0]["last_error"]
    text = _cli(env, "events", "deliveries", "--failed")
    assert text.returncode == 0 and "dead" in text.stdout and "failed" in text.stdout
    listed = _cli(env, "events", "--run", result.run_id, "--json")
    assert [e["type"] for e in json.loads(listed.stdout)] == ["run.started", "run.completed"]
    # a pass from the command line reports, and exits 0: delivery problems are not run problems
    passed = _cli(env, "events", "deliver", "--json")
    assert passed.returncode == 0, passed.stderr
    assert json.loads(passed.stdout)["subscribers"][0]["subscriber"] == "dead"


# --- OpenLineage ----------------------------------------------------------------------------------
OPENLINEAGE_RUN_EVENT = {  # the RunEvent shape of the OpenLineage 2-0-2 spec, as a JSON Schema
    "type": "object",
    "required": ["eventTime", "producer", "schemaURL", "run", "job"],
    "properties": {
        "eventType": {"enum": ["START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"]},
        "eventTime": {"type": "string", "format": "date-time"},
        "producer": {"type": "string", "format": "uri"},
        "schemaURL": {"type": "string", "pattern": r"^https://openlineage\.io/spec/.+RunEvent$"},
        "run": {"type": "object", "required": ["runId"], "properties": {
            "runId": {"type": "string", "format": "uuid"}, "facets": {"type": "object"}}},
        "job": {"type": "object", "required": ["namespace", "name"], "properties": {
            "namespace": {"type": "string"}, "name": {"type": "string"},
            "facets": {"type": "object"}}},
        "inputs": {"type": "array", "items": {"$ref": "#/$defs/dataset"}},
        "outputs": {"type": "array", "items": {"$ref": "#/$defs/dataset"}},
    },
    "$defs": {"dataset": {"type": "object", "required": ["namespace", "name"], "properties": {
        "namespace": {"type": "string"}, "name": {"type": "string"},
        "facets": {"type": "object"}}}},
}


def _check_openlineage(doc: dict[str, Any]) -> None:
    Draft202012Validator(OPENLINEAGE_RUN_EVENT,
                         format_checker=Draft202012Validator.FORMAT_CHECKER).validate(doc)
    uuid.UUID(doc["run"]["runId"])


def test_openlineage_start_and_complete_share_the_run_id(landscape: Landscape, clock: ManualClock,
                                                         tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    path = linear_pipeline(tmp_path, monkeypatch)
    first = run_pipeline(landscape, clock, path)
    second = run_pipeline(landscape, clock, path)
    record_ir_events(landscape, 1)  # not a run event: not for OpenLineage
    with webhook_server("/api/v1/lineage") as marquez:
        config = subs(tmp_path, {"name": "lineage-file", "kind": "openlineage",
                                 "path": "lineage.jsonl", "namespace": "acme"},
                      {"name": "lineage-http", "kind": "openlineage", "url": marquez.url})
        report = deliver_pending(landscape, config, clock=clock)
        assert report.ok and report.delivered == 8
    docs = lines(tmp_path / "lineage.jsonl")
    assert docs == [{**d, "job": {**d["job"], "namespace": "acme"}} for d in marquez.received]
    for doc in docs:
        _check_openlineage(doc)
    assert [d["eventType"] for d in docs] == ["START", "COMPLETE", "START", "COMPLETE"]
    run_ids = [d["run"]["runId"] for d in docs]
    assert run_ids[0] == run_ids[1] and run_ids[2] == run_ids[3] and run_ids[0] != run_ids[2]
    again = deliver_pending(landscape, config, clock=clock)
    assert again.delivered == 0  # deterministic id, and never sent twice
    started, completed = docs[0], docs[1]
    assert started["job"]["name"] == completed["job"]["name"] == "claims_linear"
    assert started["inputs"] == completed["inputs"]
    assert started["inputs"][0]["name"].endswith("claims.csv")
    outputs = {o["name"] for o in completed["outputs"]}
    assert {s.path_or_uri for s in first.sinks} <= outputs
    assert completed["eventTime"] == [e for e in read_events(landscape, run_id=first.run_id)
                                      if e.type == "run.completed"][0].timestamp
    assert {s.path_or_uri for s in second.sinks} <= {o["name"] for o in docs[3]["outputs"]}


# --- two deliverers ---------------------------------------------------------------------------------
CHILD = """
import sys
from governance_pipeline.contracts.settings import Settings
from governance_pipeline.governance.events import backlog, deliver_pending, load_subscribers
from governance_pipeline.landscape.store import Landscape

settings = Settings.from_env()
subscribers = load_subscribers(settings)
landscape = Landscape.from_settings(settings)
print("ready", flush=True)
sys.stdin.readline()
delivered = 0
while any(backlog(landscape, s.name, s.accepted_types()) for s in subscribers):
    delivered += deliver_pending(landscape, subscribers, batch=3).delivered
print(delivered, flush=True)
"""


def test_two_deliverer_processes_send_each_event_once_per_subscriber(
        landscape: Landscape, db_url: str, tmp_path: Path) -> None:
    made = record_ir_events(landscape, 60)
    home = tmp_path / "home"
    home.mkdir()
    with webhook_server() as hook:
        (home / "subscribers.yaml").write_text(json.dumps({"subscribers": [
            {"name": "log", "kind": "jsonl", "path": "events.jsonl"},
            {"name": "hook", "kind": "webhook", "url": hook.url}]}))
        env = {**os.environ, "GOVERNANCE_DB_URL": db_url, "GOVERNANCE_HOME": str(home)}
        children = [subprocess.Popen([sys.executable, "-c", CHILD], env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
                    for _ in range(2)]
        for child in children:  # both have imported and connected: start them together
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        outputs = [child.communicate(timeout=240)[0] for child in children]
        assert [c.returncode for c in children] == [0, 0], outputs
    counts = [int(out.strip()) for out in outputs]
    assert sum(counts) == 2 * len(made)
    expected = {e.event_id for e in made}
    assert Counter(hook.ids()) == Counter({i: 1 for i in expected})
    assert Counter(d["id"] for d in lines(home / "events.jsonl")) == \
        Counter({i: 1 for i in expected})
    states = list_deliveries(landscape)
    assert len(states) == 120 and {s.status for s in states} == {DeliveryStatus.DELIVERED}
    assert {s.attempts for s in states} == {1}


# --- the subscribers file ----------------------------------------------------------------------------
@pytest.mark.parametrize("entry, message", [
    ({"name": "x", "kind": "webhook", "url": "ftp://127.0.0.1/x"}, "http"),
    ({"name": "x", "kind": "webhook", "url": "file:///etc/passwd"}, "http"),
    ({"name": "x", "kind": "jsonl", "path": "a.jsonl", "types": ["run.teleported"]},
     "matches no event type"),
    ({"name": "x", "kind": "openlineage", "path": "a.jsonl", "types": ["ir.*"]}, "runs only"),
    ({"name": "x", "kind": "openlineage"}, "exactly one of url or path"),
    ({"name": "x", "kind": "jsonl", "path": "a.jsonl", "colour": "red"}, "colour"),
    ({"name": "x", "kind": "carrier-pigeon"}, "kind"),
])
def test_bad_subscribers_are_configuration_errors(tmp_path: Path, entry: dict[str, Any],
                                                  message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_subscribers({"subscribers": [entry]}, tmp_path)
    assert info.value.code is SUBSCRIBERS_INVALID
    assert message in info.value.message or message in json.dumps(info.value.details)


def test_duplicate_names_rejected_and_relative_paths_resolved(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unique"):
        parse_subscribers({"subscribers": [{"name": "a", "kind": "jsonl", "path": "x"}] * 2},
                          tmp_path)
    [sub] = parse_subscribers({"subscribers": [{"name": "a", "kind": "jsonl", "path": "x.jsonl"}]},
                              tmp_path)
    assert sub.path == (tmp_path / "x.jsonl").resolve()
