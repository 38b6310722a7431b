"""Canonical hashing cost per value: the orjson fast path against the ``rfc8785`` reference.

    .venv/bin/python benchmarks/hashing.py [--n 20000]

Prints microseconds per ``stable_hash`` for typical source rows (which take the fast path), for
rows the fast path must refuse (integral floats, non-ASCII keys), and for ``rfc8785.dumps`` +
SHA-256 on the same values, plus the ledger's per-record hash of a node-state row.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import rfc8785

from governance_pipeline.contracts.hashing import _fast_path_ok, stable_hash
from governance_pipeline.landscape import ledger
from governance_pipeline.landscape.schema import LEDGERED


def typical(i: int) -> dict[str, Any]:
    return {"id": i, "customer": f"cust-{i % 977:05d}", "email": f"user{i}@example.com",
            "amount": 10.5 + (i % 1000) / 100 + 0.001, "country": "DE", "active": i % 3 == 0,
            "tags": ["retail", "q3"], "note": None}


def refused(i: int) -> dict[str, Any]:
    return {**typical(i), "amount": float(i), "straße": "x"}


def per_call_us(fn: Callable[[Any], Any], values: list[Any]) -> float:
    t0 = time.perf_counter()
    for v in values:
        fn(v)
    return (time.perf_counter() - t0) / len(values) * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000)
    n = parser.parse_args(argv).n
    rows = [typical(i) for i in range(n)]
    slow_rows = [refused(i) for i in range(n)]
    assert all(_fast_path_ok(r) for r in rows) and not any(_fast_path_ok(r) for r in slow_rows)

    def reference(v: Any) -> str:
        return hashlib.sha256(rfc8785.dumps(v)).hexdigest()

    for label, fn, values in (("stable_hash, typical row (fast path)", stable_hash, rows),
                              ("stable_hash, refused row (rfc8785 path)", stable_hash, slow_rows),
                              ("rfc8785.dumps + sha256, typical row", reference, rows)):
        print(f"{label + ':':<43}{per_call_us(fn, values):6.2f} us")
    spec = LEDGERED["node_states"]
    columns = tuple(c.name for c in spec.table.columns)
    states = [(f"st_{i:032x}", "run_1", f"tok_{i:032x}", "clean", 1, 0, "completed", "a" * 64,
               "b" * 64, None, None, None, 0.25, None, "2026-01-01T00:00:00.000000Z",
               "2026-01-01T00:00:00.000000Z") for i in range(n)]
    manifest = ledger.rows_manifest(spec, columns)
    t0 = time.perf_counter()
    section = manifest(states)
    print(f"ledger record hash + key, node-state row:  "
          f"{(time.perf_counter() - t0) / n * 1e6:6.2f} us")
    t0 = time.perf_counter()
    blob, _ = ledger.encode_sections([section])
    print(f"manifest encoding (format 2), per record:  "
          f"{(time.perf_counter() - t0) / n * 1e6:6.2f} us, {len(blob) / n:5.1f} B")
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
