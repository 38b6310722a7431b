"""Pipelines run end to end on a real Landscape (SQLite file and PostgreSQL): sink contents are
compared with expectations computed here from the input data, and the audit trail is read back
through ``explain``, the sweep and plain SQL.

Time moves only through the injected ``ManualClock``: the ``call`` transform's local provider
advances it by ``latency_ms`` per row, which is what makes coalesce and aggregation timeouts
testable without sleeping.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import rfc8785
import yaml
from sqlalchemy import text

from governance_pipeline.contracts.clock import ManualClock
from governance_pipeline.engine.config import load_pipeline
from governance_pipeline.engine.runner import RunResult, Runner
from governance_pipeline.landscape.explain import explain
from governance_pipeline.landscape.payloads import load_payload
from governance_pipeline.landscape.store import Landscape
from governance_pipeline.landscape.sweep import sweep

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_DIR = REPO / "examples" / "pipelines"
CLAIMS = REPO / "examples" / "data" / "claims.csv"
CLI = Path(sys.executable).with_name("governance-pipeline")

Doc = dict[str, Any]


# --- helpers (also used by test_engine_faults) ----------------------------------------------------
def write_pipeline(directory: Path, doc: Doc, name: str = "pipeline.yaml") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def start(landscape: Landscape, clock: ManualClock, path: Path,
          env: dict[str, str] | None = None) -> Runner:
    config = load_pipeline(path, env=env if env is not None else dict(os.environ))
    return Runner.start(landscape, config, base_dir=path.parent, pipeline_path=path, clock=clock)


def run_pipeline(landscape: Landscape, clock: ManualClock, path: Path,
                 env: dict[str, str] | None = None) -> RunResult:
    return start(landscape, clock, path, env).execute()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def query(landscape: Landscape, statement: str, **params: Any) -> list[Any]:
    with landscape.engine.connect() as conn:
        return list(conn.execute(text(statement), params))


def terminal_outcomes(landscape: Landscape, run_id: str) -> dict[str, tuple[str, str | None]]:
    """token id → (terminal outcome, sink) for every token of the run."""
    return {r.token_id: (r.outcome, r.sink_name) for r in query(
        landscape, "SELECT token_id, outcome, sink_name FROM token_outcomes "
                   "WHERE run_id = :run AND is_terminal = 1", run=run_id)}


def assert_clean(landscape: Landscape, result: RunResult) -> None:
    """Every token has exactly one terminal outcome, no state is open, the sweep finds nothing."""
    run_id = result.run_id
    tokens = {r[0] for r in query(landscape, "SELECT token_id FROM tokens WHERE run_id = :run",
                                  run=run_id)}
    assert set(terminal_outcomes(landscape, run_id)) == tokens
    assert query(landscape, "SELECT count(*) FROM node_states WHERE run_id = :run AND "
                            "status = 'open'", run=run_id) == [(0,)]
    assert sweep(landscape, run_id).findings == []
    assert sum(result.outcome_counts.values()) == len(tokens)


def sink_rows(result: RunResult) -> dict[str, int]:
    return {s.sink: s.row_count for s in result.sinks}


def source_doc(fields: dict[str, str], *, plugin: str = "jsonl", path: str = "in.jsonl",
               on_invalid: str = "quarantine", **options: Any) -> Doc:
    return {"plugin": plugin, "options": {"path": path, **options},
            "schema": {"fields": {k: {"type": v} for k, v in fields.items()}},
            "on_success": "raw", "on_invalid": on_invalid}


def jsonl_sinks(*names: str) -> Doc:
    return {name: {"plugin": "jsonl", "options": {"path": f"out/{name}.jsonl"}} for name in names}


def write_rows(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


# --- the claims data, read independently of the engine --------------------------------------------
@dataclass(frozen=True)
class Claim:
    index: int
    claim_id: int
    customer: str
    region: str
    amount: float
    description: str


def parse_claims(path: Path) -> tuple[list[Claim], dict[int, tuple[str, bytes]]]:
    """Valid claims, and {row index: (error code, raw line)} for the malformed ones."""
    valid: list[Claim] = []
    invalid: dict[int, tuple[str, bytes]] = {}
    lines = path.read_bytes().split(b"\n")
    assert lines[0] == b"claim_id,customer,region,amount,description" and lines[-1] == b""
    for index, line in enumerate(lines[1:-1]):
        raw = line + b"\n"
        try:
            cells = next(csv.reader([line.decode("utf-8")]))
        except UnicodeDecodeError:
            invalid[index] = ("bad_encoding", raw)
            continue
        if len(cells) != 5:
            invalid[index] = ("too_many_fields" if len(cells) > 5 else "missing_field", raw)
            continue
        claim_id, customer, region, amount, description = cells
        if "" in cells:
            invalid[index] = ("missing_value", raw)
            continue
        try:
            valid.append(Claim(index, int(claim_id), customer, region, float(amount), description))
        except ValueError:
            invalid[index] = ("wrong_type", raw)
    return valid, invalid


def local_model(claim: Claim) -> tuple[str, float]:
    """The call transform's local provider: label and score from SHA-256 of the request."""
    request = {"provider": "local", "model": "local-classifier-v1",
               "inputs": {"claim_id": claim.claim_id, "amount": claim.amount,
                          "description": claim.description}}
    digest = hashlib.sha256(rfc8785.dumps(request)).hexdigest()
    score = round(int(digest[:13], 16) / 16**13, 6)
    labels = ["low", "medium", "high"]
    return labels[min(int(score * 3), 2)], score


def review_row(claim: Claim) -> dict[str, Any]:
    """A high-value claim as the triage example's coalesce merges it (union of both branches)."""
    label, score = local_model(claim)
    return {"claim_id": claim.claim_id, "customer": claim.customer,
            "region": claim.region.upper(), "amount": claim.amount,
            "description": claim.description, "risk_label": label, "risk_score": score,
            "fraud_flag": claim.amount > 20000 and "cash" in claim.description.lower()}


def aggregate(spec: str, rows: list[dict[str, Any]]) -> Any:
    kind, _, field = spec.partition(":")
    if kind == "count":
        return len(rows)
    values = [r[field] for r in rows]
    return {"sum": math.fsum(values), "min": min(values), "max": max(values),
            "mean": math.fsum(values) / len(values)}[kind]


