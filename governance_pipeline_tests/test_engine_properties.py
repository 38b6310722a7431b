"""Property test of the engine: random rows through random pipeline shapes, in process, on SQLite.

Shapes come from a small grammar: a linear chain of compute/filter transforms, then optionally a
gate whose routes send rows to a sink or fork them into 2–3 branches (each with at most one
transform, possibly a ``call`` whose simulated latency advances the injected clock) that a
coalesce joins with a random policy and merge, then optionally a tail transform and an
aggregation with a random count trigger and passthrough or summarize output, into a JSON Lines
or CSV ``main`` sink. Rows carry nulls, unicode and values that route differently or make
expressions fail; some source records are invalid. Chunk sizes are random.

Whatever the shape, after the run: every token has exactly one terminal outcome, no node state
is open, no token is left buffered, sweep and verify are clean, every source record became a
row, invalid records are exactly the quarantined ones, and each sink holds exactly the rows whose
terminal outcome names it (so the rows written across sinks equal completed + routed + diverted
+ quarantined-to-sink).
"""

from __future__ import annotations

import csv
import json
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import and_, func, select

from governance_pipeline.contracts.clock import ManualClock
from governance_pipeline.contracts.enums import NodeStateStatus, Outcome, RunStatus
from governance_pipeline.engine.config import parse_pipeline
from governance_pipeline.engine.runner import Runner
from governance_pipeline.landscape import migrate
from governance_pipeline.landscape.database import create_landscape_engine
from governance_pipeline.landscape.schema import (
    artifacts,
    node_states,
    rows,
    token_outcomes,
    tokens,
)
from governance_pipeline.landscape.store import Landscape
from governance_pipeline.landscape.sweep import sweep
from governance_pipeline.landscape.verify import verify

pytestmark = pytest.mark.slow

SINKS = ("main", "routed", "errors", "quarantine")
GROUPS = ["a", "b", "ü", "日本", ""]
# Which sink each sink-terminal outcome may name, by construction of the shapes below.
ALLOWED_SINKS = {
    Outcome.COMPLETED.value: {"main"},
    Outcome.ROUTED.value: {"routed"},
    Outcome.DIVERTED.value: {"errors"},
    Outcome.QUARANTINED.value: {"quarantine", None},
}
SINK_OUTCOMES = (Outcome.COMPLETED.value, Outcome.ROUTED.value, Outcome.DIVERTED.value)

# --- rows -------------------------------------------------------------------------------------
valid_rows = st.fixed_dictionaries({
    "k": st.none() | st.integers(-20, 20),
    "v": st.none() | st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
    "s": st.none() | st.text(max_size=8),
    "g": st.sampled_from(GROUPS),
}).map(lambda row: json.dumps(row, ensure_ascii=False))
# Each invalid line is quarantined whatever the pipeline: a wrong type, a missing field, no JSON.
invalid_rows = st.sampled_from([
    '{"k": "seven", "v": 1.5, "s": "x", "g": "a"}',
    '{"k": 1, "v": 2.5, "s": "y"}',
    '{"k": 2, "v": 1.0, "s": "z", "g": "a", "extra": 1}',
    '{"k": 3, "v": ',
])
records = st.lists(st.one_of(valid_rows.map(lambda line: (line, True)),
                             valid_rows.map(lambda line: (line, True)),
                             invalid_rows.map(lambda line: (line, False))), min_size=3, max_size=30)

# --- pipeline shapes ----------------------------------------------------------------------------
def _source(on_success: str, on_invalid: str) -> dict[str, Any]:
    nullable = {"nullable": True}
    return {"plugin": "jsonl", "options": {"path": "input.jsonl"},
            "schema": {"fields": {"k": {"type": "int", **nullable},
                                  "v": {"type": "float", **nullable},
                                  "s": {"type": "str", **nullable},
                                  "g": {"type": "str", **nullable}}},
            "on_success": on_success, "on_invalid": on_invalid}


