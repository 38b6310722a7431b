"""Audit write throughput of the Recorder against the raw driver, on SQLite and PostgreSQL.

Each source row of a chunk produces a realistic record mix: its payload (canonical JSON, stored by
content hash), one ``rows`` record, one token, four completed node states (source, two
transforms, sink) and one terminal outcome — seven ledgered audit records plus one payload. A
chunk of ``--chunk-rows`` source rows is one Recorder unit (one transaction, one ledger entry),
as the engine's checkpoint-after-sink unit is.

The physical reference writes the very same row tuples with the plain driver (``sqlite3`` /
``psycopg`` ``executemany``; on PostgreSQL also binary ``COPY``, the Recorder's method there) into a
separately migrated database with the same schema, pragmas and indexes, one transaction per
chunk. Recorder and reference chunks alternate, so both see the same machine load; what the
Recorder adds on top of the reference (validation, row conversion, record hashes, the manifest
and the chain entry) is the overhead measured. Building the records (what the engine does:
dataclasses, ids, payload canonicalisation) is timed separately from writing them.

    .venv/bin/python benchmarks/landscape_write.py [--chunks 40] [--chunk-rows 1000]
        [--pg-url postgresql://...] [--only sqlite|postgres] [--profile]

PostgreSQL comes from ``--pg-url`` or ``GOVERNANCE_TEST_PG_URL`` (an admin URL: scratch databases
are created and dropped); without one the PostgreSQL half is skipped with a note.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from governance_pipeline.contracts.clock import ManualClock
from governance_pipeline.contracts.enums import Determinism, NodeStateStatus, NodeType, Outcome
from governance_pipeline.contracts.hashing import sha256_hex
from governance_pipeline.contracts.ids import new_id
from governance_pipeline.contracts.records import Node, NodeState, SourceRow, Token, TokenOutcome
from governance_pipeline.landscape.database import normalize_url
from governance_pipeline.landscape.bulk import pg_type
from governance_pipeline.landscape.recorder import Recorder, UnitOfWork
from governance_pipeline.landscape.schema import metadata
from governance_pipeline.landscape.store import Landscape

NODES = (("src", NodeType.SOURCE), ("clean", NodeType.TRANSFORM), ("enrich", NodeType.TRANSFORM),
         ("out", NodeType.SINK))
RECORDS_PER_ROW = 3 + len(NODES)  # row, token, outcome + one node state per node
TABLE_ORDER = [t.name for t in metadata.sorted_tables]
Chunk = dict[str, list[tuple[Any, ...]]]


def source_row(i: int) -> dict[str, Any]:
    """A typical CSV/JSON source record: ids, text, a money amount, a flag, a small list."""
    return {
        "id": i, "customer": f"cust-{i % 977:05d}", "email": f"user{i}@example.com",
        "amount": 10 + (i * 37 % 100_000) / 100, "country": ("DE", "FR", "NL", "GB")[i % 4],
        "active": i % 3 != 0, "tags": ["retail", "q3"] if i % 5 else [],
        "note": "Zahlung für Bestellung" if i % 7 == 0 else None,
    }


def build_chunk(uow: UnitOfWork, run_id: str, first: int, n: int) -> None:
    """What the engine records for ``n`` source rows that pass through every node."""
    now = uow.now
    for i in range(first, first + n):
        data_hash = uow.payload(source_row(i))
        row = SourceRow(new_id("row_"), run_id, "src", i, data_hash, now)
        token = Token(new_id("tok_"), run_id, row.row_id, None, None, None, None, now)
        uow.add(row)
        uow.add(token)
        for step, (node_id, _) in enumerate(NODES):
            uow.add(NodeState(new_id("st_"), run_id, token.token_id, node_id, step, 0,
                              NodeStateStatus.COMPLETED, data_hash, data_hash, None, None, None,
                              0.25 + step, None, now, now))
        uow.add(TokenOutcome(new_id("out_"), run_id, token.token_id, Outcome.COMPLETED, True,
                             "out", None, None, None, None, None, None, now))


def register_run(landscape: Landscape, run_id: str) -> Recorder:
    """The run and its nodes; the reference databases get the same, so foreign keys resolve."""
    recorder = Recorder(landscape)
    recorder.begin_run(pipeline_name="bench", tenant_id="bench", config={"bench": True},
                       run_id=run_id)
    with recorder.unit(run_id) as uow:
        for pos, (node_id, node_type) in enumerate(NODES):
            uow.add(Node(run_id, node_id, node_type, "builtin", "1.0",
                         Determinism.DETERMINISTIC, sha256_hex(b"{}"), "{}", pos, uow.now))
    return recorder


def unit_rows(uow: UnitOfWork) -> Chunk:
    """The unit's rows as positional tuples in table column order (the raw driver's input)."""
    chunk: Chunk = {"payloads": [(h, len(d), d, uow.now, None)
                                 for h, d in uow.pending_payloads().items()]}
    chunk.update(uow.pending_rows())
    return chunk


def insert_sql(table: str, mark: str) -> str:
    cols = [c.name for c in metadata.tables[table].columns]
    tail = " ON CONFLICT (content_hash) DO NOTHING" if table == "payloads" else ""
    quoted = ", ".join(f'"{c}"' for c in cols)
    return f'INSERT INTO "{table}" ({quoted}) VALUES ({", ".join([mark] * len(cols))}){tail}'


class RawSqlite:
    label = "raw sqlite3 executemany"

    def __init__(self, url: str) -> None:
        self.conn = sqlite3.connect(make_url(url).database or "", isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON"):
            self.conn.execute(f"PRAGMA {pragma}")

    def write(self, chunk: Chunk) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        for name in TABLE_ORDER:
            if chunk.get(name):
                self.conn.executemany(insert_sql(name, "?"), chunk[name])
        self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()


class RawPostgres:
    label = "raw psycopg executemany"

    def __init__(self, url: str) -> None:
        conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self.conn = psycopg.connect(conninfo)

    def write(self, chunk: Chunk) -> None:
        with self.conn.cursor() as cur:
            for name in TABLE_ORDER:
                if chunk.get(name):
                    cur.executemany(insert_sql(name, "%s"), chunk[name])
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()


class RawPostgresCopy(RawPostgres):
    """The Recorder's own PostgreSQL method, bare: binary COPY, payloads by one unnest INSERT."""

    label = "raw psycopg binary COPY"

    def write(self, chunk: Chunk) -> None:
        with self.conn.cursor() as cur:
            for name in TABLE_ORDER:
                rows = chunk.get(name)
                if not rows:
                    continue
                table = metadata.tables[name]
                types = [pg_type(c) for c in table.columns]
                cols = ", ".join(f'"{c.name}"' for c in table.columns)
                if name == "payloads":
                    arrays = ", ".join(f"%b::{t}[]" for t in types)
                    cur.execute(f"INSERT INTO payloads ({cols}) SELECT * FROM unnest({arrays}) "
                                "ON CONFLICT (content_hash) DO NOTHING",
                                [list(col) for col in zip(*rows)])
                    continue
                with cur.copy(f'COPY "{name}" ({cols}) FROM STDIN (FORMAT BINARY)') as copy:
                    copy.set_types(types)
                    for row in rows:
                        copy.write_row(row)
        self.conn.commit()


