"""The plan of every query the engine (run, resume), explain, sweep, verify and ``runs`` send to
the bulk tables, as the database under the current schema executes it.

    .venv/bin/python scripts/query_plans.py [--backend sqlite|postgresql] [--pg-url URL]
        [--write]

Records runs with the real engine into a fresh Landscape migrated to the head revision: two
runs of the triage example (fork, coalesce, aggregation with batches left as drafts across
chunks, failing calls) and one of the linear example, plus a triage run killed after its
second chunk (``GOVERNANCE_CRASH_AT``) and then resumed. Every statement those readers send is
captured as it reaches the driver (text and parameters, named by the function that sent it),
and each one that reads or updates a bulk table is explained with its own parameters: ``EXPLAIN
QUERY PLAN`` on SQLite (no ``ANALYZE`` statistics, as the product runs), ``EXPLAIN`` on
PostgreSQL after ``ANALYZE`` with ``enable_seqscan = off``, so the plan shows the index that can
serve the query rather than the sequential scan a table this small would get (a query no index
can serve still shows ``Seq Scan``).

Without ``--write`` the Markdown is printed; with it, the part between the
``query-plans:<backend>`` markers is replaced in docs/landscape.md (per reader and statement, the
index reaching each bulk table) and in docs/query_plans.md (each distinct statement's plan).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, text

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
BULK = ("rows", "tokens", "token_parents", "node_states", "token_outcomes", "routing_events",
        "payloads", "calls", "batch_members", "compact_states")
_TOUCHES = re.compile(r"\b(?:FROM|JOIN|UPDATE)\s+(" + "|".join(BULK) + r")\b", re.I)
_RUN_ID = re.compile(r"run_[0-9a-f]{32}")

# The run to resume, in a child process that kills itself after its second chunk.
_CHILD = """
import sys
from pathlib import Path
from governance_pipeline.engine.config import load_pipeline
from governance_pipeline.engine.runner import Runner
from governance_pipeline.landscape.store import Landscape
url, home, path = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
landscape = Landscape.open(url, home / "keys")
Runner.start(landscape, load_pipeline(path), base_dir=path.parent, pipeline_path=path).execute()
"""


@dataclass
class Statement:
    reader: str  # the step of the script that ran it (engine, resume, explain, ...)
    caller: str  # module:function of the product that sent it
    sql: str
    params: Any


def _caller() -> str:
    """The innermost function of the product (not SQLAlchemy, not this script, not the plain-SQL
    reader that only passes statements on) on the stack."""
    frame = sys._getframe(2)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if (module.startswith("governance_pipeline.")
                and module != "governance_pipeline.landscape.reader"):
            return f"{module.removeprefix('governance_pipeline.')}:{frame.f_code.co_name}"
        frame = frame.f_back
    return "?"


class Capture:
    def __init__(self) -> None:
        self.reader = "setup"
        self.statements: list[Statement] = []

    def __call__(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
                 executemany: bool) -> None:
        head = statement.lstrip().split(None, 1)[0].upper()
        if executemany or head not in ("SELECT", "WITH", "UPDATE") or not _TOUCHES.search(statement):
            return
        self.statements.append(Statement(self.reader, _caller(), statement, parameters))

    @contextmanager
    def reading(self, reader: str) -> Iterator[None]:
        previous, self.reader = self.reader, reader
        try:
            yield
        finally:
            self.reader = previous


# --- the runs -------------------------------------------------------------------------------------
def _pipeline(home: Path, shape: str, rows: int, seed: int) -> Path:
    sys.path.insert(0, str(ROOT / "examples"))
    from generate_data import write_claims

    data = home / f"claims_{shape}_{seed}.csv"
    write_claims(data, rows, seed=seed, malformed=True)
    doc = (ROOT / "examples" / "pipelines" / f"claims_{shape}.yaml").read_text(encoding="utf-8")
    # Small chunks and batches, so batches stay buffered across chunks (and resume restores them).
    edits = [("../data/claims.csv", str(data)), ("chunk_size: 500", "chunk_size: 40")]
    if shape == "triage":
        edits.append(("trigger: {count: 50}", "trigger: {count: 7}"))
    for old, new in edits:
        if old not in doc:
            raise SystemExit(f"examples/pipelines/claims_{shape}.yaml has no {old!r} any more")
        doc = doc.replace(old, new)
    path = home / f"{shape}_{seed}.yaml"
    path.write_text(doc, encoding="utf-8")
    return path


def _env(home: Path, db_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GOVERNANCE_DEBUG", "DAGSTER_HOME")}
    env.update(GOVERNANCE_HOME=str(home), GOVERNANCE_DB_URL=db_url, **extra)
    return env


def record(capture: Capture, home: Path, db_url: str) -> dict[str, Any]:
    from governance_pipeline.engine.config import load_pipeline
    from governance_pipeline.engine.resume import resume
    from governance_pipeline.engine.runner import Runner
    from governance_pipeline.landscape.store import Landscape

    os.environ["GOVERNANCE_HOME"] = str(home)
    landscape = Landscape.open(db_url, home / "keys")
    run_ids = []
    for shape, seed in (("triage", 1), ("linear", 2), ("triage", 3)):
        path = _pipeline(home, shape, 120, seed)
        with capture.reading("engine (run)"):
            result = Runner.start(landscape, load_pipeline(path), base_dir=path.parent,
                                  pipeline_path=path).execute()
        run_ids.append(result.run_id)
    crashed = _pipeline(home, "triage", 120, 4)
    proc = subprocess.run([sys.executable, "-c", _CHILD, db_url, str(home), str(crashed)],
                          capture_output=True, text=True,
                          env=_env(home, db_url, GOVERNANCE_CRASH_AT="chunk.committed:2"))
    if proc.returncode != -9:
        raise SystemExit(f"the run to resume was not killed (exit {proc.returncode}):\n"
                         f"{proc.stderr[-2000:]}")
    from governance_pipeline.landscape.queries import list_runs

    killed = [r.run.run_id for r in list_runs(landscape) if r.run.run_id not in run_ids]
    assert len(killed) == 1, killed
    with capture.reading("resume"):
        resume(landscape, killed[0]).execute()
    return {"landscape": landscape, "run_ids": run_ids, "resumed": killed[0]}


def read_back(capture: Capture, landscape: Any, run_id: str) -> None:
    from sqlalchemy import select

    from governance_pipeline.landscape.explain import explain
    from governance_pipeline.landscape.queries import list_runs
    from governance_pipeline.landscape.schema import token_outcomes, tokens
    from governance_pipeline.landscape.sweep import sweep
    from governance_pipeline.landscape.verify import verify

    with landscape.engine.connect() as conn:  # a row that forked, was batched and coalesced
        token = conn.execute(
            select(tokens.c.token_id).join(token_outcomes,
                                           token_outcomes.c.token_id == tokens.c.token_id)
            .where(tokens.c.run_id == run_id, token_outcomes.c.outcome == "buffered")
            .order_by(tokens.c.token_id).limit(1)).scalar_one()
        row_index = int(conn.execute(select(tokens.c.row_id).where(
            tokens.c.token_id == token)).scalar_one().rsplit(".r", 1)[1])
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("explain --row", lambda: explain(landscape, run_id, row_index=row_index)),
        ("explain --token", lambda: explain(landscape, run_id, token_id=token)),
        ("sweep RUN", lambda: sweep(landscape, run_id)),
        ("sweep (all runs)", lambda: sweep(landscape)),
        ("verify RUN", lambda: verify(landscape, run_id)),
        ("runs", lambda: list_runs(landscape)),
    ]
    for reader, call in steps:
        with capture.reading(reader):
            call()


# --- the plans ------------------------------------------------------------------------------------
def _plan_sqlite(conn: Any, st: Statement) -> list[str]:
    rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + st.sql, st.params).all()
    depth: dict[int, int] = {0: -1}
    lines = []
    for node_id, parent, _, detail in rows:
        depth[node_id] = depth.get(parent, -1) + 1
        lines.append("  " * depth[node_id] + detail)
    return lines


def _plan_pg(conn: Any, st: Statement) -> list[str]:
    rows = conn.exec_driver_sql("EXPLAIN (COSTS OFF) " + st.sql, st.params).scalars().all()
    return [_RUN_ID.sub("run_…", r) for r in rows if r.strip()]


def _uses(st: Statement, plan: list[str], backend: str) -> str:
    """Per bulk table: the index (or scan) that reaches it, one entry per access."""
    found = _uses_sqlite(st.sql, plan) if backend == "sqlite" else _uses_pg(plan)
    return "; ".join(dict.fromkeys(found)) or "no bulk table"


def _uses_sqlite(sql: str, plan: list[str]) -> list[str]:
    # SQLite names an aliased table by its alias only.
    tables = {t: t for t in BULK} | {alias: table for table, alias in re.findall(
        r"\b(" + "|".join(BULK) + r") AS (\w+)", sql)}
    found = []
    for line in plan:
        m = re.search(r"\b(SEARCH|SCAN) (\w+)(?: AS \w+)?(?: USING (?:COVERING )?(?:INDEX (\w+)|"
                      r"(INTEGER PRIMARY KEY|PRIMARY KEY))?(?: \(([^)]*)\))?)?", line)
        if not m or m.group(2) not in tables:
            continue
        name = tables[m.group(2)]
        index = m.group(3) or m.group(4)
        if index is None:
            found.append(f"`{name}`: **full scan**")
        else:
            found.append(f"`{name}`: {index} ({m.group(5) or 'all entries'})")
    return found


_COND_COLUMN = re.compile(r"\(*(\w+)\)?(?:::\w+)? (?:=|<|>|<=|>=|IS)")


def _own_lines(plan: list[str], i: int) -> Iterator[str]:
    """The detail lines of the plan node on line ``i`` (up to its first child or sibling)."""
    for line in plan[i + 1:]:
        if "->" in line or len(line) - len(line.lstrip()) <= len(plan[i]) - len(plan[i].lstrip()):
            return
        yield line


def _uses_pg(plan: list[str]) -> list[str]:
    found = []
    heap: str | None = None
    for i, line in enumerate(plan):
        index = table = None
        if m := re.search(r"Bitmap Heap Scan on (\w+)", line):
            heap = m.group(1)
        elif m := re.search(r"Bitmap Index Scan on (\w+)", line):
            index, table = m.group(1), heap
        elif m := re.search(r"Index (?:Only )?Scan(?: Backward)? using (\w+) on (\w+)", line):
            index, table = m.group(1), m.group(2)
        elif m := re.search(r"Seq Scan on (\w+)", line):
            if m.group(1) in BULK:
                found.append(f"`{m.group(1)}`: **full scan**")
            continue
        if index is None or table not in BULK:
            continue
        cond = next((c for c in _own_lines(plan, i) if "Index Cond:" in c), None)
        columns = ", ".join(dict.fromkeys(_COND_COLUMN.findall(cond))) if cond else "all entries"
        found.append(f"`{table}`: {index} ({columns})")
    return found


def plans(landscape: Any, statements: list[Statement]) -> list[tuple[Statement, list[str]]]:
    seen: set[tuple[str, str, str]] = set()
    out = []
    backend = landscape.engine.dialect.name
    with landscape.engine.connect() as conn:
        if backend == "postgresql":
            conn.exec_driver_sql("ANALYZE")
            conn.exec_driver_sql("SET enable_seqscan = off")
        for st in statements:
            key = (st.reader, st.caller, st.sql)
            if key in seen:
                continue
            seen.add(key)
            plan = _plan_sqlite(conn, st) if backend == "sqlite" else _plan_pg(conn, st)
            out.append((st, plan))
        conn.rollback()
    return out


def _brief_sql(sql: str) -> str:
    one = " ".join(sql.split())
    one = re.sub(r"SELECT .*? FROM", "SELECT … FROM", one, count=1) if len(one) > 160 else one
    return one if len(one) <= 240 else one[:237] + "…"


def summary(backend: str, found: list[tuple[Statement, list[str]]]) -> str:
    """For docs/landscape.md: per reader and statement, the index that reaches each bulk table."""
    name = "SQLite" if backend == "sqlite" else "PostgreSQL"
    lines = [f"| reader | function | bulk table: index ({name}) |", "|---|---|---|"]
    for st, plan in found:
        lines.append(f"| {st.reader} | `{st.caller}` | {_uses(st, plan, backend)} |")
    return "\n".join(lines)


def full_plans(backend: str, found: list[tuple[Statement, list[str]]]) -> str:
    """For docs/query_plans.md: each distinct statement, the readers that send it, its plan."""
    readers: dict[tuple[str, str], list[str]] = {}
    plan_of: dict[tuple[str, str], tuple[Statement, list[str]]] = {}
    for st, plan in found:
        readers.setdefault((st.caller, st.sql), []).append(st.reader)
        plan_of.setdefault((st.caller, st.sql), (st, plan))
    lines = []
    for key, (st, plan) in plan_of.items():
        lines += [f"**{', '.join(readers[key])}**, `{st.caller}`: `{_brief_sql(st.sql)}`", "",
                  "```", *plan, "```", ""]
    return "\n".join(lines).rstrip()


def _block(backend: str, body: str) -> str:
    return (f"<!-- query-plans:{backend}:start (generated by scripts/query_plans.py --backend "
            f"{backend} --write; do not edit by hand) -->\n\n{body}\n\n"
            f"<!-- query-plans:{backend}:end -->")


def _write(path: Path, backend: str, block: str) -> None:
    doc = path.read_text(encoding="utf-8")
    pattern = re.compile(rf"<!-- query-plans:{backend}:start.*?<!-- query-plans:{backend}:end -->",
                         re.S)
    if not pattern.search(doc):
        raise SystemExit(f"{path} has no query-plans:{backend} markers")
    path.write_text(pattern.sub(lambda _: block, doc), encoding="utf-8")


def _pg_database(admin_url: str) -> tuple[str, Callable[[], None]]:
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    name = f"gp_plans_{os.getpid()}"
    admin = create_engine(make_url(admin_url).set(drivername="postgresql+psycopg"),
                          poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        conn.execute(text(f"CREATE DATABASE {name}"))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()

    url = make_url(admin_url).set(drivername="postgresql+psycopg", database=name)
    return url.render_as_string(hide_password=False), drop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--pg-url", default=os.environ.get("GOVERNANCE_TEST_PG_URL"))
    parser.add_argument("--write", action="store_true",
                        help="Replace the generated blocks in docs/landscape.md and "
                             "docs/query_plans.md.")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="gp_plans_"))
    drop: Callable[[], None] = lambda: None  # noqa: E731
    if args.backend == "sqlite":
        db_url = f"sqlite:///{home / 'landscape.db'}"
    else:
        if not args.pg_url:
            raise SystemExit("--backend postgresql needs --pg-url or GOVERNANCE_TEST_PG_URL")
        db_url, drop = _pg_database(args.pg_url)
    capture = Capture()
    event.listen(Engine, "before_cursor_execute", capture)
    try:
        made = record(capture, home, db_url)
        landscape = made["landscape"]
        read_back(capture, landscape, made["run_ids"][0])
        event.remove(Engine, "before_cursor_execute", capture)
        found = plans(landscape, [s for s in capture.statements if s.reader != "setup"])
        landscape.dispose()
    finally:
        drop()
        import shutil

        shutil.rmtree(home, ignore_errors=True)
    if args.write:
        _write(DOCS / "landscape.md", args.backend, _block(args.backend, summary(args.backend, found)))
        _write(DOCS / "query_plans.md", args.backend,
               _block(args.backend, full_plans(args.backend, found)))
    else:
        print(summary(args.backend, found), full_plans(args.backend, found), sep="\n\n")


if __name__ == "__main__":
    main()