def _sinks(main: dict[str, Any]) -> dict[str, Any]:
    return {"main": main, **{name: {"plugin": "jsonl", "options": {"path": f"out/{name}.jsonl"}}
                             for name in SINKS[1:]}}


COMPUTES = [
    {"twice": "coalesce(k, 0) * 2"},                     # never fails
    {"ratio": "100 // k"},                               # fails on null k and on k == 0
    {"label": "upper(coalesce(s, '')) + g"},             # unicode through expressions
    {"band": "'hi' if coalesce(v, 0) > 10 else 'lo'"},
]
FILTERS = ["coalesce(k, 0) % 3 != 1", "v > 0", "g != 'a'"]  # "v > 0" fails on null v
# Hypothesis favours the first entries of a list (and small values): the most permissive
# condition and the harmless transforms come first so that most rows travel far.
CONDITIONS = ["coalesce(k, 0) > -15", "k > 3", "g == 'a'", "is_null(s)", "coalesce(v, 0) < 0"]


class Shape:
    """Accumulates nodes with fresh channel names."""

    def __init__(self) -> None:
        self.nodes: list[dict[str, Any]] = []
        self.count = 0

    def channel(self) -> str:
        self.count += 1
        return f"c{self.count}"

    def node_id(self, kind: str) -> str:
        return f"{kind}{len(self.nodes)}"


@st.composite
def transform(draw: st.DrawFn, shape: Shape, source: str, target: str, *,
              allow_call: bool = False) -> dict[str, Any]:
    kinds = (["call"] if allow_call else []) + ["compute", "compute", "filter"]
    kind = draw(st.sampled_from(kinds))
    node: dict[str, Any] = {"id": shape.node_id(kind), "kind": "transform", "input": source,
                            "on_success": target,
                            "on_error": draw(st.sampled_from(["errors", "discard"]))}
    if kind == "compute":
        node |= {"plugin": "compute", "options": {"fields": draw(st.sampled_from(COMPUTES))}}
    elif kind == "filter":
        node |= {"plugin": "filter", "options": {"when": draw(st.sampled_from(FILTERS))}}
    else:
        n = len(shape.nodes)
        node |= {"plugin": "call", "options": {
            "provider": "local", "input": ["g"],
            "output": {"label": f"label{n}", "score": f"score{n}"},
            "latency_ms": draw(st.sampled_from([0, 400, 1500])),
            "fail_every_n": draw(st.none() | st.integers(2, 5))}}
    shape.nodes.append(node)
    return node


@st.composite
def fork_and_coalesce(draw: st.DrawFn, shape: Shape, target: str) -> list[str]:
    """Branch transforms and a coalesce into ``target``; returns the fork's branch channels."""
    width = draw(st.integers(2, 3))
    branches = [shape.channel() for _ in range(width)]
    arrivals = []
    for branch in branches:
        if draw(st.integers(0, 2)) > 0:
            done = shape.channel()
            draw(transform(shape, branch, done, allow_call=True))
            arrivals.append(done)
        else:
            arrivals.append(branch)
    policy = draw(st.sampled_from(["require_all", "quorum", "best_effort", "first"]))
    merge = draw(st.sampled_from(["union", "nested", "select"]))
    node: dict[str, Any] = {"id": shape.node_id("coalesce"), "kind": "coalesce",
                            "branches": arrivals, "policy": policy, "merge": merge,
                            "on_success": target,
                            "on_error": draw(st.sampled_from(["errors", "discard"]))}
    if policy == "quorum":
        node["quorum"] = draw(st.integers(1, width))
    if policy == "best_effort":
        node["timeout_seconds"] = draw(st.sampled_from([0.5, 1.0, 5.0]))
    if merge == "select":
        node["select_branch"] = draw(st.sampled_from(arrivals))
    shape.nodes.append(node)
    return branches


