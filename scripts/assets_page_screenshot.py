"""Take a screenshot of the evidence bundle assets in the Dagster UI (for docs/orchestration.md).

    .venv/bin/python scripts/assets_page_screenshot.py [--out docs/images/assets_page.png]
                                                       [--page graph|soc2]

In a throwaway GOVERNANCE_HOME / DAGSTER_HOME (``run_page_screenshot.ui_server``): the
``claims_triage`` example runs, the month's SOC 2 export is approved through both stages of the
``export`` ladder with the command line, and ``export_soc2_bundle`` materialises the month in
progress with that token through GraphQL; then headless Chromium renders the ``evidence`` asset
group's lineage graph (``graph``: the audit asset with its checks, the bundle assets) or the
``soc2_bundle`` asset page (``soc2``: the materialisation and its metadata).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from run_page_screenshot import ROOT, UI, capture, find_chromium, run_job, ui_server

CLI = Path(sys.executable).with_name("governance-pipeline")
PAGES = {"graph": "locations/governance_pipeline/asset-groups/evidence/lineage",
         "soc2": "assets/soc2_bundle"}


def cli(ui: UI, *args: str) -> dict[str, object]:
    done = subprocess.run([str(CLI), *args, "--json"], env=ui.env, capture_output=True,
                          text=True, timeout=120)
    if done.returncode != 0:
        raise SystemExit(f"governance-pipeline {' '.join(args)} failed: {done.stdout}"
                         f"{done.stderr}")
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def approve_soc2(ui: UI, period: str) -> str:
    requested = cli(ui, "approvals", "request", "--export", "soc2", "--subject", period,
                    "--tenant", "default", "--actor", "rita")
    approval_id = requested["approval"]["approval_id"]  # type: ignore[index]
    for role, actor in (("compliance", "compliance-officer"), ("security", "security-officer")):
        cli(ui, "approvals", "decide", str(approval_id), "approve", "--role", role,
            "--actor", actor)
    return str(requested["token"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "assets_page.png")
    parser.add_argument("--page", choices=sorted(PAGES), default="graph")
    parser.add_argument("--workspace", type=Path, default=ROOT / "workspace.yaml")
    parser.add_argument("--size", default="1600,1000")
    args = parser.parse_args()
    find_chromium()  # before minutes of setup
    month = datetime.now(UTC).strftime("%Y-%m")
    with ui_server(args.workspace) as ui:
        run_job(ui, "claims_triage")
        token = approve_soc2(ui, month)
        run_id = run_job(ui, "export_soc2_bundle",
                         {"ops": {"soc2_bundle": {"config": {"approval_token": token,
                                                             "actor": "auditor"}}}},
                         tags={"dagster/partition": f"{month}-01"})
        capture(ui.url(PAGES[args.page]), args.out, args.size)
        print(f"wrote {args.out} (export_soc2_bundle run {run_id}, partition {month}-01)")


if __name__ == "__main__":
    main()
