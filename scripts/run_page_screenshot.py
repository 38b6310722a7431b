"""Take a screenshot of a pipeline job's run page in the Dagster UI (for the README).

    .venv/bin/python scripts/run_page_screenshot.py [--out docs/images/run_page.png]

Starts ``dagster-webserver`` on 127.0.0.1 with the repository's workspace in a throwaway
GOVERNANCE_HOME / DAGSTER_HOME, launches the ``claims_triage`` example through the GraphQL
client, waits for it to succeed, and has headless Chromium (Debian package ``chromium``) render
the run page. The UI's first-visit newsletter dialog is marked as seen first (the UI's own
``setNuxSeen`` mutation), so the page is captured as a newcomer sees it once past that dialog.

``ui_server``, ``run_job`` and ``capture`` are shared with ``assets_page_screenshot.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagster import DagsterRunStatus
from dagster_graphql import DagsterGraphQLClient

from governance_pipeline.orchestration import webserver

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class UI:
    """A running webserver and the environment (homes) it serves."""

    server: Any  # subprocess.Popen[bytes]
    port: int
    env: dict[str, str]

    @property
    def client(self) -> DagsterGraphQLClient:
        return DagsterGraphQLClient("127.0.0.1", port_number=self.port)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"


def find_chromium() -> str:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium not found: apt-get install chromium")
    return chromium


def skip_newsletter_dialog(port: int) -> None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", method="POST",
        data=json.dumps({"query": "mutation SetNuxSeen { setNuxSeen }"}).encode(),
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read())
    if answer.get("data", {}).get("setNuxSeen") is not True:
        raise SystemExit(f"could not dismiss the newsletter dialog: {answer}")


@contextmanager
def ui_server(workspace: Path) -> Iterator[UI]:
    """The webserver over a throwaway GOVERNANCE_HOME / DAGSTER_HOME, past the first-visit
    dialog; stopped (and the homes removed) when the block ends."""
    with tempfile.TemporaryDirectory() as tmp:
        home, dagster_home = Path(tmp) / "home", Path(tmp) / "dagster"
        dagster_home.mkdir(parents=True)
        (dagster_home / "dagster.yaml").write_text(webserver.INSTANCE_YAML, encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if k != "GOVERNANCE_DB_URL"}
        env.update(GOVERNANCE_HOME=str(home), DAGSTER_HOME=str(dagster_home),
                   GOVERNANCE_PIPELINES_DIR=str(ROOT / "examples" / "pipelines"))
        port = webserver.free_port()
        server = webserver.start(workspace, port, cwd=Path(tmp), env=env)
        try:
            webserver.wait_for(server, "the webserver", 180, lambda: webserver.is_up(port))
            skip_newsletter_dialog(port)
            yield UI(server, port, env)
        finally:
            webserver.stop(server)


def run_job(ui: UI, job: str, run_config: dict[str, Any] | None = None,
            tags: dict[str, str] | None = None) -> str:
    """Launch ``job`` through GraphQL and wait for it to succeed; returns the Dagster run id."""
    client = ui.client
    run_id = client.submit_job_execution(job, run_config=run_config or {}, tags=tags)

    def done() -> DagsterRunStatus | None:
        status = client.get_run_status(run_id)
        return status if status in (DagsterRunStatus.SUCCESS,
                                    DagsterRunStatus.FAILURE) else None
    if webserver.wait_for(ui.server, f"run {run_id}", 300, done) is not DagsterRunStatus.SUCCESS:
        raise SystemExit(f"{job} run {run_id} failed")
    return run_id


def capture(url: str, out: Path, size: str) -> None:
    """Headless Chromium renders ``url`` (given time for the UI's queries) into ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [find_chromium(), "--headless=new", "--no-sandbox", "--disable-gpu",
         "--hide-scrollbars", f"--window-size={size}",
         "--virtual-time-budget=20000", f"--screenshot={out}", url],
        check=True, timeout=180, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "run_page.png")
    parser.add_argument("--workspace", type=Path, default=ROOT / "workspace.yaml")
    parser.add_argument("--size", default="1600,1000")
    args = parser.parse_args()
    find_chromium()  # before minutes of setup
    with ui_server(args.workspace) as ui:
        run_id = run_job(ui, "claims_triage")
        capture(ui.url(f"runs/{run_id}"), args.out, args.size)
        print(f"wrote {args.out} (run {run_id})")


if __name__ == "__main__":
    main()
