"""Prometheus metrics read from the Landscape, on both backends: the collector's values match a
Landscape holding a policy-stopped run, pending and overdue approvals and failed deliveries; the
``metrics --serve`` endpoint runs in a real subprocess and is scraped over HTTP and parsed with
``prometheus_client.parser``; the same metrics are metadata of the ``landscape_audit`` asset."""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dagster import AssetKey, DagsterInstance, materialize
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from governance_pipeline.contracts.clock import ManualClock
from governance_pipeline.contracts.errors import PolicyStopError
from governance_pipeline.governance.approvals import ApprovalService
from governance_pipeline.governance.events.delivery import deliver_pending
from governance_pipeline.governance.events.outbox import list_deliveries
from governance_pipeline.governance.events.subscribers import parse_subscribers
from governance_pipeline.governance.metrics import exposition
from governance_pipeline.landscape.schema import inflection_points
from governance_pipeline.landscape.store import Landscape
from governance_pipeline.orchestration.bundle_assets import landscape_audit
from governance_pipeline.orchestration.resources import LandscapeResource
from governance_pipeline_tests import policy_fixtures as pf
from governance_pipeline_tests.approval_fixtures import REQUESTER, TENANT, catalog, subject
from governance_pipeline_tests.event_fixtures import dead_url

CLI = Path(sys.executable).with_name("governance-pipeline")
RUN_SECONDS = 4.0
CHUNK = 25  # policy_fixtures.screening's chunk size


@dataclass(frozen=True)
class Busy:
    landscape: Landscape
    db_url: str
    home: Path
    run_id: str
    rows: int
    outcomes: dict[str, int]
    failed_decisions: int
    failed_deliveries: int


@pytest.fixture
def busy(landscape: Landscape, clock: ManualClock, db_url: str, tmp_path: Path) -> Busy:
    runner = pf.start(landscape, pf.screening(tmp_path / "pipeline"))
    clock.advance(RUN_SECONDS)  # the run's wall time, as its ended_at will say
    with pytest.raises(PolicyStopError):
        runner.execute()
    result = runner.result()
    with landscape.engine.connect() as conn:
        stop_row = conn.execute(select(inflection_points.c.row_index)).scalar_one()
    read = (stop_row // CHUNK + 1) * CHUNK  # the run read up to the end of the stop's chunk
    decisions = pf.decisions(landscape, runner.run_id)
    service = ApprovalService(landscape, ladders=catalog())
    for ladder in ("two_stage", "quorum2"):  # first stages' SLAs: 3600 s and 600 s
        service.request(tenant_id=TENANT, subject_type="pipeline", subject_hash=subject(ladder),
                        subject_ref=ladder, requested_by=REQUESTER, ladder=ladder)
    clock.advance(1000)  # the quorum2 stage is overdue, the two_stage one is not
    dead = parse_subscribers({"subscribers": [{"name": "dead", "kind": "webhook",
                                               "url": dead_url(), "timeout_s": 2}]}, tmp_path)
    deliver_pending(landscape, dead, clock=clock, max_attempts=1)
    failed = [d for d in list_deliveries(landscape) if d.status.value == "failed"]
    assert failed  # the fixture holds what the metrics must show
    return Busy(landscape, db_url, tmp_path / "home", runner.run_id, read,
                dict(result.outcome_counts), sum(1 for d in decisions if d.result.value == "fail"),
                len(failed))


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def check_values(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], busy: Busy, *,
                 overdue: int) -> None:
    def one(name: str, **labels: str) -> float:
        return found[(name, tuple(sorted(labels.items())))]

    assert one("governance_runs", status="failed_policy") == 1
    assert one("governance_runs", status="completed") == 0
    for outcome, count in busy.outcomes.items():
        assert one("governance_token_outcomes_total", outcome=outcome) == count
    assert one("governance_policy_stops_total") == 1
    assert one("governance_policy_decisions_total", mode="enforced", result="fail") == \
        busy.failed_decisions
    assert one("governance_approvals_pending") == 2
    assert one("governance_approval_stages_overdue") == overdue
    assert one("governance_event_delivery_failures") == busy.failed_deliveries
    assert one("governance_event_deliveries", subscriber="dead", status="failed") == \
        busy.failed_deliveries
    assert one("governance_operator_actions_total", action="approval.request",
               result="ok") == 2
    rate = [v for (name, labels), v in found.items()
            if name == "governance_run_rows_per_second" and ("run_id", busy.run_id) in labels]
    assert rate == [pytest.approx(busy.rows / RUN_SECONDS)]
    quarantined = busy.outcomes.get("quarantined", 0)
    assert one("governance_quarantine_ratio") == pytest.approx(quarantined / busy.rows)