@st.composite
def gate(draw: st.DrawFn, shape: Shape, source: str, continuation: str) -> None:
    conditions = draw(st.lists(st.sampled_from(CONDITIONS), min_size=1, max_size=2, unique=True))
    node: dict[str, Any] = {"id": shape.node_id("gate"), "kind": "gate", "input": source,
                            "routes": [],
                            "on_error": draw(st.sampled_from(["errors", "discard"]))}
    shape.nodes.append(node)
    forked = False
    for when in conditions:
        if not forked and draw(st.integers(0, 3)) > 0:
            forked = True
            node["routes"].append({"when": when,
                                   "fork": draw(fork_and_coalesce(shape, continuation))})
        else:
            node["routes"].append({"when": when, "to": "routed"})
    # The continuation must have a producer: without a fork, the default is it. A default
    # straight into a sink completes there, so only "main" may take it.
    node["default"] = draw(st.sampled_from([continuation, "main"])) if forked else continuation


@st.composite
def aggregation(draw: st.DrawFn, shape: Shape, source: str) -> None:
    node: dict[str, Any] = {"id": shape.node_id("aggregation"), "kind": "aggregation",
                            "input": source, "on_success": "main",
                            "trigger": {"count": draw(st.integers(1, 6))}}
    if draw(st.integers(0, 2)) > 0:
        node |= {"output": "transform", "function": {"plugin": "summarize", "options": {
            "group_by": ["g"], "aggregates": {"n": "count", "total": "sum:k"}}}}
    shape.nodes.append(node)


@st.composite
def pipelines(draw: st.DrawFn) -> dict[str, Any]:
    shape = Shape()
    current = shape.channel()
    first = current
    for _ in range(draw(st.integers(0, 2))):
        nxt = shape.channel()
        draw(transform(shape, current, nxt))
        current = nxt
    tail = draw(st.integers(0, 1))
    aggregate = draw(st.integers(0, 2)) > 0
    downstream = tail or aggregate
    if draw(st.integers(0, 2)) > 0:
        continuation = shape.channel() if downstream else "main"
        draw(gate(shape, current, continuation))
        current = continuation
    if downstream:
        for _ in range(tail):
            nxt = shape.channel()
            draw(transform(shape, current, nxt))
            current = nxt
        if aggregate:
            draw(aggregation(shape, current))
        else:
            shape.nodes[-1]["on_success"] = "main"
            current = "main"
    if not shape.nodes:
        first = "main"
    elif current not in SINKS:
        # The last linear node feeds the main sink directly.
        shape.nodes[-1]["on_success"] = "main"
    main: dict[str, Any] = {"plugin": "jsonl", "options": {"path": "out/main.jsonl"}}
    if draw(st.booleans()):
        main = {"plugin": "csv", "options": {"path": "out/main.csv"},
                "on_reject": draw(st.none() | st.just("errors"))}
    return {"name": "property", "chunk_size": draw(st.integers(1, 12)),
            "source": _source(first, draw(st.sampled_from(["quarantine", "discard"]))),
            "nodes": shape.nodes, "sinks": _sinks(main)}


