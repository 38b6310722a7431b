"""Per-row cost of the expression language and of the expression-driven transforms.

Prints µs per evaluation for typical gate predicates (compiled once, evaluated per row) and µs per
row for ``field_map``, ``compute``, ``filter`` and ``rename`` on a 6-field row. Each figure is the
best of ``--repeat`` timed runs of ``--rows`` calls, so a busy machine inflates it less.

    .venv/bin/python benchmarks/expressions.py [--rows 200000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import timeit
from pathlib import Path
from typing import Any

from governance_pipeline.contracts.clock import ManualClock
from governance_pipeline.engine.expressions import compile_expression
from governance_pipeline.engine.plugin_api import TransformContext
from governance_pipeline.plugins.transforms.field_map import Compute, FieldMap, Rename
from governance_pipeline.plugins.transforms.filter import Filter

ROW: dict[str, Any] = {"id": 42, "name": "Alice", "country": "DE", "amount": 1500,
                       "rate": 0.19, "status": "open"}
GATES = [
    "amount > 1000 and country == 'DE' and status in ['open', 'pending']",
    "amount > 1000",
    "0 < amount <= 2000",
    "lower(name) == 'alice' or matches(status, '^cl')",
    "amount * (1 + rate) if country == 'DE' else amount",
]


def _best(fn: Any, rows: int, repeat: int) -> float:
    return min(timeit.repeat(fn, number=rows, repeat=repeat)) / rows * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    ctx = TransformContext(clock=ManualClock(), run_id="r", node_id="n", token_id="t")
    print("expression                                                       µs/eval")
    for text in GATES:
        expr = compile_expression(text)
        print(f"{text:<64} {_best(lambda: expr.evaluate(ROW), args.rows, args.repeat):7.3f}")
    fields = {"id": "id", "customer": "upper(name)", "country": "country",
              "gross": "amount * (1 + rate)", "big": "amount > 1000", "status": "status"}
    transforms = {
        "field_map (6 output fields)": FieldMap({"fields": fields}, base_dir=Path(".")),
        "compute (2 computed fields)": Compute(
            {"fields": {"gross": "amount * (1 + rate)", "big": "gross > 1000"}}, base_dir=Path(".")),
        "filter (3-clause predicate)": Filter({"when": GATES[0]}, base_dir=Path(".")),
        "rename (2 fields)": Rename({"fields": {"name": "customer", "amount": "value"}},
                                    base_dir=Path(".")),
    }
    print("\ntransform on a 6-field row                                       µs/row")
    for label, transform in transforms.items():
        assert transform.process(ROW, ctx).row is not None
        cost = _best(lambda t=transform: t.process(ROW, ctx), args.rows, args.repeat)
        print(f"{label:<64} {cost:7.3f}")


if __name__ == "__main__":
    main()
