"""Screenshots of the pipelines' sink assets in the Dagster UI (for the README and docs).

    .venv/bin/python scripts/sink_assets_screenshot.py [--out-dir docs/images]

In a throwaway GOVERNANCE_HOME / DAGSTER_HOME (``run_page_screenshot.ui_server``, a real
``dagster-webserver`` on 127.0.0.1 with the repository's workspace): ``claims_triage`` runs to
completion and ``claims_screening`` runs into its enforced ``note_privacy`` stop (the run fails,
as it should); then headless Chromium renders

- ``sink_lineage.png``: the ``claims_triage`` asset group — the source, the five sinks
  downstream of it, and the links to the evidence bundles downstream of the sinks;
- ``sink_neighbours.png``: the lineage of the ``claims_triage/standard`` sink — the source
  upstream, the ``evidence`` group's bundle assets downstream;
- ``sink_materialization.png``: the ``claims_triage/standard`` sink asset's latest
  materialisation with its metadata (rows, sha256, path, Landscape run id, outcome counts, policy
  snapshot hash);
- ``sink_checks.png``: the asset checks of ``claims_screening/published`` — the note_privacy
  check failed by the stop, its description giving the code, rule, row and fix.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

from dagster import DagsterRunStatus
from run_page_screenshot import ROOT, UI, find_chromium, run_job, ui_server

from governance_pipeline.orchestration import webserver

#: image → (page, window size); the group's lineage needs the height to show all five sinks.
PAGES = {
    "sink_lineage.png": ("locations/governance_pipeline/asset-groups/claims_triage/lineage",
                         "1600,1500"),
    "sink_neighbours.png": ("assets/claims_triage/standard?view=lineage", "1600,1000"),
    "sink_materialization.png": ("assets/claims_triage/standard?view=events", "1600,1000"),
    "sink_checks.png": ("assets/claims_screening/published?view=checks", "1600,1000"),
}


def run_to_end(ui: UI, job: str) -> DagsterRunStatus:
    """Launch ``job`` and wait until it ends, succeeded or failed."""
    client = ui.client
    run_id = client.submit_job_execution(job, run_config={})

    def ended() -> DagsterRunStatus | None:
        status = client.get_run_status(run_id)
        return status if status in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE) else None
    return webserver.wait_for(ui.server, f"run {run_id}", 300, ended)  # type: ignore[no-any-return]


def capture(url: str, out: Path, size: str) -> None:
    """Headless Chromium, a fresh profile, no background traffic, renders ``url`` into ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [find_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={profile}", "--hide-scrollbars",
             f"--window-size={size}", "--virtual-time-budget=25000", f"--screenshot={out}", url],
            check=True, timeout=240, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument("--workspace", type=Path, default=ROOT / "workspace.yaml")
    args = parser.parse_args()
    find_chromium()  # before minutes of setup
    with ui_server(args.workspace) as ui:
        run_job(ui, "claims_triage")
        if run_to_end(ui, "claims_screening") is not DagsterRunStatus.FAILURE:
            raise SystemExit("claims_screening should have been stopped by note_privacy")
        for name, (page, size) in PAGES.items():
            capture(ui.url(page), args.out_dir / name, size)
            print(f"wrote {args.out_dir / name}")


if __name__ == "__main__":
    main()