@dataclass
class Timing:
    label: str
    records: int = 0
    build_s: float = 0.0
    write_s: float = 0.0
    chunk_write_s: list[float] = field(default_factory=list)

    def add(self, records: int, write_s: float, build_s: float = 0.0) -> None:
        self.records += records
        self.build_s += build_s
        self.write_s += write_s
        self.chunk_write_s.append(write_s)

    def line(self) -> str:
        # The median chunk is what the machine does when nothing else competes for it.
        median = self.records / len(self.chunk_write_s) / statistics.median(self.chunk_write_s)
        rate = self.records / self.write_s
        text = (f"  {self.label:<32} write {self.write_s:6.2f}s -> {rate:>8,.0f}"
                f" records/s (median chunk {median:>8,.0f}/s)")
        if self.build_s:
            total = self.build_s + self.write_s
            text += (f"\n  {'':<32} build {self.build_s:6.2f}s; build+write ->"
                     f" {self.records / total:>8,.0f} records/s")
        return text


Reference = tuple[type[RawSqlite] | type[RawPostgres], str]  # (writer, database URL)


def bench_backend(title: str, url: str, references: list[Reference], keys: Path,
                  args: argparse.Namespace) -> None:
    run_id = new_id("run_")
    landscape = Landscape.open(url, keys, clock=ManualClock())
    recorder = register_run(landscape, run_id)
    raws = []
    for cls, raw_url in references:
        ref_landscape = Landscape.open(raw_url, keys, clock=ManualClock())
        register_run(ref_landscape, run_id)
        ref_landscape.dispose()
        raws.append((cls(raw_url), Timing(cls.label)))
    rec = Timing("Recorder")
    profile = cProfile.Profile() if args.profile else None
    for c in range(args.chunks):
        if profile:
            profile.enable()
        t0 = time.perf_counter()
        uow = UnitOfWork(run_id, recorder.now())
        build_chunk(uow, run_id, c * args.chunk_rows, args.chunk_rows)
        t1 = time.perf_counter()
        recorder.commit(uow)
        t2 = time.perf_counter()
        if profile:
            profile.disable()
        chunk = unit_rows(uow)
        records = sum(len(rows) for name, rows in chunk.items() if name != "payloads")
        rec.add(records, t2 - t1, t1 - t0)
        for raw, timing in raws:
            t3 = time.perf_counter()
            raw.write(chunk)
            timing.add(records, time.perf_counter() - t3)
    landscape.dispose()
    for raw, _ in raws:
        raw.close()
    print(f"{title}: {args.chunks} chunks x {args.chunk_rows} source rows = {rec.records:,} audit "
          f"records ({RECORDS_PER_ROW}/row) + {args.chunks * args.chunk_rows:,} payloads, "
          "one transaction per chunk")
    print(rec.line())
    for _, timing in raws:
        print(timing.line())
        median_ratio = (statistics.median(rec.chunk_write_s)
                        / statistics.median(timing.chunk_write_s))
        print(f"    Recorder/raw time: write {rec.write_s / timing.write_s:.2f}x "
              f"(median chunk {median_ratio:.2f}x), "
              f"build+write {(rec.build_s + rec.write_s) / timing.write_s:.2f}x")
    if profile:
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)