# A fixed shape that the generator may or may not reach, checked on its own: rows routed before
# a fork; a best_effort coalesce whose slow branch (a call whose latency advances the clock past
# the timeout) always arrives late; a passthrough aggregation buffering across chunks; a CSV sink
# refusing a row whose columns differ from the first row's (diverted to ``errors``).
LATE_ARRIVALS = {
    "name": "late_arrivals", "chunk_size": 3, "source": _source("c1", "quarantine"),
    "nodes": [
        {"id": "gate0", "kind": "gate", "input": "c1", "on_error": "errors", "default": "main",
         "routes": [{"when": "g == 'a'", "to": "routed"},
                    {"when": "coalesce(k, 0) > -5", "fork": ["c2", "c3"]}]},
        {"id": "compute1", "kind": "transform", "plugin": "compute", "input": "c2",
         "on_success": "c6", "options": {"fields": {"twice": "coalesce(k, 0) * 2"}}},
        {"id": "call2", "kind": "transform", "plugin": "call", "input": "c3",
         "on_success": "c4", "on_error": "errors",
         "options": {"provider": "local", "input": ["g"], "latency_ms": 1500,
                     "output": {"label": "label1", "score": "score1"}}},
        {"id": "coalesce3", "kind": "coalesce", "branches": ["c6", "c4"],
         "policy": "best_effort", "timeout_seconds": 1.0, "merge": "union",
         "on_success": "c5", "on_error": "errors"},
        {"id": "aggregation4", "kind": "aggregation", "input": "c5", "on_success": "main",
         "trigger": {"count": 2}},
    ],
    "sinks": _sinks({"plugin": "csv", "options": {"path": "out/main.csv"},
                     "on_reject": "errors"}),
}
# Chunks of 3: [fork, fork, routed], [fork, fork, fork], [default, invalid, invalid]. A lone
# carriage return in a value must not split its CSV record.
LATE_ARRIVAL_LINES = [
    (json.dumps({"k": k, "v": v, "s": s, "g": g}, ensure_ascii=False), True)
    for k, v, s, g in [(1, 2.5, "x", "b"), (None, None, None, "ü"), (-20, 0.0, "é", "a"),
                       (7, -1.0, None, "日本"), (0, 1e6, "", "b"), (3, None, "car\rriage", ""),
                       (-10, 0.5, "late", "b")]
] + [('{"k": "seven", "v": 1.5, "s": "x", "g": "a"}', False), ('{"k": 5, "g": "b"', False)]


# --- running and checking -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One migrated SQLite file per module; each example runs on a fresh copy of it."""
    path = tmp_path_factory.mktemp("template") / "landscape.db"
    engine = create_landscape_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    engine.dispose()
    yield path


def _sink_rows(path: Path) -> int:
    if not path.exists():
        return 0
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as fh:
            return max(0, sum(1 for _ in csv.reader(fh)) - 1)
    return sum(1 for line in path.read_bytes().splitlines() if line.strip())


@dataclass(frozen=True)
class Checked:
    """What a checked run did, for statistics and for tests of fixed shapes."""

    outcomes: Counter[str]
    failure_codes: Counter[str]   # error codes of failed node states
    buffered: int                 # tokens parked in a draft batch at some point
    written: dict[str, int]       # rows per sink


def run_and_check(template_db: Path, doc: dict[str, Any],
                  lines: list[tuple[str, bool]]) -> Checked:
    config = parse_pipeline(doc)
    with tempfile.TemporaryDirectory(prefix="gp-prop-") as tmp:
        base = Path(tmp)
        (base / "input.jsonl").write_text("".join(f"{line}\n" for line, _ in lines),
                                          encoding="utf-8")
        shutil.copyfile(template_db, base / "landscape.db")
        ls = Landscape.open(f"sqlite:///{base / 'landscape.db'}", base / "keys",
                            clock=ManualClock())
        try:
            result = Runner.start(ls, config, base_dir=base).execute()
            assert result.status is RunStatus.COMPLETED, result
            return _check(ls, result.run_id, base, doc, lines)
        finally:
            ls.dispose()