def expected_summary(high: list[Claim], chunk_size: int, count: int, group_by: list[str],
                     aggregates: dict[str, str]) -> list[dict[str, Any]]:
    """Batches never span chunks: each chunk cuts full batches of ``count``; its remainder waits
    as a draft and is flushed at end of source, after every chunk, in chunk order."""
    by_chunk: dict[int, list[Claim]] = {}
    for claim in high:
        by_chunk.setdefault(claim.index // chunk_size, []).append(claim)
    full: list[list[Claim]] = []
    drafts: list[list[Claim]] = []
    for chunk in sorted(by_chunk):
        members = by_chunk[chunk]
        cut = len(members) - len(members) % count
        full += [members[i:i + count] for i in range(0, cut, count)]
        if cut < len(members):
            drafts.append(members[cut:])
    out = []
    for batch in full + drafts:
        groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        for claim in batch:
            row = review_row(claim)
            groups.setdefault(tuple(row[g] for g in group_by), []).append(row)
        for key, members in groups.items():
            out.append({**dict(zip(group_by, key)),
                        **{name: aggregate(spec, members) for name, spec in aggregates.items()}})
    return out


def assert_close(found: dict[str, Any], want: dict[str, Any]) -> None:
    """Equal rows, floats compared to 1e-12 relative (sums of many amounts)."""
    assert found.keys() == want.keys(), (found, want)
    for key, value in want.items():
        if isinstance(value, float):
            assert found[key] == pytest.approx(value, rel=1e-12), (key, found, want)
        else:
            assert found[key] == value, (key, found, want)


def typed(row: dict[str, str], like: dict[str, Any]) -> dict[str, Any]:
    """A CSV row with each value converted to the type of the same field in ``like``."""
    return {k: type(like[k])(v) if k in like and not isinstance(like[k], str) else v
            for k, v in row.items()}


# --- the shipped examples -------------------------------------------------------------------------
def test_claims_linear_example_splits_claims_by_value(landscape: Landscape, clock: ManualClock,
                                                      tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = run_pipeline(landscape, clock, EXAMPLE_DIR / "claims_linear.yaml",
                          env={"GOVERNANCE_HOME": str(home)})
    assert result.status.value == "completed" and result.termination_reason.value == "completed"
    valid, invalid = parse_claims(CLAIMS)
    assert len(invalid) == 4 and len(valid) > 200

    out = home / "out" / "claims_linear"
    high = [(c.claim_id, c.region.upper(), c.amount, "high") for c in valid if c.amount >= 5000]
    standard = [(c.claim_id, c.region.upper(), c.amount, "standard") for c in valid
                if c.amount < 5000]
    assert high and standard

    def rows(name: str) -> list[tuple[int, str, float, str]]:
        found = read_csv(out / name)
        return [(int(r["claim_id"]), r["region"], float(r["amount"]), r["amount_band"])
                for r in found]
    assert rows("high_value.csv") == high
    assert rows("standard.csv") == standard
    quarantined = read_jsonl(out / "quarantine.jsonl")
    assert [(q["row_index"], q["error_code"]) for q in quarantined] == \
        [(i, code) for i, (code, _) in sorted(invalid.items())]
    for q in quarantined:
        assert q["raw"] == invalid[q["row_index"]][1].decode("utf-8", "backslashreplace")
    assert read_jsonl(out / "errors.jsonl") == []

    assert result.outcome_counts == {"completed": len(standard), "routed": len(high),
                                     "quarantined": len(invalid)}
    assert sink_rows(result) == {"standard": len(standard), "high_value": len(high),
                                 "errors": 0, "quarantine": len(invalid)}
    assert_clean(landscape, result)


def triage_copy(tmp_path: Path, chunk_size: int) -> Path:
    """The shipped triage pipeline with another chunk size (the data path made absolute)."""
    doc = yaml.safe_load((EXAMPLE_DIR / "claims_triage.yaml").read_text())
    doc["chunk_size"] = chunk_size
    doc["source"]["options"]["path"] = str(CLAIMS)
    return write_pipeline(tmp_path / "pipelines", doc, "claims_triage.yaml")


@pytest.mark.parametrize("chunk_size", [None, 37])
def test_claims_triage_example_forks_coalesces_and_summarises(
        chunk_size: int | None, landscape: Landscape, clock: ManualClock,
        tmp_path: Path) -> None:
    home = tmp_path / "home"
    path = EXAMPLE_DIR / "claims_triage.yaml" if chunk_size is None else \
        triage_copy(tmp_path, chunk_size)
    result = run_pipeline(landscape, clock, path, env={"GOVERNANCE_HOME": str(home)})
    assert result.status.value == "completed"
    config = load_pipeline(path, env={"GOVERNANCE_HOME": str(home)})
    valid, invalid = parse_claims(CLAIMS)
    out = home / "out" / "claims_triage"

    rejected = [c for c in valid if c.amount < 1]
    standard = [c for c in valid if 1 <= c.amount < 1000]
    high = [c for c in valid if c.amount >= 1000]
    assert len(high) > 50 and standard
    assert [(int(r["claim_id"]), r["customer"], r["region"], float(r["amount"]),
             r["description"]) for r in read_csv(out / "standard.csv")] == \
        [(c.claim_id, c.customer, c.region.upper(), c.amount, c.description) for c in standard]
    assert [r["claim_id"] for r in read_jsonl(out / "rejected.jsonl")] == \
        [c.claim_id for c in rejected]
    summarise = next(n for n in config.nodes if n.id == "summarise")
    assert summarise.function is not None and summarise.trigger.count is not None
    batch_size = summarise.trigger.count
    options = summarise.function.options
    expected = expected_summary(high, config.chunk_size, batch_size, options["group_by"],
                                options["aggregates"])
    summary = read_csv(out / "review_summary.csv")
    assert len(summary) == len(expected)
    for found, want in zip(summary, expected, strict=True):
        assert_close(typed(found, want), want)
    assert [q["row_index"] for q in read_jsonl(out / "quarantine.jsonl")] == sorted(invalid)

    assert result.outcome_counts == {
        "completed": len(standard) + len(expected), "forked": len(high),
        "coalesced": 2 * len(high), "consumed_in_batch": len(high),
        "quarantined": len(invalid), **({"routed": len(rejected)} if rejected else {})}
    batches = query(landscape, "SELECT b.status, b.trigger_type, count(m.token_id) AS members "
                               "FROM batches b JOIN batch_members m ON m.batch_id = b.batch_id "
                               "WHERE b.run_id = :run GROUP BY b.batch_id, b.status, "
                               "b.trigger_type ORDER BY b.batch_id", run=result.run_id)
    assert {b.status for b in batches} == {"completed"}
    assert sum(b.members for b in batches) == len(high)
    assert all(b.members == batch_size for b in batches if b.trigger_type == "count")
    assert all(b.members < batch_size for b in batches if b.trigger_type == "end_of_source")
    # A partial batch waited as a draft: its members were buffered, then consumed.
    buffered = query(landscape, "SELECT count(*) FROM token_outcomes WHERE run_id = :run AND "
                                "outcome = 'buffered'", run=result.run_id)[0][0]
    assert buffered == sum(b.members for b in batches if b.trigger_type == "end_of_source") > 0
    assert_clean(landscape, result)


# --- malformed input of every class ---------------------------------------------------------------
CSV_ROWS: list[tuple[bytes, str | None, str | None]] = [
    # raw line, expected error code (None: valid), field the reason names
    (b"0,alice,10.5\n", None, None),
    (b"1,caf\xe9,3\n", "bad_encoding", "name"),
    (b"2,bob,twelve\n", "wrong_type", "amount"),
    (b"3,carol,4.5,surplus\n", "too_many_fields", None),
    (b"4,,5.0\n", "missing_value", "name"),
    (b"5,dave\n", "missing_field", "amount"),
    (b"6," + b"x" * 100 + b",1.0\n", "oversized_field", "name"),
    (b"7,erin,2.5\n", None, None),
    (b"8," + b"y" * 50 + b",1.0\n", "too_long", "name"),
    (b"9," + b"z" * 300 + b",1.0\n", "oversized_field", None),
    (b"10,frank,1e3\n", None, None),
]
JSONL_ROWS: list[tuple[bytes, str | None, str | None]] = [
    (b'{"id": 0, "name": "alice", "amount": 10.5}\n', None, None),
    (b'{"id": 1, "name": "caf\xe9", "amount": 3}\n', "bad_encoding", None),
    (b'{"id": 2, "name": "bob", "amount": "twelve"}\n', "wrong_type", "amount"),
    (b'{"id": 3, "name": "carol", "amount": 4.5, "colour": "red"}\n', "extra_field", "colour"),
    (b'{"id": 4, "name": null, "amount": 5.0}\n', "missing_value", "name"),
    (b'{"id": 5, "name": "dave"}\n', "missing_field", "amount"),
    (b'{"id": 6, "name": "' + b"x" * 100 + b'", "amount": 1}\n', "oversized_field", "name"),
    (b'{"id": 7, "name": "erin", "amount": 2.5}\n', None, None),
    (b'{"id": 8, "name": "' + b"y" * 50 + b'", "amount": 1}\n', "too_long", "name"),
    (b'{"id": 9, "name": "' + b"z" * 300 + b'", "amount": 1}\n', "oversized_field", None),
    (b'{"id": 10, "name": "frank",\n', "malformed", None),
    (b'{"id": 11, "name": "gina", "amount": "1e3"}\n', None, None),
]


def payload_view(raw: bytes) -> Any:
    """How explain shows a stored payload: as JSON when it is JSON, else as text."""
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return {"raw": raw.decode("utf-8", "backslashreplace")}


def malformed_source(fmt: str, path: str, on_invalid: str) -> Doc:
    """Rows to ``out``; names at most 40 characters, fields 64 bytes, records 200 bytes."""
    source = source_doc({"id": "int", "name": "str", "amount": "float"}, plugin=fmt,
                        path=path, on_invalid=on_invalid, max_record_bytes=200)
    source["schema"]["fields"]["name"]["max_length"] = 40
    source["schema"]["max_field_bytes"] = 64
    source["on_success"] = "out"
    return source


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_every_malformed_class_is_quarantined_with_reason_and_raw_payload(
        fmt: str, landscape: Landscape, clock: ManualClock, tmp_path: Path) -> None:
    cases = CSV_ROWS if fmt == "csv" else JSONL_ROWS
    data = tmp_path / f"in.{fmt}"
    data.write_bytes((b"id,name,amount\n" if fmt == "csv" else b"") +
                     b"".join(raw for raw, _, _ in cases))
    source = malformed_source(fmt, data.name, "quarantine")
    path = write_pipeline(tmp_path, {"name": "malformed", "chunk_size": 4, "source": source,
                                     "sinks": {**jsonl_sinks("quarantine"),
                                               "out": {"plugin": "csv",
                                                       "options": {"path": "out/out.csv"}}}})
    result = run_pipeline(landscape, clock, path)
    assert result.status.value == "completed"

    bad = {i: (code, field, raw) for i, (raw, code, field) in enumerate(cases) if code}
    good = [i for i, (_, code, _) in enumerate(cases) if code is None]
    assert len(bad) >= 8
    # count in = count out: every record is either written or quarantined, none crashes the run
    assert result.outcome_counts == {"completed": len(good), "quarantined": len(bad)}
    assert sink_rows(result) == {"out": len(good), "quarantine": len(bad)}
    assert [int(r["id"]) for r in read_csv(tmp_path / "out" / "out.csv")] == good
    assert read_csv(tmp_path / "out" / "out.csv")[-1]["amount"] == "1000.0"  # "1e3" → 1000.0

    written = {q["row_index"]: q for q in read_jsonl(tmp_path / "out" / "quarantine.jsonl")}
    assert sorted(written) == sorted(bad)
    for index, (code, field, raw) in bad.items():
        kept = raw[:200]  # an oversized record keeps its first max_record_bytes bytes
        assert written[index]["error_code"] == code
        assert written[index]["raw"] == kept.decode("utf-8", "backslashreplace")
        exp = explain(landscape, result.run_id, row_index=index)
        [verr] = exp.validation_errors
        assert (verr.error_code, verr.destination) == (code, "quarantine")
        assert verr.reason == written[index]["error_reason"]
        if field:
            assert repr(field) in verr.reason, verr.reason
        assert load_payload(landscape, exp.row.source_data_hash) == kept
        assert exp.source_payload == payload_view(kept)
        [token] = exp.tokens
        [outcome] = [o for o in token.outcomes if o.is_terminal]
        assert (outcome.outcome.value, outcome.sink_name) == ("quarantined", "quarantine")
        assert token.errors == [{"node": "source", "code": code, "reason": verr.reason,
                                 "row_index": index}]
    assert_clean(landscape, result)


def test_quarantine_to_discard_still_records_every_invalid_row(
        landscape: Landscape, clock: ManualClock, tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_bytes(b"".join(raw for raw, _, _ in JSONL_ROWS))
    path = write_pipeline(tmp_path, {
        "name": "discarding", "source": malformed_source("jsonl", "in.jsonl", "discard"),
        "sinks": jsonl_sinks("out")})
    result = run_pipeline(landscape, clock, path)
    bad = [i for i, (_, code, _) in enumerate(JSONL_ROWS) if code]
    assert result.outcome_counts == {"completed": len(JSONL_ROWS) - len(bad),
                                     "quarantined": len(bad)}
    for index in bad:
        exp = explain(landscape, result.run_id, row_index=index)
        assert exp.validation_errors[0].destination == "discard"
        [outcome] = exp.tokens[0].outcomes
        assert outcome.outcome.value == "quarantined" and outcome.sink_name is None
        assert outcome.error_hash is not None
    assert_clean(landscape, result)


# --- coalesce: policies and merges ----------------------------------------------------------------
def numbered_rows(tmp_path: Path, n: int = 10) -> list[dict[str, Any]]:
    rows = [{"id": i, "amount": i * 10.0} for i in range(n)]
    write_rows(tmp_path / "in.jsonl", rows)
    return rows


def compute(node_id: str, source: str, target: str, fields: dict[str, str], **extra: Any) -> Doc:
    return {"id": node_id, "kind": "transform", "plugin": "compute", "input": source,
            "options": {"fields": fields}, "on_success": target, **extra}


def three_way_fork(coalesce: Doc, *, chunk_size: int = 10) -> Doc:
    """Fork every row into branches a, b, c; branch b sends rows with ``id % 3 == 0`` away to a
    sink, so their fork groups reach the coalesce with two of three branches."""
    return {
        "name": "three_way", "chunk_size": chunk_size,
        "source": source_doc({"id": "int", "amount": "float"}),
        "nodes": [
            {"id": "split", "kind": "gate", "input": "raw",
             "routes": [{"when": "amount >= 0", "fork": ["a_in", "b_in", "c_in"]}],
             "default": "out"},
            compute("a", "a_in", "a_done", {"a": "'A'", "shared": "'from a'"}),
            {"id": "b_gate", "kind": "gate", "input": "b_in",
             "routes": [{"when": "id % 3 == 0", "to": "away"}], "default": "b_mid"},
            compute("b", "b_mid", "b_done", {"b": "'B'"}),
            compute("c", "c_in", "c_done", {"c": "'C'", "shared": "'from c'"}),
            {"id": "join", "kind": "coalesce", "branches": ["a_done", "b_done", "c_done"],
             "on_success": "out", **coalesce},
        ],
        "sinks": jsonl_sinks("out", "away", "join_errors", "quarantine"),
    }


def branch_rows(row: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {"a_done": {**row, "a": "A", "shared": "from a"}, "b_done": {**row, "b": "B"},
            "c_done": {**row, "c": "C", "shared": "from c"}}


def merged(row: dict[str, Any], branches: list[str], merge: str) -> dict[str, Any]:
    rows = branch_rows(row)
    if merge == "nested":
        return {b: rows[b] for b in branches}
    if merge.startswith("select:"):
        return rows[merge.removeprefix("select:")]
    out: dict[str, Any] = {}
    for branch in ("a_done", "b_done", "c_done"):  # declared order: a later branch wins
        if branch in branches:
            out.update(rows[branch])
    return out


COALESCE_CASES: dict[str, tuple[Doc, str]] = {
    # case: (coalesce options, merge as expected by ``merged``)
    "require_all-union": ({"policy": "require_all", "merge": "union"}, "union"),
    "require_all-nested": ({"policy": "require_all", "merge": "nested"}, "nested"),
    "require_all-select": ({"policy": "require_all", "merge": "select",
                            "select_branch": "c_done"}, "select:c_done"),
    "quorum2-union": ({"policy": "quorum", "quorum": 2, "merge": "union"}, "union"),
    "quorum2-nested": ({"policy": "quorum", "quorum": 2, "merge": "nested"}, "nested"),
    "quorum3-union": ({"policy": "quorum", "quorum": 3, "merge": "union"}, "union"),
}


@pytest.mark.parametrize("case", sorted(COALESCE_CASES))
def test_coalesce_policy_and_merge(case: str, landscape: Landscape, clock: ManualClock,
                                   tmp_path: Path) -> None:
    options, merge = COALESCE_CASES[case]
    rows = numbered_rows(tmp_path)
    path = write_pipeline(tmp_path, three_way_fork({**options, "on_error": "join_errors"}))
    result = run_pipeline(landscape, clock, path)
    assert result.status.value == "completed"
    need = options.get("quorum", 3)
    complete = [r for r in rows if r["id"] % 3 != 0]
    partial = [r for r in rows if r["id"] % 3 == 0]  # branch b went away
    partial_ok = need <= 2
    expected_out = [merged(r, ["a_done", "b_done", "c_done"] if r["id"] % 3 else
                           ["a_done", "c_done"], merge)
                    for r in rows if r["id"] % 3 or partial_ok]
    assert read_jsonl(tmp_path / "out" / "out.jsonl") == expected_out
    assert read_jsonl(tmp_path / "out" / "away.jsonl") == partial
    failed = read_jsonl(tmp_path / "out" / "join_errors.jsonl")
    if partial_ok:
        assert failed == []
    else:
        reason = ("require_all: branch(es) b_done never arrived" if "policy" in options and
                  options["policy"] == "require_all" else
                  "quorum 3 not met: 2 arrived, missing ['b_done']")
        expected_failed = [{**branch_rows(r)[b], "_error_node": "join",
                            "_error_code": "coalesce_incomplete", "_error_reason": reason}
                           for b in ("a_done", "c_done") for r in partial]
        assert sorted(failed, key=lambda f: (f["id"], "c" in f)) == \
            sorted(expected_failed, key=lambda f: (f["id"], "c" in f))
    coalesced = 3 * len(complete) + (2 * len(partial) if partial_ok else 0)
    expected_counts = {"forked": len(rows), "routed": len(partial), "coalesced": coalesced,
                       "completed": len(expected_out)}
    if not partial_ok:
        expected_counts["diverted"] = 2 * len(partial)
    assert result.outcome_counts == expected_counts
    assert_clean(landscape, result)


def test_require_all_failure_is_recorded_with_the_decision(
        landscape: Landscape, clock: ManualClock, tmp_path: Path) -> None:
    numbered_rows(tmp_path, 4)
    path = write_pipeline(tmp_path, three_way_fork({"policy": "require_all"}))
    result = run_pipeline(landscape, clock, path)
    assert result.outcome_counts == {"forked": 4, "routed": 2, "coalesced": 6, "completed": 2,
                                     "failed": 4}  # on_error discard: failed, not diverted
    exp = explain(landscape, result.run_id, row_index=3)
    by_branch = {t.token.branch_name: t for t in exp.tokens}
    assert set(by_branch) == {None, "a_in", "b_in", "c_in"}
    assert [o.outcome.value for o in by_branch["b_in"].outcomes] == ["routed"]
    for branch in ("a_in", "c_in"):
        view = by_branch[branch]
        [state] = [s.state for s in view.states if s.state.node_id == "join"]
        assert state.status.value == "failed" and state.output_hash is None
        decision = json.loads(state.context_after or "{}")
        assert decision["policy"] == "require_all" and decision["expected"] == \
            ["a_done", "b_done", "c_done"]
        assert sorted(a["branch"] for a in decision["arrived"]) == ["a_done", "c_done"]
        assert decision["failure"] == "require_all: branch(es) b_done never arrived"
        assert [o.outcome.value for o in view.outcomes] == ["failed"]
        assert view.errors == [{"node": "join", "code": "coalesce_incomplete",
                                "reason": decision["failure"]}]


def test_first_policy_merges_the_first_arrival_and_fails_the_rest_as_late(
        landscape: Landscape, clock: ManualClock, tmp_path: Path) -> None:
    rows = numbered_rows(tmp_path, 6)
    path = write_pipeline(tmp_path, three_way_fork({"policy": "first"}))
    result = run_pipeline(landscape, clock, path)
    # Branch a is processed first (declared first), so it is the first arrival of every group.
    assert read_jsonl(tmp_path / "out" / "out.jsonl") == [branch_rows(r)["a_done"]
                                                          for r in rows]
    late = sum(2 if r["id"] % 3 else 1 for r in rows)
    assert result.outcome_counts == {"forked": 6, "routed": 2, "coalesced": 6, "completed": 6,
                                     "failed": late}
    exp = explain(landscape, result.run_id, row_index=1)
    for view in exp.tokens:
        if view.token.branch_name in ("b_in", "c_in"):
            [state] = [s.state for s in view.states if s.state.node_id == "join"]
            assert state.status.value == "failed"
            assert json.loads(state.error_json or "{}")["code"] == "late_arrival"
            assert view.token.token_id in json.loads(state.context_after or "{}")["late"]
    assert_clean(landscape, result)


def test_best_effort_merges_what_arrives_in_time_and_records_late_branches(
        landscape: Landscape, clock: ManualClock, tmp_path: Path) -> None:
    rows = numbered_rows(tmp_path)
    latency, timeout, chunk = 0.1, 0.25, 4
    path = write_pipeline(tmp_path, {
        "name": "best_effort", "chunk_size": chunk,
        "source": source_doc({"id": "int", "amount": "float"}),
        "nodes": [
            {"id": "split", "kind": "gate", "input": "raw",
             "routes": [{"when": "amount >= 0", "fork": ["fast_in", "slow_in"]}],
             "default": "out"},
            compute("fast", "fast_in", "fast_done", {"f": "1"}),
            {"id": "slow", "kind": "transform", "plugin": "call", "input": "slow_in",
             "options": {"provider": "local", "input": ["id"], "latency_ms": latency * 1000},
             "on_success": "slow_done"},
            {"id": "join", "kind": "coalesce", "branches": ["fast_done", "slow_done"],
             "policy": "best_effort", "timeout_seconds": timeout, "on_success": "out"},
        ],
        "sinks": jsonl_sinks("out", "quarantine")})
    started = clock.now()
    result = run_pipeline(landscape, clock, path)
    # Each call advances the clock: the k-th slow token of a chunk arrives (k+1)·latency after
    # the fast tokens of that chunk, which the fast branch delivered before the slow one ran.
    assert (clock.now() - started).total_seconds() == pytest.approx(len(rows) * latency)
    on_time = [(r["id"] % chunk + 1) * latency <= timeout for r in rows]
    expected = []
    for row, in_time in zip(rows, on_time):
        out = {**row, "f": 1}
        if in_time:
            digest = hashlib.sha256(rfc8785.dumps({"provider": "local",
                                                   "model": "local-classifier-v1",
                                                   "inputs": {"id": row["id"]}})).hexdigest()
            score = round(int(digest[:13], 16) / 16**13, 6)
            out |= {"label": ["low", "medium", "high"][min(int(score * 3), 2)], "score": score}
        expected.append(out)
    assert read_jsonl(tmp_path / "out" / "out.jsonl") == expected
    late = on_time.count(False)
    assert 0 < late < len(rows)
    assert result.outcome_counts == {"forked": len(rows), "completed": len(rows),
                                     "coalesced": 2 * len(rows) - late, "failed": late}
    row = on_time.index(False)
    exp = explain(landscape, result.run_id, row_index=row)
    slow = next(v for v in exp.tokens if v.token.branch_name == "slow_in")
    [state] = [s.state for s in slow.states if s.state.node_id == "join"]
    decision = json.loads(state.context_after or "{}")
    assert state.status.value == "failed" and decision["late"] == [slow.token.token_id]
    assert decision["timeout_seconds"] == timeout and decision["policy"] == "best_effort"
    arrived = {a["branch"]: a["after_s"] for a in decision["arrived"]}
    assert arrived == {"fast_done": 0.0,
                       "slow_done": pytest.approx((row % chunk + 1) * latency)}
    assert slow.errors == [{"node": "join", "code": "late_arrival",
                            "reason": "arrived after the coalesce decided (best_effort)"}]
    merged_token = next(v for v in exp.tokens if v.token.join_group_id)
    fast = next(v for v in exp.tokens if v.token.branch_name == "fast_in")
    assert merged_token.parents == [fast.token.token_id]  # the late branch is no parent
    assert_clean(landscape, result)


# --- aggregation: triggers and output modes -------------------------------------------------------
def aggregation_doc(trigger: Doc, *, chunk_size: int, output: str = "passthrough",
                    upstream: list[Doc] | None = None, extra_sinks: tuple[str, ...] = ()) -> Doc:
    node: Doc = {"id": "agg", "kind": "aggregation", "input": "to_agg", "trigger": trigger,
                 "output": output, "on_success": "out"}
    if output == "transform":
        node["function"] = {"plugin": "summarize",
                            "options": {"aggregates": {"n": "count", "total": "sum:amount",
                                                       "first": "min:id"}}}
    nodes = upstream or [compute("prep", "raw", "to_agg", {"seen": "true"})]
    return {"name": "aggregating", "chunk_size": chunk_size,
            "source": source_doc({"id": "int", "amount": "float"}), "nodes": [*nodes, node],
            "sinks": jsonl_sinks("out", "quarantine", *extra_sinks)}


def batches_of(landscape: Landscape, run_id: str) -> list[tuple[str, str, str, list[int]]]:
    """(status, trigger type, trigger reason, member row indices) per batch, in batch id order."""
    found: dict[str, tuple[str, str, str, list[int]]] = {}
    for r in query(landscape, "SELECT b.batch_id, b.status, b.trigger_type, b.trigger_reason, "
                              "r.row_index FROM batches b "
                              "JOIN batch_members m ON m.batch_id = b.batch_id "
                              "JOIN tokens t ON t.token_id = m.token_id "
                              "JOIN rows r ON r.row_id = t.row_id "
                              "WHERE b.run_id = :run ORDER BY b.batch_id, m.ordinal",
                   run=run_id):
        found.setdefault(r.batch_id, (r.status, r.trigger_type, r.trigger_reason, []))[3] \
            .append(r.row_index)
    return list(found.values())


def count_batches(ids: list[int], chunk_size: int, count: int) -> list[tuple[str, list[int]]]:
    """(trigger, members) in batch id order: per chunk its full batches, then its remainder."""
    out = []
    for start in range(0, len(ids), chunk_size):
        chunk = ids[start:start + chunk_size]
        cut = len(chunk) - len(chunk) % count
        out += [("count", chunk[i:i + count]) for i in range(0, cut, count)]
        if cut < len(chunk):
            out.append(("end_of_source", chunk[cut:]))
    return out


@pytest.mark.parametrize("output", ["passthrough", "transform"])
def test_count_trigger_batches_within_chunks_and_flushes_drafts_at_end(
        output: str, landscape: Landscape, clock: ManualClock, tmp_path: Path) -> None:
    rows = numbered_rows(tmp_path)
    path = write_pipeline(tmp_path, aggregation_doc({"count": 3}, chunk_size=4, output=output))
    result = run_pipeline(landscape, clock, path)
    expected = count_batches([r["id"] for r in rows], 4, 3)
    found = batches_of(landscape, result.run_id)
    assert [(status, trigger, members) for status, trigger, _, members in found] == \
        [("completed", trigger, members) for trigger, members in expected]
    # Output order: each chunk's part (its count batches), then the final step's part.
    in_order = [b for b in expected if b[0] == "count"] + \
        [b for b in expected if b[0] == "end_of_source"]
    written = read_jsonl(tmp_path / "out" / "out.jsonl")
    if output == "passthrough":
        assert written == [{**rows[i], "seen": True} for _, m in in_order for i in m]
        assert result.outcome_counts == {"completed": len(rows)}
    else:
        assert written == [{"n": len(m), "total": math.fsum(rows[i]["amount"] for i in m),
                            "first": m[0]} for _, m in in_order]
        assert result.outcome_counts == {"consumed_in_batch": len(rows),
                                         "completed": len(expected)}
    drafted = sorted(i for trigger, m in expected if trigger == "end_of_source" for i in m)
    buffered = query(landscape, "SELECT r.row_index FROM token_outcomes o "
                                "JOIN tokens t ON t.token_id = o.token_id "
                                "JOIN rows r ON r.row_id = t.row_id "
                                "WHERE o.run_id = :run AND o.outcome = 'buffered'",
                     run=result.run_id)
    assert sorted(b[0] for b in buffered) == drafted
    assert_clean(landscape, result)


def test_aggregation_output_tokens_descend_from_their_batch(
        landscape: Landscape, clock: ManualClock, tmp_path: Path) -> None:
    numbered_rows(tmp_path, 6)
    path = write_pipeline(tmp_path, aggregation_doc({"count": 3}, chunk_size=10,
                                                    output="transform"))
    result = run_pipeline(landscape, clock, path)
    exp = explain(landscape, result.run_id, row_index=0)
    [member] = [v for v in exp.tokens if any(o.outcome.value == "consumed_in_batch"
                                             for o in v.outcomes)]
    [batch_id] = [o.batch_id for o in member.outcomes if o.is_terminal]
    # Lineage runs through the batch: the output names its batch, the batch lists its members.
    [child] = member.batch_outputs
    focused = explain(landscape, result.run_id, token_id=child)
    [view] = [v for v in focused.tokens if v.token.token_id == child]
    assert view.token.join_group_id == batch_id
    assert [r.row_index for r in query(
        landscape, "SELECT r.row_index FROM batch_members m JOIN tokens t ON "
                   "t.token_id = m.token_id JOIN rows r ON r.row_id = t.row_id "
                   "WHERE m.batch_id = :b ORDER BY m.ordinal", b=batch_id)] == [0, 1, 2]
    assert [(o.outcome.value, o.sink_name) for o in view.outcomes] == [("completed", "out")]
    [state] = [s.state for s in member.states if s.state.node_id == "agg"]
    context = json.loads(state.context_after or "{}")
    assert context["batch"] == batch_id and context["trigger"] == "count" and \
        context["members"] == 3


@pytest.mark.parametrize(("condition", "expected"), [
    ("id % 4 == 3", [("condition", [0, 1, 2, 3]), ("condition", [4, 5, 6, 7]),
                     ("end_of_source", [8, 9])]),
    ("batch_count >= 4", [("condition", [0, 1, 2, 3]), ("condition", [4, 5, 6, 7]),
                          ("end_of_source", [8, 9])]),
    ("amount >= 60", [("condition", [0, 1, 2, 3, 4, 5, 6]), ("condition", [7]),
                      ("condition", [8]), ("condition", [9])]),
])
def test_condition_trigger(condition: str, expected: list[tuple[str, list[int]]],
                           landscape: Landscape, clock: ManualClock, tmp_path: Path) -> None:
    numbered_rows(tmp_path)
    path = write_pipeline(tmp_path, aggregation_doc({"condition": condition}, chunk_size=10))
    result = run_pipeline(landscape, clock, path)
    found = batches_of(landscape, result.run_id)
    assert [(trigger, members) for _, trigger, _, members in found] == expected
    assert all(reason == f"condition true: {condition}" for _, trigger, reason, _ in found
               if trigger == "condition")
    assert_clean(landscape, result)


def test_end_of_source_trigger_holds_each_chunk_as_a_draft_until_the_end(
        landscape: Landscape, clock: ManualClock, tmp_path: Path) -> None:
    rows = numbered_rows(tmp_path)
    path = write_pipeline(tmp_path, aggregation_doc({}, chunk_size=4))
    result = run_pipeline(landscape, clock, path)
    found = batches_of(landscape, result.run_id)
    assert found == [("completed", "end_of_source", "end of source", [0, 1, 2, 3]),
                     ("completed", "end_of_source", "end of source", [4, 5, 6, 7]),
                     ("completed", "end_of_source", "end of source", [8, 9])]
    assert [r["id"] for r in read_jsonl(tmp_path / "out" / "out.jsonl")] == \
        [r["id"] for r in rows]
    assert_clean(landscape, result)


def slow_call(node_id: str, source: str, target: str, latency_s: float) -> Doc:
    return {"id": node_id, "kind": "transform", "plugin": "call", "input": source,
            "options": {"provider": "local", "input": ["id"], "latency_ms": latency_s * 1000},
            "on_success": target}


def test_timeout_trigger_cuts_batches_by_arrival_time_on_the_injected_clock(
        landscape: Landscape, clock: ManualClock, tmp_path: Path) -> None:
    numbered_rows(tmp_path)
    # Token k reaches the aggregation (k+1)·0.1 s after the chunk started: a batch closes when
    # a token arrives 0.25 s or more after the batch's first one.
    path = write_pipeline(tmp_path, aggregation_doc(
        {"timeout_seconds": 0.25}, chunk_size=10,
        upstream=[slow_call("slow", "raw", "to_agg", 0.1)]))
    result = run_pipeline(landscape, clock, path)
    found = batches_of(landscape, result.run_id)
    assert [(trigger, members) for _, trigger, _, members in found] == [
        ("timeout", [0, 1, 2]), ("timeout", [3, 4, 5]), ("timeout", [6, 7, 8]),
        ("end_of_source", [9])]
    assert found[0][2] == "timeout before next arrival"
    assert_clean(landscape, result)


def test_timeout_trigger_at_the_end_of_a_chunk(landscape: Landscape, clock: ManualClock,
                                               tmp_path: Path) -> None:
    numbered_rows(tmp_path)
    # Rows 0-2 reach the aggregation at once; the seven others go through a slow call first
    # (declared earlier, so it runs earlier), which moves the clock 3.5 s before the aggregation
    # looks at its open batch at the end of the chunk.
    path = write_pipeline(tmp_path, aggregation_doc(
        {"timeout_seconds": 1.0}, chunk_size=10, extra_sinks=("slow_out",), upstream=[
            {"id": "g", "kind": "gate", "input": "raw", "routes": [{"when": "id < 3",
                                                                    "to": "to_agg"}],
             "default": "slow_in"},
            slow_call("slow", "slow_in", "slow_out", 0.5)]))
    result = run_pipeline(landscape, clock, path)
    assert batches_of(landscape, result.run_id) == [
        ("completed", "timeout", "timeout at end of chunk", [0, 1, 2])]
    assert query(landscape, "SELECT count(*) FROM token_outcomes WHERE run_id = :run AND "
                            "outcome = 'buffered'", run=result.run_id) == [(0,)]
    assert_clean(landscape, result)


def test_a_failing_batch_function_fails_its_members_not_the_run(
        landscape: Landscape, clock: ManualClock, tmp_path: Path) -> None:
    write_rows(tmp_path / "in.jsonl", [{"id": i, "amount": "x" if i == 4 else i}
                                       for i in range(6)])
    doc = aggregation_doc({"count": 3}, chunk_size=10, output="transform")
    doc["source"]["schema"]["fields"]["amount"]["type"] = "any"
    doc["nodes"][-1]["on_error"] = "agg_errors"
    doc["sinks"] |= jsonl_sinks("agg_errors")
    result = run_pipeline(landscape, clock, write_pipeline(tmp_path, doc))
    assert result.status.value == "completed"
    found = batches_of(landscape, result.run_id)
    assert [(s, t, m) for s, t, _, m in found] == [("completed", "count", [0, 1, 2]),
                                                   ("failed", "count", [3, 4, 5])]
    errors = read_jsonl(tmp_path / "out" / "agg_errors.jsonl")
    assert [e["id"] for e in errors] == [3, 4, 5]
    assert {e["_error_code"] for e in errors} == {"batch_failed"}
    assert "sum:amount needs numbers" in errors[0]["_error_reason"]
    assert result.outcome_counts == {"consumed_in_batch": 3, "completed": 1, "diverted": 3}
    assert_clean(landscape, result)


def test_a_condition_that_cannot_be_evaluated_fails_that_token_not_the_run(
        landscape: Landscape, clock: ManualClock, tmp_path: Path) -> None:
    write_rows(tmp_path / "in.jsonl", [{"id": i, **({} if i == 2 else {"amount": i * 10})}
                                       for i in range(6)])
    doc = aggregation_doc({"condition": "amount >= 30"}, chunk_size=10)
    del doc["source"]["schema"]  # rows pass as read: row 2 has no amount
    doc["nodes"][-1]["on_error"] = "agg_errors"
    doc["sinks"] |= jsonl_sinks("agg_errors")
    result = run_pipeline(landscape, clock, write_pipeline(tmp_path, doc))
    assert result.status.value == "completed"
    [error] = read_jsonl(tmp_path / "out" / "agg_errors.jsonl")
    assert error["id"] == 2 and error["_error_node"] == "agg"
    assert "amount" in error["_error_reason"]
    assert [(t, m) for _, t, _, m in batches_of(landscape, result.run_id)] == \
        [("condition", [0, 1, 3]), ("condition", [4]), ("condition", [5])]
    assert result.outcome_counts == {"completed": 5, "diverted": 1}
    assert_clean(landscape, result)


# --- filters, transform errors, gate conditions, sink rejections ----------------------------------
def test_filtered_rows_end_as_dropped_with_the_reason(landscape: Landscape, clock: ManualClock,
                                                      tmp_path: Path) -> None:
    rows = numbered_rows(tmp_path)
    path = write_pipeline(tmp_path, {
        "name": "filtering", "source": source_doc({"id": "int", "amount": "float"}),
        "nodes": [{"id": "keep", "kind": "transform", "plugin": "filter", "input": "raw",
                   "options": {"when": "amount >= 50"}, "on_success": "out"}],
        "sinks": jsonl_sinks("out", "quarantine")})
    result = run_pipeline(landscape, clock, path)
    kept = [r for r in rows if r["amount"] >= 50]
    assert read_jsonl(tmp_path / "out" / "out.jsonl") == kept
    assert result.outcome_counts == {"completed": len(kept), "dropped": len(rows) - len(kept)}
    exp = explain(landscape, result.run_id, row_index=0)
    [view] = exp.tokens
    [outcome] = view.outcomes
    assert outcome.outcome.value == "dropped" and outcome.sink_name is None
    assert json.loads(outcome.context_json or "{}") == {
        "node": "keep", "dropped": "filter: 'amount >= 50' is false"}
    [state] = [s.state for s in view.states]
    assert state.status.value == "completed" and state.output_hash == state.input_hash
    assert_clean(landscape, result)


@pytest.mark.parametrize("on_error", ["errors", "discard"])
def test_transform_errors_are_diverted_or_failed(on_error: str, landscape: Landscape,
                                                 clock: ManualClock, tmp_path: Path) -> None:
    rows = [{"id": i, "code": "x" if i % 4 == 1 else str(i * 7)} for i in range(8)]
    write_rows(tmp_path / "in.jsonl", rows)
    path = write_pipeline(tmp_path, {
        "name": "erroring", "source": source_doc({"id": "int", "code": "str"}),
        "nodes": [compute("parse", "raw", "out", {"n": "int(code)"}, on_error=on_error)],
        "sinks": jsonl_sinks("out", "errors", "quarantine")})
    result = run_pipeline(landscape, clock, path)
    good = [r for r in rows if r["code"] != "x"]
    bad = [r for r in rows if r["code"] == "x"]
    assert read_jsonl(tmp_path / "out" / "out.jsonl") == [{**r, "n": int(r["code"])}
                                                          for r in good]
    reason = "fields.n: cannot evaluate 'int(code)' at 1:1: int() cannot convert 'x' to an integer"
    if on_error == "errors":
        assert read_jsonl(tmp_path / "out" / "errors.jsonl") == [
            {**r, "_error_node": "parse", "_error_code": "expression_error",
             "_error_reason": reason} for r in bad]
        assert result.outcome_counts == {"completed": len(good), "diverted": len(bad)}
    else:
        assert read_jsonl(tmp_path / "out" / "errors.jsonl") == []
        assert result.outcome_counts == {"completed": len(good), "failed": len(bad)}
    exp = explain(landscape, result.run_id, row_index=1)
    [view] = exp.tokens
    parse = next(s.state for s in view.states if s.state.node_id == "parse")
    assert parse.status.value == "failed" and parse.output_hash is None
    assert json.loads(parse.error_json or "{}") == {"node": "parse", "code": "expression_error",
                                                    "reason": reason}
    [outcome] = view.outcomes
    expected = ("diverted", "errors") if on_error == "errors" else ("failed", None)
    assert (outcome.outcome.value, outcome.sink_name) == expected
    assert view.errors == [{"node": "parse", "code": "expression_error", "reason": reason}]
    assert_clean(landscape, result)


def test_a_gate_condition_must_be_true_or_false(landscape: Landscape, clock: ManualClock,
                                                tmp_path: Path) -> None:
    """docs/expressions.md: 0, "" or null are not silently false; the row fails instead."""
    write_rows(tmp_path / "in.jsonl", [{"id": i, "amount": float(i % 2)} for i in range(4)])
    path = write_pipeline(tmp_path, {
        "name": "truthy", "source": source_doc({"id": "int", "amount": "float"}),
        "nodes": [{"id": "g", "kind": "gate", "input": "raw", "on_error": "errors",
                   "routes": [{"when": "amount", "to": "big"}], "default": "out"}],
        "sinks": jsonl_sinks("out", "big", "errors", "quarantine")})
    result = run_pipeline(landscape, clock, path)
    assert read_jsonl(tmp_path / "out" / "big.jsonl") == []
    assert read_jsonl(tmp_path / "out" / "out.jsonl") == []
    errors = read_jsonl(tmp_path / "out" / "errors.jsonl")
    assert [e["id"] for e in errors] == [0, 1, 2, 3]
    assert all("must be true or false" in e["_error_reason"] for e in errors)
    assert result.outcome_counts == {"diverted": 4}


@pytest.mark.parametrize("on_reject", ["rejects", None])
def test_rows_a_sink_rejects_go_to_its_fail_sink(on_reject: str | None, landscape: Landscape,
                                                  clock: ManualClock, tmp_path: Path) -> None:
    rows = [{"id": i, "amount": i * 1.5, **({"note": "extra"} if i % 3 == 2 else {})}
            for i in range(9)]
    write_rows(tmp_path / "in.jsonl", rows)
    out_sink: Doc = {"plugin": "csv", "options": {"path": "out/out.csv",
                                                  "fields": ["id", "amount"]}}
    if on_reject:
        out_sink["on_reject"] = on_reject
    path = write_pipeline(tmp_path, {
        "name": "rejecting", "chunk_size": 4,
        "source": {"plugin": "jsonl", "options": {"path": "in.jsonl"}, "on_success": "out"},
        "sinks": {"out": out_sink, **jsonl_sinks("rejects")}})
    result = run_pipeline(landscape, clock, path)
    fits = [r for r in rows if "note" not in r]
    unfit = [r for r in rows if "note" in r]
    assert [(int(r["id"]), float(r["amount"])) for r in read_csv(tmp_path / "out" / "out.csv")] \
        == [(r["id"], r["amount"]) for r in fits]
    if on_reject:
        assert read_jsonl(tmp_path / "out" / "rejects.jsonl") == unfit
        assert result.outcome_counts == {"completed": len(fits), "diverted": len(unfit)}
    else:
        assert read_jsonl(tmp_path / "out" / "rejects.jsonl") == []
        assert result.outcome_counts == {"completed": len(fits), "failed": len(unfit)}
    exp = explain(landscape, result.run_id, row_index=2)
    [view] = exp.tokens
    states = {s.state.node_id: s.state for s in view.states}
    assert states["out"].status.value == "failed"
    assert json.loads(states["out"].error_json or "{}") == {
        "node": "out", "code": "rejected_by_sink", "reason": "unexpected fields: note"}
    [outcome] = view.outcomes
    if on_reject:
        assert states["rejects"].status.value == "completed"
        assert states["rejects"].output_hash == \
            hashlib.sha256(rfc8785.dumps(rows[2])).hexdigest()
        assert (outcome.outcome.value, outcome.sink_name) == ("diverted", "rejects")
    else:
        assert "rejects" not in states and outcome.outcome.value == "failed"
    assert_clean(landscape, result)


# --- the command line: run --json and explain --json ----------------------------------------------
def cli(home: Path, db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GOVERNANCE_DEBUG", "DAGSTER_HOME")}
    env |= {"GOVERNANCE_HOME": str(home), "GOVERNANCE_DB_URL": db_url}
    return subprocess.run([str(CLI), *args], env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=300, cwd=home.parent)


def test_run_json_reports_status_counts_and_sink_digests(db_url: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    ran = cli(home, db_url, "run", str(EXAMPLE_DIR / "claims_linear.yaml"), "--json")
    assert ran.returncode == 0, ran.stderr + ran.stdout
    doc = json.loads(ran.stdout)
    valid, invalid = parse_claims(CLAIMS)
    high = sum(c.amount >= 5000 for c in valid)
    assert doc["run_id"].startswith("run_")
    assert (doc["status"], doc["termination_reason"]) == ("completed", "completed")
    assert doc["counts"] == {"completed": len(valid) - high, "routed": high,
                             "quarantined": len(invalid)}
    assert set(doc["sinks"]) == {"standard", "high_value", "errors", "quarantine"}
    for name, sink in doc["sinks"].items():
        data = Path(sink["path"]).read_bytes()
        assert Path(sink["path"]) == home / "out" / "claims_linear" / Path(sink["path"]).name
        assert sink["sha256"] == hashlib.sha256(data).hexdigest(), name
        assert sink["size_bytes"] == len(data)
        header = 1 if sink["path"].endswith(".csv") and data else 0
        assert sink["rows"] == data.count(b"\n") - header, name
    assert doc["sinks"]["high_value"]["rows"] == high
    human = cli(home, db_url, "run", str(EXAMPLE_DIR / "claims_linear.yaml"))
    assert human.returncode == 0 and ": completed (completed)" in human.stdout
    assert "chunk 0: " in human.stderr and "final step: " in human.stderr  # progress


def test_explain_json_shows_the_full_lineage_of_a_forked_row(db_url: str,
                                                              tmp_path: Path) -> None:
    home = tmp_path / "home"
    ran = cli(home, db_url, "run", str(EXAMPLE_DIR / "claims_triage.yaml"), "--json")
    assert ran.returncode == 0, ran.stderr + ran.stdout
    run_id = json.loads(ran.stdout)["run_id"]
    valid, _ = parse_claims(CLAIMS)
    claim = next(c for c in valid if c.amount >= 1000)
    shown = cli(home, db_url, "explain", run_id, "--row", str(claim.index), "--json")
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    source_row = {"claim_id": claim.claim_id, "customer": claim.customer,
                  "region": claim.region, "amount": claim.amount,
                  "description": claim.description}
    assert doc["source_payload"] == source_row
    assert doc["source_data_hash"] == hashlib.sha256(rfc8785.dumps(source_row)).hexdigest()
    tokens = {t["branch"]: t for t in doc["tokens"] if not t["join_group"]}
    [joined] = [t for t in doc["tokens"] if t["join_group"]]
    root, risk, fraud = tokens[None], tokens["risk_in"], tokens["fraud_in"]

    normalize, gate = root["states"]
    normalized = {**source_row, "region": claim.region.upper()}
    assert (normalize["node_id"], normalize["status"]) == ("normalize", "completed")
    assert normalize["input_hash"] == doc["source_data_hash"]
    assert normalize["output_hash"] == hashlib.sha256(rfc8785.dumps(normalized)).hexdigest()
    assert gate["node_id"] == "triage" and gate["input_hash"] == normalize["output_hash"]
    assert [(r["to"], r["mode"]) for r in gate["routing"]] == [("risk_model", "copy"),
                                                              ("fraud_check", "copy")]
    assert gate["routing"][0]["reason"] == {"route": 1, "when": "amount >= 1000"}
    assert [o["outcome"] for o in root["outcomes"]] == ["forked"]
    assert sorted(root["children"]) == sorted([risk["token_id"], fraud["token_id"]])
    assert risk["parents"] == [root["token_id"]] == fraud["parents"]

    [model] = [s for s in risk["states"] if s["node_id"] == "risk_model"]
    [call] = model["calls"]
    label, score = local_model(claim)
    assert (call["type"], call["status"]) == ("local_classifier", "success")
    assert call["request"]["inputs"] == {"claim_id": claim.claim_id, "amount": claim.amount,
                                         "description": claim.description}
    assert call["response"] == {"label": label, "score": score}
    assert sorted(joined["parents"]) == sorted([risk["token_id"], fraud["token_id"]])
    assert [o["outcome"] for o in risk["outcomes"]] == ["coalesced"]
    [merge] = [s for s in joined["states"] if s["node_id"] == "summarise"]
    assert merge["input_hash"] == hashlib.sha256(rfc8785.dumps(review_row(claim))).hexdigest()
    [terminal] = [o for o in joined["outcomes"] if o["terminal"]]
    assert terminal["outcome"] == "consumed_in_batch" and terminal["batch_id"]
    assert joined["batch_outputs"]  # one summary row per region of the batch
    summary_token = joined["batch_outputs"][0]

    focused = json.loads(cli(home, db_url, "explain", run_id, "--token", summary_token,
                             "--json").stdout)
    assert focused["focus_token"] == summary_token
    [out] = [t for t in focused["tokens"] if t["token_id"] == summary_token]
    [written] = [s for s in out["states"] if s["node_id"] == "review_summary"]
    assert written["status"] == "completed" and written["output_hash"]
    assert [(o["outcome"], o["sink"]) for o in out["outcomes"]] == \
        [("completed", "review_summary")]

    standard = next(c for c in valid if 1 <= c.amount < 1000)
    plain = json.loads(cli(home, db_url, "explain", run_id, "--row", str(standard.index),
                           "--json").stdout)
    [view] = plain["tokens"]
    sink_state = view["states"][-1]
    written_row = {"claim_id": standard.claim_id, "customer": standard.customer,
                   "region": standard.region.upper(), "amount": standard.amount,
                   "description": standard.description}
    assert sink_state["node_id"] == "standard" and sink_state["status"] == "completed"
    assert sink_state["output_hash"] == hashlib.sha256(rfc8785.dumps(written_row)).hexdigest()
    assert [(o["outcome"], o["sink"]) for o in view["outcomes"]] == [("completed", "standard")]
    human = cli(home, db_url, "explain", run_id, "--row", str(claim.index))
    assert human.returncode == 0 and "call local_classifier success" in human.stdout
