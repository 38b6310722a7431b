"""The cost of running a pipeline as a Dagster run: wall time and peak RSS, Dagster vs the engine.

    python benchmarks/dagster_overhead.py                 # triage example, 100k rows
    python benchmarks/dagster_overhead.py --rows 20000 --modes engine in_process

Modes, each a fresh process tree against a fresh SQLite Landscape and a fresh Dagster home:

- ``engine``: ``Runner.start(...).execute()`` in one process (the engine called directly);
- ``in_process``: ``governance-pipeline run PIPELINE`` — a Dagster run on the local instance,
  steps in the CLI's process;
- ``multiprocess``: ``governance-pipeline run --executor multiprocess`` — every step in its own
  spawned process (at most one per CPU at a time).

The pipeline is the shipped fork/coalesce/aggregation example (``claims_triage``, chunk size
500 from its YAML) reading a generated claims file. Wall time covers the whole command,
interpreter start and imports included, since that is what a user waits for. Peak RSS is the
largest resident set of any one process of the tree (``RUSAGE_CHILDREN`` of a wrapper), so for
``multiprocess`` it is the largest single step process, not their sum.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLI = Path(sys.executable).with_name("governance-pipeline")
MODES = ("engine", "in_process", "multiprocess")

_ENGINE = """
import sys
from pathlib import Path
from governance_pipeline.contracts.settings import Settings
from governance_pipeline.engine.config import load_pipeline
from governance_pipeline.engine.runner import Runner
from governance_pipeline.landscape.store import Landscape

path = Path(sys.argv[1])
landscape = Landscape.from_settings(Settings.from_env())
result = Runner.start(landscape, load_pipeline(path), base_dir=path.parent,
                      pipeline_path=path).execute()
print(result.status.value)
"""


def _wrapped(argv: list[str], env: dict[str, str]) -> None:
    """Runs inside the wrapper process: the command, then its wall time and peak RSS as JSON."""
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"seconds": elapsed, "peak_rss_mb": peak_kb / 1024,
                      "returncode": proc.returncode, "stdout": proc.stdout[-4000:],
                      "stderr": proc.stderr[-2000:]}))


def pipeline_file(workdir: Path, rows: int) -> Path:
    sys.path.insert(0, str(ROOT / "examples"))
    from generate_data import write_claims

    data = workdir / f"claims_{rows}.csv"
    if not data.exists():
        write_claims(data, rows, malformed=True)
    text = (ROOT / "examples" / "pipelines" / "claims_triage.yaml").read_text(encoding="utf-8")
    path = workdir / f"claims_triage_{rows}.yaml"
    path.write_text(text.replace("../data/claims.csv", str(data)), encoding="utf-8")
    return path


def measure(mode: str, pipeline: Path, workdir: Path) -> dict[str, object]:
    with tempfile.TemporaryDirectory(dir=workdir) as home:
        env = {k: v for k, v in os.environ.items()
               if k not in ("GOVERNANCE_DB_URL", "DAGSTER_HOME", "GOVERNANCE_CRASH_AT")}
        env["GOVERNANCE_HOME"] = home
        if mode == "engine":
            argv = [sys.executable, "-c", _ENGINE, str(pipeline)]
        else:
            argv = [str(CLI), "run", str(pipeline), "--json", "--executor", mode]
        out = subprocess.run([sys.executable, __file__, "--wrap", json.dumps(argv)],
                             env=env, check=True, capture_output=True, text=True)
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    if figures["returncode"] != 0:
        raise SystemExit(f"{mode} failed ({figures['returncode']}):\n{figures['stderr']}")
    if mode != "engine":
        figures["counts"] = json.loads(figures["stdout"])["counts"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--workdir", type=Path,
                        default=Path(tempfile.gettempdir()) / "gp-bench-dagster")
    parser.add_argument("--wrap", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.wrap:
        _wrapped(json.loads(args.wrap), dict(os.environ))
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    pipeline = pipeline_file(args.workdir, args.rows)
    print(f"claims_triage, {args.rows} rows, {os.cpu_count()} CPUs")
    print(f"{'mode':13} {'seconds':>8} {'rows/s':>8} {'peak RSS MB':>11} {'× engine':>9}")
    base: float | None = None
    counts: dict[str, object] = {}
    for mode in args.modes:
        f = measure(mode, pipeline, args.workdir)
        seconds = float(f["seconds"])  # type: ignore[arg-type]
        base = seconds if mode == "engine" else base
        ratio = f"{seconds / base:9.2f}" if base else f"{'-':>9}"
        print(f"{mode:13} {seconds:8.1f} {args.rows / seconds:8.0f} "
              f"{float(f['peak_rss_mb']):11.0f} {ratio}", flush=True)  # type: ignore[arg-type]
        if "counts" in f:
            counts[mode] = f["counts"]
    if len({json.dumps(c, sort_keys=True) for c in counts.values()}) > 1:
        raise SystemExit(f"outcome counts differ between executors: {counts}")


if __name__ == "__main__":
    main()
