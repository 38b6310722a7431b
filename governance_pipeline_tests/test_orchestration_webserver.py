"""A real client against a real server: dagster-webserver serving the repository's workspace.

The server runs in its own session (``dagster`` processes started in the background ignore
signals otherwise) and is stopped with SIGINT; every wait is bounded.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus
from dagster_graphql import DagsterGraphQLClient

from governance_pipeline.contracts.enums import RunStatus
from governance_pipeline.landscape.queries import get_run
from governance_pipeline.orchestration import webserver
from governance_pipeline.orchestration.lifecycle import TAG_RUN_ID, run_result
from governance_pipeline_tests.engine_fixtures import ROOT
from governance_pipeline_tests.orchestration_fixtures import Home, assert_clean, make_home

pytestmark = [pytest.mark.slow,
              # dagster_graphql still calls gql the pre-4.0 way; not ours to fix.
              pytest.mark.filterwarnings("ignore::DeprecationWarning:gql.client")]

SERVER_START_S = 180.0
RUN_FINISH_S = 180.0
SERVER_STOP_S = 30.0

@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    log: Path
    port: int
    home: Home
    dagster_home: Path


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    home = make_home(tmp_path, f"sqlite:///{tmp_path / 'landscape.db'}", monkeypatch)
    home.copy_examples()
    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text(webserver.INSTANCE_YAML, encoding="utf-8")
    port = webserver.free_port()
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home)}
    log_path = tmp_path / "webserver.log"
    log = log_path.open("wb")
    proc = webserver.start(ROOT / "workspace.yaml", port, cwd=tmp_path, env=env, output=log)
    try:
        webserver.wait_for(proc, "the webserver", SERVER_START_S, lambda: webserver.is_up(port),
                           log_path)
        yield Server(proc, log_path, port, home, dagster_home)
    finally:
        webserver.stop(proc, SERVER_STOP_S)
        log.close()


def test_a_job_launched_through_graphql_writes_the_audit_trail(server: Server) -> None:
    home = server.home
    client = DagsterGraphQLClient("127.0.0.1", port_number=server.port)
    dagster_run_id = client.submit_job_execution("claims_triage", run_config={})

    def finished() -> DagsterRunStatus | None:
        status = client.get_run_status(dagster_run_id)
        return status if status in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE,
                                    DagsterRunStatus.CANCELED) else None
    status = webserver.wait_for(server.proc, "the run to finish", RUN_FINISH_S, finished, server.log)
    assert status is DagsterRunStatus.SUCCESS, server.log.read_text()[-3000:]

    with DagsterInstance.from_config(str(server.dagster_home)) as instance:
        record = instance.get_run_by_id(dagster_run_id)
        assert record is not None
        run_id = record.tags[TAG_RUN_ID]
    ls = home.landscape()
    try:
        run = assert_clean(ls, run_id)
        assert run.status is RunStatus.COMPLETED and run.dagster_run_id == dagster_run_id
        assert run.pipeline_path == str(home.pipelines / "claims_triage.yaml")
        result = run_result(ls, run_id)
        assert result.outcome_counts["completed"] > 0
        for sink in result.sinks:
            assert Path(sink.path_or_uri).is_file()
            assert Path(sink.path_or_uri).is_relative_to(home.home)
        assert get_run(ls, run_id).resume_count == 0
    finally:
        ls.dispose()


REEXECUTE = """
mutation Reexecute($parent: String!) {
  launchPipelineReexecution(reexecutionParams: {parentRunId: $parent, strategy: FROM_FAILURE}) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}
"""


def graphql(port: int, query: str, variables: dict[str, str]) -> dict[str, object]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", method="POST",
        data=json.dumps({"query": query, "variables": variables}).encode(),
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def test_reexecution_from_failure_through_graphql_continues_the_same_landscape_run(
        server: Server) -> None:
    home = server.home
    client = DagsterGraphQLClient("127.0.0.1", port_number=server.port)
    blocker = home.home / "out" / "claims_linear" / "high_value.csv"
    blocker.mkdir(parents=True)  # the close step cannot put that output there

    def over(run_id: str) -> Callable[[], DagsterRunStatus | None]:
        def probe() -> DagsterRunStatus | None:
            status = client.get_run_status(run_id)
            return status if status in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE,
                                        DagsterRunStatus.CANCELED) else None
        return probe

    failed = client.submit_job_execution("claims_linear", run_config={})
    assert webserver.wait_for(server.proc, "the failure", RUN_FINISH_S,
                              over(failed), server.log) is DagsterRunStatus.FAILURE
    blocker.rmdir()
    answer = graphql(server.port, REEXECUTE, {"parent": failed})
    launched = answer["data"]["launchPipelineReexecution"]  # type: ignore[index]
    assert launched["__typename"] == "LaunchRunSuccess", answer
    again = launched["run"]["runId"]
    assert webserver.wait_for(server.proc, "the re-execution", RUN_FINISH_S,
                              over(again), server.log) is DagsterRunStatus.SUCCESS, server.log.read_text()[-3000:]

    with DagsterInstance.from_config(str(server.dagster_home)) as instance:
        tags = [instance.get_run_by_id(r).tags[TAG_RUN_ID] for r in (failed, again)]  # type: ignore[union-attr]
    assert tags[0] == tags[1]
    ls = home.landscape()
    try:
        run = assert_clean(ls, tags[0])
        assert run.resume_count == 1 and run.dagster_run_id == again
        assert (home.home / "out" / "claims_linear" / "high_value.csv").is_file()
    finally:
        ls.dispose()