@contextmanager
def pg_databases(admin: str, count: int) -> Iterator[list[str]]:
    admin_url = normalize_url(admin)
    engine = create_engine(admin_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    names = [f"gp_bench_{new_id()[-12:]}_{k}" for k in range(count)]
    with engine.connect() as conn:
        for name in names:
            conn.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield [admin_url.set(database=n).render_as_string(hide_password=False) for n in names]
    finally:
        with engine.connect() as conn:
            for name in names:
                conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=40)
    parser.add_argument("--chunk-rows", type=int, default=1000)
    parser.add_argument("--pg-url", default=os.environ.get("GOVERNANCE_TEST_PG_URL"))
    parser.add_argument("--only", choices=("sqlite", "postgres"))
    parser.add_argument("--profile", action="store_true", help="cProfile the Recorder's chunks")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="gp_bench_") as tmp:
        keys = Path(tmp) / "keys"
        if args.only != "postgres":
            bench_backend("SQLite (file, WAL, synchronous=FULL, foreign_keys=ON)",
                          f"sqlite:///{Path(tmp) / 'recorder.db'}",
                          [(RawSqlite, f"sqlite:///{Path(tmp) / 'raw.db'}")], keys, args)
        if args.only != "sqlite":
            if not args.pg_url:
                print("PostgreSQL: skipped (no --pg-url and GOVERNANCE_TEST_PG_URL is not set)")
            else:
                with pg_databases(args.pg_url, 3) as (rec_url, em_url, copy_url):
                    bench_backend("PostgreSQL", rec_url,
                                  [(RawPostgres, em_url), (RawPostgresCopy, copy_url)], keys, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
