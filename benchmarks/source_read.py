"""Source read throughput and memory: rows/s and tracemalloc peak while streaming generated files.

A 6-field row (int, str, float, bool, date, nullable str) is written as CSV, JSON Lines and
Parquet at two sizes (default 20k and 200k rows); each file is read through its source with the
declared schema. Throughput is measured without tracemalloc (it slows allocation several-fold),
then the peak of Python allocations is measured in a second pass: a streaming source's peak is
flat from the small file to the large one. Arrow's own buffers (Parquet) are outside
tracemalloc, so for Parquet the peak covers only the Python rows of one batch.

Also reports the schema validator alone, in µs per 6-field row (the hot-path figure).

    .venv/bin/python benchmarks/source_read.py [--rows 20000 200000] [--only csv jsonl parquet]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import timeit
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from governance_pipeline.engine.plugin_api import Source
from governance_pipeline.engine.row_schema import RowSchema
from governance_pipeline.plugins.sources.csv_source import CsvSource
from governance_pipeline.plugins.sources.jsonl_source import JsonlSource
from governance_pipeline.plugins.sources.parquet_source import ParquetSource

SCHEMA = RowSchema.model_validate({"fields": {
    "id": {"type": "int"}, "name": {"max_length": 40}, "amount": {"type": "float"},
    "active": {"type": "bool"}, "day": {"type": "date"}, "note": {"nullable": True}}})


def _text_row(i: int) -> dict[str, str]:
    return {"id": str(i), "name": f"customer {i % 9973}", "amount": f"{i % 100_000 / 4}",
            "active": "true" if i % 2 else "false", "day": f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}",
            "note": "" if i % 3 else f'note, "quoted" {i}'}


def write_csv(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("id,name,amount,active,day,note\n")
        for i in range(rows):
            r = _text_row(i)
            note = '"' + r["note"].replace('"', '""') + '"' if r["note"] else ""
            out.write(f'{r["id"]},{r["name"]},{r["amount"]},{r["active"]},{r["day"]},{note}\n')


def write_jsonl(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8") as out:
        for i in range(rows):
            r = _text_row(i)
            out.write(json.dumps({"id": i, "name": r["name"], "amount": float(r["amount"]),
                                  "active": bool(i % 2), "day": r["day"],
                                  "note": r["note"] or None}) + "\n")


def write_parquet(path: Path, rows: int) -> None:
    writer = None
    step = 50_000
    for start in range(0, rows, step):
        part = [_text_row(i) for i in range(start, min(rows, start + step))]
        table = pa.table({
            "id": pa.array([int(r["id"]) for r in part], pa.int64()),
            "name": [r["name"] for r in part],
            "amount": pa.array([float(r["amount"]) for r in part], pa.float64()),
            "active": [r["active"] == "true" for r in part], "day": [r["day"] for r in part],
            "note": [r["note"] or None for r in part]})
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema)
        writer.write_table(table, row_group_size=step)
    assert writer is not None
    writer.close()


FORMATS: dict[str, tuple[str, Callable[[Path, int], None], Callable[[Path], Source]]] = {
    "csv": ("csv", write_csv, lambda p: CsvSource({"path": str(p)}, base_dir=p.parent,
                                                   schema=SCHEMA)),
    "jsonl": ("jsonl", write_jsonl, lambda p: JsonlSource({"path": str(p)}, base_dir=p.parent,
                                                          schema=SCHEMA)),
    "parquet": ("parquet", write_parquet, lambda p: ParquetSource({"path": str(p)},
                                                                  base_dir=p.parent,
                                                                  schema=SCHEMA)),
}


def drain(source: Source) -> tuple[int, int]:
    valid = invalid = 0
    for record in source.read():
        if record.error is None:
            valid += 1
        else:
            invalid += 1
    return valid, invalid


def measure(source: Source, rows: int) -> tuple[float, int]:
    start = time.perf_counter()
    valid, invalid = drain(source)
    elapsed = time.perf_counter() - start
    if (valid, invalid) != (rows, 0):
        sys.exit(f"expected {rows} valid rows, got {valid} valid and {invalid} invalid")
    tracemalloc.start()
    try:
        drain(source)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return rows / elapsed, peak


def validator_us_per_row() -> float:
    validate = SCHEMA.validator()
    row = _text_row(12_345) | {"note": ""}
    assert isinstance(validate(row), dict)
    runs = 200_000
    return min(timeit.repeat(lambda: validate(row), number=runs, repeat=3)) / runs * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[20_000, 200_000])
    parser.add_argument("--only", nargs="+", choices=sorted(FORMATS), default=sorted(FORMATS))
    args = parser.parse_args()
    print(f"schema validator: {validator_us_per_row():.2f} µs per 6-field row")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only:
            suffix, write, make = FORMATS[name]
            for rows in args.rows:
                path = Path(tmp) / f"rows_{rows}.{suffix}"
                write(path, rows)
                rate, peak = measure(make(path), rows)
                print(f"{name:8s} {rows:>9,} rows  {path.stat().st_size / 1e6:7.1f} MB  "
                      f"{rate:>9,.0f} rows/s  tracemalloc peak {peak / 1024:8.1f} KiB")


if __name__ == "__main__":
    main()
