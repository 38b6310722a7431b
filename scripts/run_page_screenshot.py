"""Take a screenshot of a pipeline job's run page in the Dagster UI (for the README).

    .venv/bin/python scripts/run_page_screenshot.py [--out docs/images/run_page.png]

Starts ``dagster-webserver`` on 127.0.0.1 with the repository's workspace in a throwaway
GOVERNANCE_HOME / DAGSTER_HOME, launches the ``claims_triage`` example through the GraphQL
client, waits for it to succeed, and has headless Chromium (Debian package ``chromium``) render
the run page. The UI's first-visit newsletter dialog is marked as seen first (the UI's own
``setNuxSeen`` mutation), so the page is captured as a newcomer sees it once past that dialog.
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
from pathlib import Path

from dagster import DagsterRunStatus
from dagster_graphql import DagsterGraphQLClient

from governance_pipeline.orchestration import webserver

ROOT = Path(__file__).resolve().parent.parent
def skip_newsletter_dialog(port: int) -> None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", method="POST",
        data=json.dumps({"query": "mutation SetNuxSeen { setNuxSeen }"}).encode(),
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read())
    if answer.get("data", {}).get("setNuxSeen") is not True:
        raise SystemExit(f"could not dismiss the newsletter dialog: {answer}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "run_page.png")
    parser.add_argument("--workspace", type=Path, default=ROOT / "workspace.yaml")
    parser.add_argument("--size", default="1600,1000")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium not found: apt-get install chromium")
    with tempfile.TemporaryDirectory() as tmp:
        home, dagster_home = Path(tmp) / "home", Path(tmp) / "dagster"
        dagster_home.mkdir(parents=True)
        (dagster_home / "dagster.yaml").write_text(webserver.INSTANCE_YAML, encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if k != "GOVERNANCE_DB_URL"}
        env.update(GOVERNANCE_HOME=str(home), DAGSTER_HOME=str(dagster_home),
                   GOVERNANCE_PIPELINES_DIR=str(ROOT / "examples" / "pipelines"))
        port = webserver.free_port()
        server = webserver.start(args.workspace, port, cwd=Path(tmp), env=env)
        try:
            webserver.wait_for(server, "the webserver", 180, lambda: webserver.is_up(port))
            skip_newsletter_dialog(port)
            client = DagsterGraphQLClient("127.0.0.1", port_number=port)
            run_id = client.submit_job_execution("claims_triage", run_config={})

            def done() -> DagsterRunStatus | None:
                status = client.get_run_status(run_id)
                return status if status in (DagsterRunStatus.SUCCESS,
                                            DagsterRunStatus.FAILURE) else None
            if webserver.wait_for(server, "the run", 300, done) is not DagsterRunStatus.SUCCESS:
                raise SystemExit(f"run {run_id} failed")
            args.out.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                [chromium, "--headless=new", "--no-sandbox", "--disable-gpu",
                 "--hide-scrollbars", f"--window-size={args.size}",
                 "--virtual-time-budget=20000", f"--screenshot={args.out}",
                 f"http://127.0.0.1:{port}/runs/{run_id}"],
                check=True, timeout=180, capture_output=True)
            print(f"wrote {args.out} (run {run_id})")
        finally:
            webserver.stop(server)

if __name__ == "__main__":
    main()