def _check(ls: Landscape, run_id: str, base: Path, doc: dict[str, Any],
           lines: list[tuple[str, bool]]) -> Checked:
    to = token_outcomes
    with ls.engine.connect() as conn:
        terminal_per_token = dict(conn.execute(
            select(tokens.c.token_id, func.count(to.c.outcome_id))
            .select_from(tokens.outerjoin(to, and_(to.c.token_id == tokens.c.token_id,
                                                   to.c.is_terminal == 1)))
            .where(tokens.c.run_id == run_id).group_by(tokens.c.token_id)).all())
        states = conn.execute(select(node_states.c.status, node_states.c.error_json)
                              .where(node_states.c.run_id == run_id)).all()
        buffered = set(conn.execute(select(to.c.token_id).where(
            to.c.run_id == run_id, to.c.outcome == Outcome.BUFFERED.value)).scalars())
        terminal = conn.execute(select(to.c.outcome, to.c.sink_name).where(
            to.c.run_id == run_id, to.c.is_terminal == 1)).all()
        row_count = conn.execute(select(func.count()).where(rows.c.run_id == run_id)).scalar_one()
        arts = dict(conn.execute(select(artifacts.c.sink_node_id, artifacts.c.row_count)
                                 .where(artifacts.c.run_id == run_id)).all())
    bad = {t: n for t, n in terminal_per_token.items() if n != 1}
    assert not bad, f"tokens without exactly one terminal outcome: {bad}"
    assert len(terminal) == len(terminal_per_token)
    assert [s for s, _ in states if s == NodeStateStatus.OPEN.value] == []
    assert buffered <= set(terminal_per_token)  # every buffered token ended (counted above)

    assert row_count == len(lines)
    quarantined = [sink for outcome, sink in terminal if outcome == Outcome.QUARANTINED.value]
    assert len(quarantined) == sum(1 for _, valid in lines if not valid)
    per_sink: dict[str, int] = dict.fromkeys(SINKS, 0)
    for outcome, sink in terminal:
        assert sink in ALLOWED_SINKS.get(outcome, {None}), (outcome, sink)
        if sink is not None:
            per_sink[sink] += 1
    written = {name: _sink_rows(base / sink["options"]["path"])
               for name, sink in doc["sinks"].items()}
    assert written == per_sink
    assert arts == per_sink
    expected_total = sum(1 for o, _ in terminal if o in SINK_OUTCOMES) + \
        sum(1 for s in quarantined if s is not None)
    assert sum(written.values()) == expected_total

    swept = sweep(ls, run_id)
    assert swept.ok, [f.as_dict() for f in swept.findings]
    verified = verify(ls, run_id)
    assert verified.ok, [f.as_dict() for f in verified.findings]
    codes = Counter(json.loads(e)["code"] for s, e in states
                    if s == NodeStateStatus.FAILED.value and e)
    return Checked(Counter(o for o, _ in terminal), codes, len(buffered), written)


# Derandomized: CI runs the same examples every time. No explain phase: it re-runs a failing
# example hundreds of times under a tracer, which here costs minutes and adds little.
@settings(max_examples=40, deadline=None, derandomize=True, report_multiple_bugs=False,
          phases=[Phase.explicit, Phase.generate, Phase.shrink],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(doc=pipelines(), lines=records)
def test_every_token_ends_exactly_once(template_db: Path, doc: dict[str, Any],
                                       lines: list[tuple[str, bool]]) -> None:
    checked = run_and_check(template_db, doc, lines)
    # What was exercised, shown by ``pytest --hypothesis-show-statistics``.
    event(f"main sink {doc['sinks']['main']['plugin']}")
    for node in doc["nodes"]:
        detail = node.get("policy") or node.get("plugin") or node.get("output", "")
        event(f"node {node['kind']} {detail}".strip())
    for outcome in checked.outcomes:
        event(f"outcome {outcome}")
    for code in checked.failure_codes:
        event(f"failed state {code}")
    if checked.buffered:
        event("tokens buffered across a chunk boundary")


def test_late_arrivals_routes_and_sink_rejects_are_accounted_for(template_db: Path) -> None:
    checked = run_and_check(template_db, LATE_ARRIVALS, LATE_ARRIVAL_LINES)
    assert checked.outcomes["routed"] == 1 and checked.written["routed"] == 1
    assert checked.outcomes["forked"] == 5
    # Each slow branch token arrives 1.5 s (of the injected clock) after its sibling.
    assert checked.failure_codes["late_arrival"] == 5
    assert checked.outcomes["coalesced"] == 5
    assert checked.buffered > 0  # the 3 merged rows of chunk 1 leave one in a draft 2-batch
    assert checked.written["main"] == 5  # the merged rows, columns k, v, s, g, twice
    # The default row lacks ``twice``: the CSV sink refuses it and it is diverted to errors.
    assert checked.failure_codes["rejected_by_sink"] == 1
    assert checked.outcomes["diverted"] == 1 and checked.written["errors"] == 1
    assert checked.outcomes["quarantined"] == 2 and checked.written["quarantine"] == 2
