"""What runtime policy costs: the screening pipeline with and without its policies attached.

    python benchmarks/policy_eval.py                  # 20k notes
    python benchmarks/policy_eval.py --rows 100000

The pipeline is examples/pipelines/claims_screening.yaml over generated adjuster notes (no
planted violations, so nothing stops), run through the engine on a fresh SQLite Landscape in a
fresh subprocess per variant. Variants: ``none`` (the node's policies removed), ``advisory``
(note_privacy: PII and secret detectors, a deny list, a threshold, evaluated and recorded for
every note) and ``rules_only`` (the rules alone, in process, without the engine: notes/s of
``evaluate``). Printed: seconds, rows/s, policy decisions recorded, peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PHRASES = ["customer called about the deductible", "photos of the damage received",
           "repair estimate attached", "site visit scheduled", "police report on file",
           "second opinion requested", "settlement offer discussed", "awaiting invoice"]


def write_notes(path: Path, rows: int) -> None:
    rng = random.Random(3)
    with path.open("w", encoding="utf-8") as fh:
        fh.write("claim_id,adjuster,amount,note\n")
        for i in range(rows):
            note = " and ".join(rng.sample(PHRASES, 3))
            fh.write(f"{i},adjuster-{rng.randrange(1, 40):02d},{rng.random() * 5000:.2f},"
                     f"{note}\n")


def _pipeline(home: Path, data: Path, variant: str) -> Path:
    doc = yaml.safe_load((ROOT / "examples/pipelines/claims_screening.yaml").read_text())
    doc["chunk_size"] = 2000
    doc["source"]["options"]["path"] = str(data)
    doc["policy_files"] = [str(ROOT / "examples/policies/note_privacy.yaml")]
    doc["sinks"]["published"]["options"]["path"] = str(home / "published.csv")
    if variant == "none":
        doc["nodes"][0]["policies"] = []
    path = home / "pipeline.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _child(variant: str, data: str, home_s: str) -> None:
    from sqlalchemy import func, select

    from governance_pipeline.contracts.ids import new_id
    from governance_pipeline.engine.config import load_pipeline
    from governance_pipeline.engine.runner import Runner
    from governance_pipeline.governance.policy.runtime import policy_for_new_run
    from governance_pipeline.landscape.schema import policy_decisions
    from governance_pipeline.landscape.store import Landscape

    home = Path(home_s)
    path = _pipeline(home, Path(data), variant)
    config = load_pipeline(path, env={})
    landscape = Landscape.open(f"sqlite:///{home}/landscape.db", home / "keys")
    run_id = new_id("run_")
    # Kill switch on: the policy is evaluated and recorded like advisory, never stops.
    hook = policy_for_new_run(landscape, config, path.parent, run_id,
                              env={"GOVERNANCE_POLICY_KILL_SWITCH": "1"})
    start = time.perf_counter()
    result = Runner.start(landscape, config, base_dir=path.parent, pipeline_path=path,
                          run_id=run_id, policy=hook).execute()
    elapsed = time.perf_counter() - start
    with landscape.engine.connect() as conn:
        decided = conn.execute(select(func.count()).select_from(policy_decisions)).scalar()
    print(json.dumps({"seconds": elapsed, "status": result.status.value, "decisions": decided,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def rules_only(data: Path) -> float:
    import csv

    from governance_pipeline.governance.policy.model import load_policy_file
    from governance_pipeline.governance.policy.rules import Counters, Subject, compile_policy

    rules = compile_policy(load_policy_file(ROOT / "examples/policies/note_privacy.yaml"))
    with data.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    subjects = [Subject(f"t{i}", i, {**r, "amount": float(r["amount"])})
                for i, r in enumerate(rows)]
    counters = Counters()
    start = time.perf_counter()
    for rule in rules:
        rule.evaluate(subjects, counters, 0.0)
    return len(rows) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--child", nargs=3, metavar=("VARIANT", "DATA", "HOME"))
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "notes.csv"
        write_notes(data, args.rows)
        print(f"rules only ({args.rows} notes, 4 rules): {rules_only(data):,.0f} notes/s")
        for variant in ("none", "advisory"):
            home = Path(tmp) / variant
            home.mkdir()
            out = subprocess.run([sys.executable, __file__, "--child", variant, str(data),
                                  str(home)], capture_output=True, text=True, check=True,
                                 env={**os.environ, "GOVERNANCE_HOME": str(home)})
            fig = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{variant:>9}: {fig['seconds']:.1f} s, {args.rows / fig['seconds']:,.0f} "
                  f"rows/s, {fig['decisions']:,} decisions, peak RSS "
                  f"{fig['peak_rss_mb']:.0f} MB ({fig['status']})")


if __name__ == "__main__":
    main()