def test_the_collector_reads_the_landscape(busy: Busy) -> None:
    check_values(samples(exposition(busy.landscape)), busy, overdue=1)


def test_an_empty_landscape_has_every_family_at_zero(landscape: Landscape) -> None:
    found = samples(exposition(landscape))
    assert found[("governance_approvals_pending", ())] == 0
    assert found[("governance_policy_stops_total", ())] == 0
    assert found[("governance_quarantine_ratio", ())] == 0
    assert not [k for k in found if k[0] == "governance_run_rows_per_second"]


# --- the endpoint, in a real process -------------------------------------------------------------
def _env(busy: Busy) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVERNANCE_")}
    return {**env, "GOVERNANCE_DB_URL": busy.db_url, "GOVERNANCE_HOME": str(busy.home)}


def _served_url(proc: subprocess.Popen[str], deadline: float) -> str:
    """The address the server prints on stderr once it listens (read with a deadline)."""
    assert proc.stderr is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stderr, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not sel.select(timeout=deadline - time.monotonic()):
                break
            line = proc.stderr.readline()
            if not line:
                break
            if line.startswith("serving metrics on "):
                return line.split()[3]
    raise AssertionError(f"the metrics server did not start (exit {proc.poll()})")


def _scrape(url: str, deadline: float) -> str:
    last: Exception | None = None
    while time.monotonic() < deadline:  # bounded: each attempt waits on its socket, never sleeps
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                assert response.status == 200
                assert response.headers["Content-Type"].startswith("text/plain")
                return response.read().decode("utf-8")
        except (urllib.error.URLError, ConnectionError) as exc:
            last = exc
    raise AssertionError(f"no answer from {url}: {last}")


def test_metrics_served_over_http_are_scraped_and_parsed(busy: Busy) -> None:
    proc = subprocess.Popen([str(CLI), "metrics", "--serve", "--port", "0"], env=_env(busy),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        url = _served_url(proc, deadline)
        assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics")
        # The server reads the database at each scrape, on the system clock: by it, both
        # approvals' first stages (due in January 2026) are overdue.
        check_values(samples(_scrape(url, deadline)), busy, overdue=2)
        second = samples(_scrape(url, deadline))
        assert second[("governance_policy_stops_total", ())] == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()  # it did not stop: do not leave it behind, then fail below
            out, err = proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err


def test_a_port_in_use_is_gp_metrics_001(landscape: Landscape, db_url: str,
                                         tmp_path: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("GOVERNANCE_")}
        env.update(GOVERNANCE_DB_URL=db_url, GOVERNANCE_HOME=str(tmp_path / "home"))
        done = subprocess.run([str(CLI), "metrics", "--serve", "--port", str(port)], env=env,
                              capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
    assert done.returncode == 1
    assert "error GP-METRICS-001" in done.stderr and "fix:" in done.stderr
    assert "Traceback" not in done.stderr


def test_metrics_printed_once_match_and_json_carries_the_same(busy: Busy) -> None:
    env = _env(busy)
    text = subprocess.run([str(CLI), "metrics"], env=env, capture_output=True, text=True,
                          timeout=60, check=True).stdout
    check_values(samples(text), busy, overdue=2)
    doc = subprocess.run([str(CLI), "metrics", "--json"], env=env, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    import json

    families = {f["name"]: f for f in json.loads(doc)["metrics"]}
    assert families["governance_policy_stops"]["samples"][0]["value"] == 1


# --- Dagster ------------------------------------------------------------------------------------
def test_landscape_audit_asset_carries_the_metrics(busy: Busy) -> None:
    with DagsterInstance.ephemeral() as instance:
        result = materialize([landscape_audit], instance=instance, resources={
            "landscape": LandscapeResource(db_url=busy.db_url, home=str(busy.home))})
    (event,) = [e for e in result.get_asset_materialization_events()
                if e.asset_key == AssetKey("landscape_audit")]
    meta: dict[str, Any] = {k: v.value for k, v in event.materialization.metadata.items()}
    assert meta["metrics/governance_policy_stops_total"] == 1
    assert meta["metrics/governance_approvals_pending"] == 2
    assert meta["metrics/governance_event_delivery_failures"] == busy.failed_deliveries
    assert "governance_policy_decisions_total" in meta["metrics"]
    counts = Counter(line.split("{")[0] for line in meta["metrics"].splitlines()
                     if line.startswith("governance_runs{"))
    assert counts == {"governance_runs": 7}
