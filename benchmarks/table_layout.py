"""What ``WITHOUT ROWID`` would do to the bulk tables of a SQLite Landscape, measured.

    python benchmarks/table_layout.py LANDSCAPE.db --rows N [--tables node_states,...]
    python benchmarks/table_layout.py --payload-sizes [--count 20000]

The first form copies each bulk table of an existing Landscape (e.g. one kept by
``benchmarks/audit_scale.py --keep``) into two fresh databases, once as it is declared and once
declared ``WITHOUT ROWID`` (the same columns, constraints and indexes), inserting the rows in
their rowid order, which is the order the product inserted them in, so each B-tree grows as it
did in the run. It prints bytes per source row (``--rows``) of each table and index, from
``dbstat``. The first line of each table reproduces the source database's own figures, which
shows the copy is faithful.

The second form measures ``payloads`` alone over synthetic payloads of fixed sizes with random
content hashes (as real ones are): where the in-page limit of index B-tree cells (~1 KB at 4 KB
pages) sends a ``WITHOUT ROWID`` row to overflow pages while a rowid table keeps it in the page.

Sizes do not depend on the machine's load; no timing is reported.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sqlite3
import tempfile
from contextlib import closing
from pathlib import Path

BULK = ("payloads", "rows", "tokens", "token_parents", "node_states", "token_outcomes",
        "routing_events", "calls", "batch_members")


def _sizes(db: sqlite3.Connection) -> dict[str, int]:
    return {name: size for name, size in db.execute(
        "SELECT name, SUM(pgsize) FROM dbstat GROUP BY name")
        if name not in ("sqlite_master", "sqlite_schema")}


def _copy(source: str, table: str, without_rowid: bool, workdir: Path) -> dict[str, int]:
    path = workdir / f"{table}_{'wr' if without_rowid else 'rowid'}.db"
    path.unlink(missing_ok=True)
    with closing(sqlite3.connect(source)) as src:
        create = src.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?",
                             (table,)).fetchone()[0]
        indexes = [sql for (sql,) in src.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
            "AND sql IS NOT NULL", (table,))]
        columns = [row[1] for row in src.execute(f"PRAGMA table_info({table})")]
    if without_rowid:
        create = re.sub(r"\)\s*$", ") WITHOUT ROWID", create.rstrip())
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("ATTACH ? AS src", (source,))
        for statement in (create, *indexes):
            db.execute(statement)
        db.execute("BEGIN")
        db.execute(f"INSERT INTO main.{table} SELECT {', '.join(columns)} FROM src.{table} "
                   "ORDER BY rowid")
        db.execute("COMMIT")
        db.execute("DETACH src")
        sizes = _sizes(db)
    path.unlink()
    return sizes


def tables(source: str, rows: int, names: list[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="gp_layout_") as tmp:
        print(f"{'table':16} {'layout':14} {'total':>7}  table and indexes, B per source row")
        for table in names:
            for without_rowid in (False, True):
                sizes = _copy(source, table, without_rowid, Path(tmp))
                parts = ", ".join(f"{name} {size / rows:.0f}" for name, size in
                                  sorted(sizes.items(), key=lambda kv: -kv[1]))
                print(f"{table:16} {'WITHOUT ROWID' if without_rowid else 'rowid':14} "
                      f"{sum(sizes.values()) / rows:7.0f}  {parts}", flush=True)


def payload_sizes(count: int) -> None:
    create = ("CREATE TABLE payloads (content_hash VARCHAR(64) NOT NULL, size_bytes INTEGER NOT "
              "NULL, data BLOB NOT NULL, created_at VARCHAR(32) NOT NULL, key_id VARCHAR(100), "
              "CONSTRAINT pk_payloads PRIMARY KEY (content_hash))")
    print(f"{count:,} payloads of each size, random content hashes, "
          f"page size {sqlite3.connect(':memory:').execute('PRAGMA page_size').fetchone()[0]}")
    print(f"{'payload':>9} {'rowid + PK index':>17} {'WITHOUT ROWID':>14}  (bytes per payload)")
    for size in (100, 300, 600, 900, 1000, 1500, 2000, 3000, 4000, 6000, 12000):
        per = []
        for suffix in ("", " WITHOUT ROWID"):
            with closing(sqlite3.connect(":memory:", isolation_level=None)) as db:
                db.execute(create + suffix)
                db.execute("BEGIN")
                for _ in range(count):
                    data = os.urandom(size)
                    db.execute("INSERT INTO payloads VALUES (?, ?, ?, ?, NULL)",
                               (hashlib.sha256(data).hexdigest(), size, data,
                                "2026-01-01T00:00:00.000000Z"))
                db.execute("COMMIT")
                per.append(sum(_sizes(db).values()) / count)
        print(f"{size:7} B {per[0]:17,.0f} {per[1]:14,.0f}  ({(per[1] - per[0]) / per[0]:+.0%})",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("landscape", nargs="?", help="A SQLite Landscape file.")
    parser.add_argument("--rows", type=int, help="Source rows of its run (for B per row).")
    parser.add_argument("--tables", default=",".join(BULK))
    parser.add_argument("--payload-sizes", action="store_true")
    parser.add_argument("--count", type=int, default=20_000)
    args = parser.parse_args()
    if args.payload_sizes:
        payload_sizes(args.count)
    elif args.landscape and args.rows:
        tables(args.landscape, args.rows, args.tables.split(","))
    else:
        parser.error("give LANDSCAPE.db and --rows, or --payload-sizes")


if __name__ == "__main__":
    main()
