"""The audit trail at scale: one full-audit run, what it stores, and what reading it back costs.

    python benchmarks/audit_scale.py [--rows 100000] [--shape linear|triage]
        [--backend sqlite|postgresql] [--pg-url postgresql://...] [--json FILE]

One run of the shipped example (``linear``: examples/pipelines/claims_linear.yaml; ``triage``:
claims_triage.yaml) over ``--rows`` generated claims, in a fresh subprocess against a fresh
Landscape (SQLite with WAL and synchronous=FULL, as the product opens it; or a new database on
the PostgreSQL server of ``--pg-url`` / ``GOVERNANCE_TEST_PG_URL``, an admin URL: the database is
created and dropped). Then, printed as a table and written as JSON with ``--json``:

* rows/s of ``Runner.start(...).execute()`` (source read, processing, sink writes with fsync,
  audit commits, finalisation, seal), its CPU seconds, and the peak RSS of that child process;
* Landscape bytes per source row, by table and by index (SQLite: the ``dbstat`` virtual table;
  PostgreSQL: ``pg_relation_size`` / ``pg_indexes_size`` / ``pg_total_relation_size``);
* wall time of ``governance-pipeline verify RUN``, ``sweep RUN`` (once each) and
  ``explain RUN --row N`` (median of ``--explain-repeats``), each a real subprocess, start-up
  included; ``explain`` also through SQLAlchemy (``GOVERNANCE_EXPLAIN_NO_DIRECT_READER=1``);
* the raw-insert limit of today's record shape: the very rows the run stored, every table,
  written again by plain ``executemany`` (sqlite3 / psycopg) into a freshly migrated database
  with the same schema, indexes and pragmas, one transaction per chunk of ``--chunk-size``
  source rows; reported as source rows/s and the ratio product / raw. Each chunk holds an equal
  share of every table, so a child row may arrive before its parent: foreign-key checks are off
  in the raw copy (they are on in the product), which makes the limit slightly generous.

``os.getloadavg()`` is printed at the start and the end: the machine is shared and every figure
must carry the load it was measured under. Input generation and the reading side of the raw
copy are not timed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SHAPES = {"linear": "claims_linear.yaml", "triage": "claims_triage.yaml"}
CLI = Path(sys.executable).with_name("governance-pipeline")


# --- the run (in a child process, so its peak RSS is its own) ------------------------------------
def _child(shape: str, data: str, home: str, db_url: str, chunk_size: int) -> None:
    os.environ["GOVERNANCE_HOME"] = home
    sys.path.insert(0, str(ROOT / "examples"))
    from governance_pipeline.engine.config import load_pipeline
    from governance_pipeline.engine.runner import Runner
    from governance_pipeline.landscape.store import Landscape

    text = (ROOT / "examples" / "pipelines" / SHAPES[shape]).read_text(encoding="utf-8")
    text = text.replace("../data/claims.csv", data).replace("chunk_size: 500",
                                                              f"chunk_size: {chunk_size}")
    path = Path(home) / f"{shape}.yaml"
    path.write_text(text, encoding="utf-8")
    config = load_pipeline(path)
    landscape = Landscape.open(db_url, Path(home) / "keys")
    start, cpu = time.perf_counter(), time.process_time()
    result = Runner.start(landscape, config, base_dir=path.parent, pipeline_path=path).execute()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    landscape.dispose()
    print(json.dumps({"seconds": elapsed, "cpu_s": cpu, "status": result.status.value,
                      "run_id": result.run_id,
                      "counts": result.outcome_counts,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def _run_pipeline(shape: str, data: Path, home: Path, db_url: str,
                  chunk_size: int) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--child", shape, str(data), str(home),
                           db_url, str(chunk_size)], capture_output=True, text=True,
                          env=_env(home, db_url))
    if proc.returncode != 0:
        raise SystemExit(f"the run failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _env(home: Path, db_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GOVERNANCE_DEBUG", "DAGSTER_HOME")}
    env.update(GOVERNANCE_HOME=str(home), GOVERNANCE_DB_URL=db_url)
    return env


# --- databases ------------------------------------------------------------------------------------
def _pg_admin(url: str) -> Any:
    import psycopg

    return psycopg.connect(_plain_pg(url), autocommit=True)


def _plain_pg(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _pg_database(admin_url: str, name: str) -> str:
    from sqlalchemy.engine import make_url

    with closing(_pg_admin(admin_url)) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    return make_url(admin_url).set(drivername="postgresql+psycopg", database=name) \
        .render_as_string(hide_password=False)


def _drop_pg_database(admin_url: str, name: str) -> None:
    with closing(_pg_admin(admin_url)) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _migrated(db_url: str) -> None:
    from governance_pipeline.landscape import migrate
    from governance_pipeline.landscape.database import create_landscape_engine

    engine = create_landscape_engine(db_url)
    migrate.upgrade(engine)
    engine.dispose()


def _table_names() -> list[str]:
    from governance_pipeline.landscape.schema import metadata

    return [t.name for t in metadata.sorted_tables]


def _sqlite_path(db_url: str) -> str:
    return db_url.removeprefix("sqlite:///")


# --- sizes ----------------------------------------------------------------------------------------
def _sizes_sqlite(db_url: str) -> dict[str, dict[str, int]]:
    """Bytes by table: its own B-tree (``table``) and each of its indexes, from ``dbstat``."""
    with closing(sqlite3.connect(_sqlite_path(db_url))) as conn:
        owner = dict(conn.execute("SELECT name, tbl_name FROM sqlite_master "
                                  "WHERE type IN ('table', 'index')").fetchall())
        sizes: dict[str, dict[str, int]] = {}
        for name, size in conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"):
            table = owner.get(name, name)
            entry = sizes.setdefault(table, {"table": 0, "indexes": 0, "total": 0})
            entry["table" if name == table else "indexes"] += size
            entry["total"] += size
            if name != table:
                entry[f"index {name}"] = size
    return sizes


def _sizes_pg(db_url: str) -> dict[str, dict[str, int]]:
    sizes: dict[str, dict[str, int]] = {}
    with closing(_pg_admin(db_url)) as conn:
        for table in _table_names():
            heap, indexes, total = conn.execute(
                "SELECT pg_relation_size(%s), pg_indexes_size(%s), pg_total_relation_size(%s)",
                (table, table, table)).fetchone()
            entry = {"table": heap, "indexes": indexes, "toast": total - heap - indexes,
                     "total": total}
            for index, size in conn.execute(
                    "SELECT indexrelid::regclass::text, pg_relation_size(indexrelid) "
                    "FROM pg_index WHERE indrelid = %s::regclass", (table,)):
                entry[f"index {index}"] = size
            sizes[table] = entry
    return sizes


# --- reading it back ------------------------------------------------------------------------------
def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _cli(home: Path, db_url: str, *args: str,
         **extra_env: str) -> tuple[float, float, int]:
    """Wall and CPU seconds (user + system: less at the mercy of the load) and exit code."""
    cpu = _children_cpu()
    start = time.perf_counter()
    proc = subprocess.run([str(CLI), *args], env={**_env(home, db_url), **extra_env},
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    return time.perf_counter() - start, _children_cpu() - cpu, proc.returncode


def _read_back(home: Path, db_url: str, run_id: str, row: int,
               repeats: int) -> dict[str, Any]:
    verify_s, verify_cpu, verify_rc = _cli(home, db_url, "verify", run_id, "--json")
    sweep_s, sweep_cpu, sweep_rc = _cli(home, db_url, "sweep", run_id, "--json")
    explains = [_cli(home, db_url, "explain", run_id, "--row", str(row), "--json")
                for _ in range(repeats)]
    # The same explain through SQLAlchemy (what every explain paid before the direct reader).
    via_landscape = [_cli(home, db_url, "explain", run_id, "--row", str(row), "--json",
                          GOVERNANCE_EXPLAIN_NO_DIRECT_READER="1") for _ in range(repeats)]
    return {"verify_s": verify_s, "verify_cpu_s": verify_cpu, "verify_exit": verify_rc,
            "sweep_s": sweep_s, "sweep_cpu_s": sweep_cpu, "sweep_exit": sweep_rc,
            "explain_row": row, "explain_median_s": statistics.median(e[0] for e in explains),
            "explain_min_s": min(e[0] for e in explains),
            "explain_median_cpu_s": statistics.median(e[1] for e in explains),
            "explain_exits": sorted({e[2] for e in explains}),
            "explain_landscape_median_s": statistics.median(e[0] for e in via_landscape),
            "explain_landscape_min_s": min(e[0] for e in via_landscape),
            "explain_landscape_median_cpu_s": statistics.median(e[1] for e in via_landscape)}


# --- the raw-insert limit -------------------------------------------------------------------------
def _stream(cursor: Any, table: str, columns: list[str]) -> Iterator[tuple[Any, ...]]:
    cursor.execute(f"SELECT {', '.join(columns)} FROM {table}")
    while batch := cursor.fetchmany(5000):
        yield from batch


def _raw_copy(db_url: str, target_url: str, chunks: int, backend: str) -> dict[str, Any]:
    """Write every stored row again with plain executemany, one transaction per chunk."""
    from governance_pipeline.landscape.schema import metadata

    tables = [t for t in metadata.sorted_tables]
    if backend == "sqlite":
        source = sqlite3.connect(_sqlite_path(db_url))
        target = sqlite3.connect(_sqlite_path(target_url), isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=OFF"):
            target.execute(f"PRAGMA {pragma}")
        cursors = {t.name: source.cursor() for t in tables}
        mark = "?"
    else:
        import psycopg

        source = psycopg.connect(_plain_pg(db_url))
        target = psycopg.connect(_plain_pg(target_url), autocommit=True)
        target.execute("SET session_replication_role = replica")  # no FK triggers (see above)
        cursors = {t.name: source.cursor(name=f"raw_{t.name}") for t in tables}
        mark = "%s"
    counts: dict[str, int] = {}
    streams: dict[str, Iterator[tuple[Any, ...]]] = {}
    statements: dict[str, str] = {}
    for t in tables:
        columns = [c.name for c in t.columns]
        with closing(source.cursor()) as cur:
            cur.execute(f"SELECT COUNT(*) FROM {t.name}")
            counts[t.name] = cur.fetchone()[0]
        if counts[t.name]:
            streams[t.name] = _stream(cursors[t.name], t.name, columns)
            statements[t.name] = (f"INSERT INTO {t.name} ({', '.join(columns)}) VALUES "
                                  f"({', '.join([mark] * len(columns))})")
    per_chunk = {name: math.ceil(n / chunks) for name, n in counts.items() if n}
    seconds = 0.0
    written = 0
    for _ in range(chunks):
        batch = {name: [row for _, row in zip(range(per_chunk[name]), streams[name])]
                 for name in streams}
        start = time.perf_counter()
        cur = target.cursor()
        cur.execute("BEGIN")
        for name in streams:  # parents before children, as the schema sorts them
            if batch[name]:
                cur.executemany(statements[name], batch[name])
        cur.execute("COMMIT")
        cur.close()
        seconds += time.perf_counter() - start
        written += sum(len(rows) for rows in batch.values())
    source.close()
    target.close()
    return {"seconds": seconds, "records": written, "records_by_table": counts}


# --- the whole measurement ------------------------------------------------------------------------
def measure(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "examples"))
    from generate_data import write_claims

    args.workdir.mkdir(parents=True, exist_ok=True)
    data = args.workdir / f"claims_{args.rows}.csv"
    if not data.exists():
        write_claims(data, args.rows, malformed=True)
    home = Path(tempfile.mkdtemp(prefix=f"scale_{args.shape}_{args.backend}_",
                                 dir=args.workdir))
    suffix = f"{os.getpid()}_{int(time.time())}"
    if args.backend == "sqlite":
        db_url = f"sqlite:///{home / 'landscape.db'}"
        raw_url = f"sqlite:///{home / 'raw.db'}"
    else:
        if not args.pg_url:
            raise SystemExit("--backend postgresql needs --pg-url or GOVERNANCE_TEST_PG_URL")
        db_url = _pg_database(args.pg_url, f"gp_scale_{suffix}")
        raw_url = _pg_database(args.pg_url, f"gp_scale_raw_{suffix}")
    try:
        run = _run_pipeline(args.shape, data, home, db_url, args.chunk_size)
        sizes = _sizes_sqlite(db_url) if args.backend == "sqlite" else _sizes_pg(db_url)
        reads = _read_back(home, db_url, run["run_id"], args.rows // 2, args.explain_repeats)
        _migrated(raw_url)
        raw = _raw_copy(db_url, raw_url, math.ceil(args.rows / args.chunk_size), args.backend)
    finally:
        if args.backend == "postgresql":
            _drop_pg_database(args.pg_url, f"gp_scale_{suffix}")
            _drop_pg_database(args.pg_url, f"gp_scale_raw_{suffix}")
    product_rps = args.rows / run["seconds"]
    raw_rps = args.rows / raw["seconds"]
    return {"rows": args.rows, "shape": args.shape, "backend": args.backend,
            "chunk_size": args.chunk_size, "run": run, "rows_per_s": product_rps,
            "sizes": sizes, "bytes_per_row": sum(s["total"] for s in sizes.values()) / args.rows,
            "read_back": reads, "raw": raw, "raw_rows_per_s": raw_rps,
            "ratio_product_raw": product_rps / raw_rps, "home": str(home)}


def _print(result: dict[str, Any], load_start: tuple[float, ...],
           load_end: tuple[float, ...]) -> None:
    rows = result["rows"]
    run = result["run"]
    print(f"\n{result['shape']} on {result['backend']}, {rows:,} rows, chunk {result['chunk_size']}"
          f"  (status {run['status']}, outcomes {run['counts']})")
    print(f"  run          {run['seconds']:8.1f} s  {result['rows_per_s']:8,.0f} rows/s  "
          f"peak RSS {run['peak_rss_mb']:,.0f} MB  ({run['cpu_s']:.1f} s CPU: less at the mercy "
          "of the load than the wall time)")
    print(f"  raw insert   {result['raw']['seconds']:8.1f} s  {result['raw_rows_per_s']:8,.0f} "
          f"rows/s  ({result['raw']['records']:,} records)  product/raw "
          f"{result['ratio_product_raw']:.2f}")
    r = result["read_back"]
    print(f"  verify RUN   {r['verify_s']:8.2f} s wall  {r['verify_cpu_s']:6.2f} s CPU  "
          f"(exit {r['verify_exit']})")
    print(f"  sweep RUN    {r['sweep_s']:8.2f} s wall  {r['sweep_cpu_s']:6.2f} s CPU  "
          f"(exit {r['sweep_exit']})")
    print(f"  explain RUN --row {r['explain_row']}: median {r['explain_median_s'] * 1000:,.0f} ms "
          f"wall (min {r['explain_min_s'] * 1000:,.0f} ms), median "
          f"{r['explain_median_cpu_s'] * 1000:,.0f} ms CPU (exit {r['explain_exits']})")
    print(f"    through SQLAlchemy: median {r['explain_landscape_median_s'] * 1000:,.0f} ms wall "
          f"(min {r['explain_landscape_min_s'] * 1000:,.0f} ms), median "
          f"{r['explain_landscape_median_cpu_s'] * 1000:,.0f} ms CPU")
    total = sum(s["total"] for s in result["sizes"].values())
    print(f"  Landscape {result['bytes_per_row']:,.0f} B/row in all ({total / 1e6:,.0f} MB); "
          "by table and index, B/row:")
    print(f"    {'table':24} {'table':>8} {'indexes':>8} {'total':>8}"
          + ("  (total includes TOAST)" if result["backend"] == "postgresql" else ""))
    small = 0
    for name, s in sorted(result["sizes"].items(), key=lambda kv: -kv[1]["total"]):
        if s["total"] < total / 200:  # under 0.5 % of the database: summed below
            small += s["total"]
            continue
        print(f"    {name:24} {s['table'] / rows:8.0f} {s['indexes'] / rows:8.0f} "
              f"{s['total'] / rows:8.0f}")
        for key, size in sorted(s.items(), key=lambda kv: -kv[1]):
            if key.startswith("index ") and size >= total / 200:
                print(f"      {key.removeprefix('index '):38} {size / rows:8.0f}")
    print(f"    {'(the other tables)':24} {'':8} {'':8} {small / rows:8.0f}")
    print(f"  load average: start {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}, "
          f"end {load_end[0]:.2f} {load_end[1]:.2f} {load_end[2]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="linear")
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--pg-url", default=os.environ.get("GOVERNANCE_TEST_PG_URL"))
    parser.add_argument("--chunk-size", type=int, default=2000)
    parser.add_argument("--explain-repeats", type=int, default=7)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "gp-bench")
    parser.add_argument("--json", type=Path, help="Also write the figures to this file.")
    parser.add_argument("--keep", action="store_true", help="Keep the run's home directory.")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        shape, data, home, db_url, chunk_size = args.child
        _child(shape, data, home, db_url, int(chunk_size))
        return
    load_start = os.getloadavg()
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average {load_start[0]:.2f} "
          f"{load_start[1]:.2f} {load_start[2]:.2f}, {os.cpu_count()} CPUs", flush=True)
    result = measure(args)
    load_end = os.getloadavg()
    result.update(load_start=load_start, load_end=load_end,
                  measured_at=datetime.now(UTC).isoformat(timespec="seconds"))
    _print(result, load_start, load_end)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    if not args.keep:
        import shutil

        shutil.rmtree(result["home"], ignore_errors=True)


if __name__ == "__main__":
    main()
