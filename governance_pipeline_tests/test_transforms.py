"""The built-in transforms and the summarize batch function: results, drops, row errors, option
errors naming their path, call recording (local across processes, http against a live server)."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
import rfc8785

from governance_pipeline.contracts.clock import ManualClock, SystemClock
from governance_pipeline.contracts.enums import Determinism
from governance_pipeline.contracts.errors import ConfigError, ExitCode
from governance_pipeline.engine.expressions import ExpressionSyntaxError
from governance_pipeline.engine.plugin_api import BatchFunction, Transform, TransformContext
from governance_pipeline.plugins.transforms.call import Call
from governance_pipeline.plugins.transforms.field_map import Compute, FieldMap, Rename
from governance_pipeline.plugins.transforms.filter import Filter
from governance_pipeline.plugins.transforms.lookup import Lookup, LookupTableError
from governance_pipeline.plugins.transforms.summarize import BatchFunctionError, Summarize

ROW = {"id": 7, "name": "Alice", "country": "DE", "amount": 1500, "rate": 0.25, "note": None}


@pytest.fixture
def ctx() -> TransformContext:
    return TransformContext(clock=ManualClock(), run_id="run-1", node_id="node-1", token_id="tok-1")


def _options_error(plugin: type, options: Any, base_dir: Path = Path(".")) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        plugin(options, base_dir=base_dir)
    assert info.value.exit_code is ExitCode.INVALID_INPUT
    return info.value


def test_entry_points_resolve_to_the_classes_with_declared_determinism() -> None:
    expected = {"field_map": (FieldMap, Determinism.DETERMINISTIC),
                "rename": (Rename, Determinism.DETERMINISTIC),
                "compute": (Compute, Determinism.DETERMINISTIC),
                "filter": (Filter, Determinism.DETERMINISTIC),
                "lookup": (Lookup, Determinism.IO_READ),
                "call": (Call, Determinism.EXTERNAL_CALL)}
    found = {ep.name: ep.load() for ep in entry_points(group="governance_pipeline.transforms")}
    for name, (cls, determinism) in expected.items():
        assert found[name] is cls and issubclass(cls, Transform)
        assert cls.name == name and cls.determinism is determinism and cls.version
    batch = {ep.name: ep.load() for ep in entry_points(group="governance_pipeline.batch_functions")}
    assert batch["summarize"] is Summarize and issubclass(Summarize, BatchFunction)


# --- field_map / compute / rename ---------------------------------------------------------------
def test_field_map_builds_a_new_row_from_expressions(ctx: TransformContext) -> None:
    before = copy.deepcopy(ROW)
    fm = FieldMap({"fields": {"who": "upper(name)", "gross": "amount * (1 + rate)",
                              "big": "amount > 1000"}}, base_dir=Path("."))
    result = fm.process(ROW, ctx)
    assert result.row == {"who": "ALICE", "gross": ROW["amount"] * (1 + ROW["rate"]), "big": True}
    assert ROW == before
    kept = FieldMap({"fields": {"amount": "amount + 1"}, "keep_others": True}, base_dir=Path("."))
    row = kept.process(ROW, ctx).row
    assert row == {**ROW, "amount": ROW["amount"] + 1} and list(row) == list(ROW)
    assert ROW == before


def test_field_map_expressions_see_the_input_row_and_compute_sees_earlier_fields(
        ctx: TransformContext) -> None:
    spec = {"fields": {"amount": "amount * 2", "double_again": "amount * 2"}}
    assert FieldMap(spec, base_dir=Path(".")).process(ROW, ctx).row == {
        "amount": ROW["amount"] * 2, "double_again": ROW["amount"] * 2}
    row = Compute(spec, base_dir=Path(".")).process(ROW, ctx).row
    assert row == {**ROW, "amount": ROW["amount"] * 2, "double_again": ROW["amount"] * 4}
    assert ROW["amount"] == 1500


def test_expression_failures_become_row_errors_naming_the_field(ctx: TransformContext) -> None:
    for plugin in (FieldMap, Compute):
        result = plugin({"fields": {"ok": "1", "bad": "name > 5"}}, base_dir=Path(".")).process(ROW, ctx)
        assert result.row is None and result.error is not None
        assert result.error.code == "expression_error"
        assert result.error.reason.startswith("fields.bad: cannot evaluate 'name > 5' at 1:6: ")
        assert "'>' not supported between str and int" in result.error.reason
    missing = Compute({"fields": {"x": "absent + 1"}}, base_dir=Path(".")).process(ROW, ctx)
    assert missing.error is not None and "missing field 'absent'" in missing.error.reason


@pytest.mark.parametrize(("plugin", "options", "message"), [
    (FieldMap, {}, "field_map: options.fields: field required"),
    (FieldMap, {"fields": {}}, "field_map: options.fields: dictionary should have at least 1 item"),
    (FieldMap, {"fields": {"a": "1"}, "keep_others": "yes"}, "field_map: options.keep_others: input should be a valid boolean"),
    (FieldMap, {"fields": {"a": 1}}, "field_map: options.fields.a: input should be a valid string"),
    (FieldMap, {"fields": {"a": "1"}, "extra": 1}, "field_map: options.extra: unknown option"),
    (FieldMap, {"fields": {" ": "1"}}, "field_map: options.fields: field names must not be empty"),
    (FieldMap, ["a"], "field_map: options: input should be a valid dictionary"),
    (Compute, {"fields": "a"}, "compute: options.fields: input should be a valid dictionary"),
    (Rename, {"fields": {"a": "x", "b": "x"}}, "rename: options.fields: two fields renamed to the same name: x"),
    (Rename, {}, "rename: options.fields: field required"),
    (Filter, {}, "filter: options.when: field required"),
    (Filter, {"when": True}, "filter: options.when: input should be a valid string"),
])
def test_option_errors_name_the_field_path(plugin: type, options: Any, message: str) -> None:
    err = _options_error(plugin, options)
    assert err.message.lower().startswith(message.lower()), err.message
    assert err.code.code == "GP-TRANSFORM-001" and err.details["plugin"] == plugin.name


def test_expression_syntax_errors_name_the_option(ctx: TransformContext) -> None:
    with pytest.raises(ExpressionSyntaxError) as info:
        Compute({"fields": {"ok": "1", "total": "amount + exec(1)"}}, base_dir=Path("."))
    assert info.value.message.startswith(
        "compute: options.fields.total: expression error at 1:10: unknown function 'exec'")
    with pytest.raises(ExpressionSyntaxError) as info:
        Filter({"when": "amount.__class__"}, base_dir=Path("."))
    assert info.value.message.startswith("filter: options.when: expression error at 1:8: ")
    assert info.value.code.code == "GP-EXPR-001"


def test_rename_keeps_positions_and_fails_on_missing_or_colliding_fields(ctx: TransformContext) -> None:
    before = copy.deepcopy(ROW)
    row = Rename({"fields": {"name": "customer", "amount": "value"}}, base_dir=Path(".")).process(ROW, ctx).row
    assert list(row) == ["id", "customer", "country", "value", "rate", "note"]
    assert row["customer"] == "Alice" and row["value"] == 1500 and ROW == before
    swap = Rename({"fields": {"name": "country", "country": "name"}}, base_dir=Path(".")).process(ROW, ctx).row
    assert swap["name"] == "DE" and swap["country"] == "Alice"
    missing = Rename({"fields": {"nope": "x"}}, base_dir=Path(".")).process(ROW, ctx)
    assert missing.error is not None and missing.error.code == "missing_field"
    assert "'nope'" in missing.error.reason
    clash = Rename({"fields": {"name": "country"}}, base_dir=Path(".")).process(ROW, ctx)
    assert clash.error is not None and clash.error.code == "field_collision"


# --- filter -------------------------------------------------------------------------------------
def test_filter_keeps_true_drops_false_and_fails_on_non_boolean(ctx: TransformContext) -> None:
    flt = Filter({"when": "amount > 1000 and country == 'DE'"}, base_dir=Path("."))
    kept = flt.process(ROW, ctx)
    assert kept.row == ROW and kept.row is not ROW
    dropped = flt.process({**ROW, "country": "FR"}, ctx)
    assert dropped.row is None
    assert dropped.dropped == "filter: \"amount > 1000 and country == 'DE'\" is false"
    wrong = Filter({"when": "note"}, base_dir=Path(".")).process(ROW, ctx)
    assert wrong.error is not None and wrong.error.code == "expression_error"
    assert "must be true or false, got null" in wrong.error.reason
    missing = flt.process({"amount": 5000}, ctx)
    assert missing.error is not None and "missing field 'country'" in missing.error.reason


# --- lookup -------------------------------------------------------------------------------------
def _write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8"))
    return path


@pytest.fixture
def countries(tmp_path: Path) -> Path:
    return _write(tmp_path / "countries.csv",
                  "code,label,region,iso\nDE,Germany,EU,276\nFR,France,EU,250\n"
                  "US,\"United States, of America\",NA,840\n")


def test_lookup_enriches_from_csv_relative_to_base_dir(tmp_path: Path, countries: Path,
                                                       ctx: TransformContext) -> None:
    lk = Lookup({"path": "countries.csv", "key": "country", "lookup_key": "code",
                 "fields": ["label", "region"]}, base_dir=tmp_path)
    before = copy.deepcopy(ROW)
    assert lk.process(ROW, ctx).row == {**ROW, "label": "Germany", "region": "EU"}
    assert ROW == before
    us = lk.process({**ROW, "country": "US"}, ctx).row
    assert us["label"] == "United States, of America"
    renamed = Lookup({"path": str(countries), "key": "country", "lookup_key": "code",
                      "fields": {"label": "country_name"}}, base_dir=Path("/"))
    assert renamed.process(ROW, ctx).row == {**ROW, "country_name": "Germany"}
    described = lk.describe()
    assert described["table"]["sha256"] == hashlib.sha256(countries.read_bytes()).hexdigest()
    assert described["table"]["rows"] == 3 and described["plugin"] == "lookup"


def test_lookup_matches_integer_keys_to_text_and_jsonl(tmp_path: Path, ctx: TransformContext) -> None:
    _write(tmp_path / "iso.csv", "iso,code\n276,DE\n250,FR\n")
    by_number = Lookup({"path": "iso.csv", "key": "iso", "fields": ["code"]}, base_dir=tmp_path)
    assert by_number.process({"iso": 276}, ctx).row == {"iso": 276, "code": "DE"}
    assert by_number.process({"iso": "250"}, ctx).row == {"iso": "250", "code": "FR"}
    _write(tmp_path / "people.jsonl", '{"pid": 1, "name": "Ann", "age": 31}\n\n'
                                      '{"pid": 2, "name": "Bob"}\n')
    people = Lookup({"path": "people.jsonl", "key": "pid", "fields": ["name", "age"]},
                    base_dir=tmp_path)
    assert people.process({"pid": 1}, ctx).row == {"pid": 1, "name": "Ann", "age": 31}
    assert people.process({"pid": "2"}, ctx).row == {"pid": "2", "name": "Bob", "age": None}


def test_lookup_on_missing_policies(tmp_path: Path, countries: Path, ctx: TransformContext) -> None:
    base = {"path": "countries.csv", "key": "country", "lookup_key": "code", "fields": ["label"]}
    row = {**ROW, "country": "XX"}
    failed = Lookup(base, base_dir=tmp_path).process(row, ctx)
    assert failed.error is not None and failed.error.code == "lookup_missing"
    assert "country='XX'" in failed.error.reason and "countries.csv" in failed.error.reason
    dropped = Lookup({**base, "on_missing": "drop"}, base_dir=tmp_path).process(row, ctx)
    assert dropped.dropped is not None and "country='XX'" in dropped.dropped
    nulled = Lookup({**base, "on_missing": "null"}, base_dir=tmp_path).process(row, ctx)
    assert nulled.row == {**row, "label": None}
    no_key = Lookup(base, base_dir=tmp_path).process({"amount": 1}, ctx)
    assert no_key.error is not None and no_key.error.code == "missing_field"
    null_key = Lookup({**base, "on_missing": "null"}, base_dir=tmp_path).process({"country": None}, ctx)
    assert null_key.row == {"country": None, "label": None}


@pytest.mark.parametrize(("name", "text", "options", "message"), [
    ("big.csv", "k,v\n" + "".join(f"{i},{i}\n" for i in range(6)), {"max_rows": 5},
     "big.csv:7: more than max_rows=5 rows"),
    ("dup.csv", "k,v\n1,a\n2,b\n1,c\n", {}, "dup.csv:4: duplicate key '1' (first on line 2)"),
    ("cols.csv", "k,w\n1,a\n", {}, "cols.csv:1: no column 'v' in the header"),
    ("ragged.csv", "k,v\n1,a,extra\n", {}, "ragged.csv:2: 3 values for 2 columns"),
    ("empty.csv", "", {}, "empty.csv: the file is empty"),
    ("bad.jsonl", '{"k": 1, "v": 2}\n{"k": \n', {}, "bad.jsonl:2: invalid JSON"),
    ("list.jsonl", "[1, 2]\n", {}, "list.jsonl:1: a line must hold a JSON object"),
    ("nokey.jsonl", '{"v": 1}\n', {}, "nokey.jsonl:1: no key column 'k'"),
    ("nullkey.jsonl", '{"k": null, "v": 1}\n', {}, "nullkey.jsonl:1: key 'k' must be text or a number"),
])
def test_lookup_table_errors_name_file_and_line(tmp_path: Path, ctx: TransformContext, name: str,
                                                text: str, options: dict[str, Any], message: str) -> None:
    _write(tmp_path / name, text)
    lk = Lookup({"path": name, "key": "k", "fields": ["v"], **options}, base_dir=tmp_path)
    with pytest.raises(LookupTableError) as info:
        lk.process({"k": "1"}, ctx)
    assert message in info.value.message
    assert info.value.code.code == "GP-TRANSFORM-002"


def test_lookup_refuses_non_utf8(tmp_path: Path, ctx: TransformContext) -> None:
    (tmp_path / "latin.csv").write_bytes("k,v\n1,caf\xe9\n".encode("latin-1"))
    with pytest.raises(LookupTableError, match=r"latin.csv:2: not UTF-8"):
        Lookup({"path": "latin.csv", "key": "k", "fields": ["v"]}, base_dir=tmp_path).load()


@pytest.mark.parametrize(("options", "message"), [
    ({"key": "k", "fields": ["v"]}, "lookup: options.path: field required"),
    ({"path": "t.csv", "fields": ["v"]}, "lookup: options.key: field required"),
    ({"path": "t.csv", "key": "k", "fields": []}, "lookup: options.fields: "),
    ({"path": "t.csv", "key": "k", "fields": ["v"], "on_missing": "skip"},
     "lookup: options.on_missing: input should be 'fail', 'null' or 'drop'"),
    ({"path": "t.csv", "key": "k", "fields": ["v"], "max_rows": 0},
     "lookup: options.max_rows: input should be greater than 0"),
    ({"path": "missing.csv", "key": "k", "fields": ["v"]}, "lookup: options.path: no such file"),
    ({"path": "t.txt", "key": "k", "fields": ["v"]}, "lookup: options.path: 't.txt' is neither"),
])
def test_lookup_option_errors(tmp_path: Path, options: dict[str, Any], message: str) -> None:
    _write(tmp_path / "t.csv", "k,v\n1,2\n")
    _write(tmp_path / "t.txt", "k,v\n1,2\n")
    assert _options_error(Lookup, options, tmp_path).message.startswith(message)


# --- call: local --------------------------------------------------------------------------------
LOCAL = {"provider": "local", "input": ["name", "amount"], "labels": ["low", "mid", "high"],
         "output": {"label": "risk", "score": "risk_score"}}


def _expected_local(row: dict[str, Any], model: str = "local-classifier-v1",
                    labels: tuple[str, ...] = ("low", "mid", "high")) -> tuple[dict[str, Any], str]:
    """The documented classifier, computed here from the reference RFC 8785 package."""
    request = {"provider": "local", "model": model,
               "inputs": {"name": row["name"], "amount": row["amount"]}}
    digest = hashlib.sha256(rfc8785.dumps(request)).hexdigest()
    score = round(int(digest[:13], 16) / 16**13, 6)
    return {"label": labels[min(int(score * 3), 2)], "score": score}, digest


def test_call_local_is_the_documented_hash_classifier_and_records_the_call(ctx: TransformContext) -> None:
    call = Call(LOCAL, base_dir=Path("."))
    before = copy.deepcopy(ROW)
    result = call.process(ROW, ctx)
    response, _ = _expected_local(ROW)
    assert result.row == {**ROW, "risk": response["label"], "risk_score": response["score"]}
    assert ROW == before
    [record] = ctx.calls
    assert record.call_type == "local_classifier" and record.error is None
    assert record.request == {"provider": "local", "model": "local-classifier-v1",
                              "inputs": {"name": "Alice", "amount": 1500}}
    assert record.response == response
    labels = {call.process({**ROW, "amount": n}, ctx).row["risk"] for n in range(60)}
    assert labels == {"low", "mid", "high"}


def test_call_local_latency_advances_a_manual_clock_and_never_sleeps() -> None:
    clock = ManualClock()
    start = clock.now()
    ctx = TransformContext(clock=clock, run_id="r", node_id="n", token_id="t")
    call = Call({**LOCAL, "latency_ms": 1500}, base_dir=Path("."))
    call.process(ROW, ctx)
    call.process(ROW, ctx)
    assert (clock.now() - start).total_seconds() == pytest.approx(3.0)
    assert [c.latency_ms for c in ctx.calls] == [1500, 1500]
    real = TransformContext(clock=SystemClock(), run_id="r", node_id="n", token_id="t")
    started = time.perf_counter()
    slow = Call({**LOCAL, "latency_ms": 600_000}, base_dir=Path("."))
    assert slow.process(ROW, real).row is not None
    assert time.perf_counter() - started < 5  # ten simulated minutes, no waiting


def test_call_local_fail_every_n_depends_only_on_the_input(ctx: TransformContext) -> None:
    rows = [{**ROW, "amount": n} for n in range(300)]
    call = Call({**LOCAL, "fail_every_n": 3}, base_dir=Path("."))
    first = [call.process(r, ctx) for r in rows]
    failed = {r["amount"] for r, res in zip(rows, first) if res.error is not None}
    expected = {r["amount"] for r in rows if int(_expected_local(r)[1][13:21], 16) % 3 == 0}
    assert failed == expected and 60 < len(failed) < 140
    again = Call({**LOCAL, "fail_every_n": 3}, base_dir=Path("."))
    reversed_failed = {r["amount"] for r in reversed(rows) if again.process(r, ctx).error is not None}
    assert reversed_failed == failed
    bad = next(res for res in first if res.error is not None)
    assert bad.error.code == "call_failed" and "fail_every_n=3" in bad.error.reason
    failed_records = [c for c in ctx.calls if c.error is not None]
    assert failed_records and all(c.response is None and c.error["code"] == "simulated_failure"
                                  for c in failed_records)
    always = Call({**LOCAL, "fail_every_n": 1}, base_dir=Path(".")).process(ROW, ctx)
    assert always.error is not None


_SUBPROCESS = """
import json, sys
from pathlib import Path
from governance_pipeline.contracts.clock import ManualClock
from governance_pipeline.engine.plugin_api import TransformContext
from governance_pipeline.plugins.transforms.call import Call
options, rows = json.loads(sys.argv[1]), json.loads(sys.argv[2])
call = Call(options, base_dir=Path("."))
ctx = TransformContext(clock=ManualClock(), run_id="r", node_id="n", token_id="t")
out = []
for row in rows:
    res = call.process(row, ctx)
    out.append({"row": res.row, "error": res.error and res.error.code})
print(json.dumps({"out": out, "calls": [[c.request, c.response, c.error] for c in ctx.calls]}))
"""


def test_call_local_is_deterministic_across_processes(ctx: TransformContext) -> None:
    options = {**LOCAL, "fail_every_n": 4}
    rows = [{**ROW, "name": f"user-{i}", "amount": i * 37} for i in range(40)]
    runs = []
    for seed in ("1", "987654"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run([sys.executable, "-c", _SUBPROCESS, json.dumps(options),
                               json.dumps(rows)], capture_output=True, text=True, env=env,
                              check=True, timeout=120)
        runs.append(json.loads(done.stdout))
    assert runs[0] == runs[1]
    call = Call(options, base_dir=Path("."))
    here = [call.process(r, ctx) for r in rows]
    assert [{"row": r.row, "error": r.error and r.error.code} for r in here] == runs[0]["out"]
    assert any(r.error for r in here) and any(r.row for r in here)


@pytest.mark.parametrize(("options", "message"), [
    ({}, "call: options.provider: field required"),
    ({"provider": "grpc"}, "call: options.provider: input should be 'local' or 'http'"),
    ({"provider": "local", "latency_ms": -1}, "call: options.latency_ms: input should be greater than or equal to 0"),
    ({"provider": "local", "fail_every_n": 0}, "call: options.fail_every_n: input should be greater than or equal to 1"),
    ({"provider": "local", "output": {"answer": "x"}}, "call: options.output.answer: the local provider returns only label and score"),
    ({"provider": "local", "url": "http://x"}, "call: options.url: unknown option"),
    ({"provider": "http"}, "call: options.url: field required"),
    ({"provider": "http", "url": "file:///etc/passwd"}, "call: options.url: must be an http:// or https:// URL"),
    ({"provider": "http", "url": "http:///path"}, "call: options.url: must name a host"),
    ({"provider": "http", "url": "http://exa mple.com/"}, "call: options.url: must name a host and contain no spaces"),
    ({"provider": "http", "url": "http://x", "timeout_s": 0}, "call: options.timeout_s: input should be greater than 0"),
])
def test_call_option_errors(options: dict[str, Any], message: str) -> None:
    assert _options_error(Call, options).message.lower().startswith(message.lower())


def test_call_missing_input_field_fails_without_calling(ctx: TransformContext) -> None:
    result = Call(LOCAL, base_dir=Path(".")).process({"name": "x"}, ctx)
    assert result.error is not None and result.error.code == "missing_field"
    assert ctx.calls == []


# --- call: http against a live server -----------------------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    seen: list[tuple[str, dict[str, str], Any]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802 - the http.server protocol
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Handler.seen.append((self.path, dict(self.headers), body))
        if self.path == "/classify":
            answer = {"label": body["name"].upper(), "score": body["amount"] * 2}
            self._send(200, json.dumps(answer).encode(), {"Content-Type": "application/json"})
        elif self.path == "/fail":
            self._send(500, b'{"error": "boom"}')
        elif self.path == "/text":
            self._send(200, b"plain text")
        elif self.path == "/array":
            self._send(200, b"[1, 2]")
        elif self.path == "/nolabel":
            self._send(200, b'{"score": 1}')
        elif self.path == "/big":
            self._send(200, json.dumps({"label": "x" * 5000}).encode())
        elif self.path == "/redirect":
            self._send(302, b"", {"Location": "/classify"})


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    _Handler.seen = []
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def _http(url: str, **extra: Any) -> Call:
    return Call({"provider": "http", "url": url, "input": ["name", "amount"], "timeout_s": 5,
                 **extra}, base_dir=Path("."))


def test_call_http_posts_json_and_records_the_response(server: str, ctx: TransformContext) -> None:
    call = _http(f"{server}/classify", headers={"X-Tenant": "acme"},
                 output={"label": "who", "score": "points"})
    result = call.process(ROW, ctx)
    assert result.row == {**ROW, "who": "ALICE", "points": 3000}
    [(path, headers, body)] = _Handler.seen
    assert path == "/classify" and body == {"name": "Alice", "amount": 1500}
    assert headers["Content-Type"] == "application/json" and headers["X-Tenant"] == "acme"
    [record] = ctx.calls
    assert record.call_type == "http" and record.error is None
    assert record.request == {"method": "POST", "url": f"{server}/classify",
                              "body": {"name": "Alice", "amount": 1500}}
    assert record.response == {"status": 200, "body": {"label": "ALICE", "score": 3000}}
    assert record.latency_ms > 0


@pytest.mark.parametrize(("path", "code", "status", "error_code"), [
    ("/fail", "call_failed", 500, "http_status"),
    ("/redirect", "call_failed", 302, "http_status"),
    ("/text", "call_bad_response", 200, "bad_response"),
    ("/array", "call_bad_response", 200, "bad_response"),
    ("/big", "call_failed", 200, "response_too_large"),
])
def test_call_http_failures_are_recorded_as_failed_calls(server: str, ctx: TransformContext,
                                                         path: str, code: str, status: int,
                                                         error_code: str) -> None:
    result = _http(f"{server}{path}", max_response_bytes=1000).process(ROW, ctx)
    assert result.row is None and result.error is not None and result.error.code == code
    [record] = ctx.calls
    assert record.error is not None and record.error["code"] == error_code
    assert record.error["status"] == status
    if path == "/fail":
        assert record.response == {"status": 500, "body": {"error": "boom"}}
        assert "HTTP 500" in result.error.reason


def test_call_http_missing_output_key_fails_the_row_after_a_successful_call(
        server: str, ctx: TransformContext) -> None:
    result = _http(f"{server}/nolabel").process(ROW, ctx)
    assert result.error is not None and result.error.code == "call_bad_response"
    assert "'label'" in result.error.reason
    assert ctx.calls[0].error is None and ctx.calls[0].response == {"status": 200, "body": {"score": 1}}


def test_call_http_unreachable_and_timeout_are_recorded(ctx: TransformContext) -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    closed_port = probe.getsockname()[1]
    probe.close()
    refused = _http(f"http://127.0.0.1:{closed_port}/x").process(ROW, ctx)
    assert refused.error is not None and refused.error.code == "call_failed"
    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        timed_out = _http(f"http://127.0.0.1:{port}/x", timeout_s=0.3).process(ROW, ctx)
    assert timed_out.error is not None and timed_out.error.code == "call_failed"
    assert [c.error["code"] for c in ctx.calls] == ["unreachable", "unreachable"]
    assert "timed out" in ctx.calls[1].error["message"]
    assert all(c.response is None for c in ctx.calls)


# --- summarize ----------------------------------------------------------------------------------
BATCH = [
    {"region": "EU", "kind": "a", "amount": 10, "rate": 0.5},
    {"region": "NA", "kind": "a", "amount": 3, "rate": None},
    {"region": "EU", "kind": "b", "amount": 7, "rate": 0.25},
    {"region": "EU", "kind": "a", "amount": 5},
    {"region": "NA", "kind": "a", "amount": 1, "rate": 1.5},
]


def test_summarize_groups_in_first_seen_order() -> None:
    fn = Summarize({"group_by": ["region", "kind"],
                    "aggregates": {"n": "count", "total": "sum:amount", "low": "min:amount",
                                   "high": "max:amount", "avg_rate": "mean:rate",
                                   "rates": "count:rate"}}, base_dir=Path("."))
    before = copy.deepcopy(BATCH)
    out = fn.process_batch(BATCH)
    assert BATCH == before
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in BATCH:
        groups.setdefault((row["region"], row["kind"]), []).append(row)
    expected = []
    for (region, kind), rows in groups.items():
        amounts = [r["amount"] for r in rows]
        rates = [r["rate"] for r in rows if r.get("rate") is not None]
        expected.append({"region": region, "kind": kind, "n": len(rows), "total": sum(amounts),
                         "low": min(amounts), "high": max(amounts),
                         "avg_rate": sum(rates) / len(rates) if rates else None,
                         "rates": len(rates)})
    assert out == expected
    assert [(r["region"], r["kind"]) for r in out] == [("EU", "a"), ("NA", "a"), ("EU", "b")]
    assert type(out[0]["total"]) is int
    assert fn.process_batch(list(BATCH)) == out


def test_summarize_without_groups_and_types_of_keys() -> None:
    fn = Summarize({"aggregates": {"n": "count", "total": "sum:amount"}}, base_dir=Path("."))
    assert fn.process_batch(BATCH) == [{"n": 5, "total": sum(r["amount"] for r in BATCH)}]
    assert fn.process_batch([]) == []
    by_value = Summarize({"group_by": ["k"], "aggregates": {"n": "count"}}, base_dir=Path("."))
    out = by_value.process_batch([{"k": 1}, {"k": True}, {"k": 1.0}, {"k": 1}, {}, {"k": None}])
    assert out == [{"k": 1, "n": 2}, {"k": True, "n": 1}, {"k": 1.0, "n": 1}, {"k": None, "n": 2}]
    assert [type(r["k"]) for r in out] == [int, bool, float, type(None)]


def test_summarize_refuses_values_it_cannot_aggregate() -> None:
    fn = Summarize({"aggregates": {"total": "sum:amount"}}, base_dir=Path("."))
    with pytest.raises(BatchFunctionError, match="sum:amount needs numbers, got str"):
        fn.process_batch([{"amount": 1}, {"amount": "2"}])
    mixed = Summarize({"aggregates": {"low": "min:v"}}, base_dir=Path("."))
    with pytest.raises(BatchFunctionError, match="min:v cannot compare int and str"):
        mixed.process_batch([{"v": 1}, {"v": "a"}])
    assert mixed.process_batch([{"v": None}]) == [{"low": None}]


@pytest.mark.parametrize(("options", "message"), [
    ({}, "summarize: options.aggregates: field required"),
    ({"aggregates": {"t": "median:x"}}, "summarize: options.aggregates.t: 'median:x': unknown aggregate"),
    ({"aggregates": {"t": "sum"}}, "summarize: options.aggregates.t: 'sum': sum needs a field"),
    ({"group_by": "region", "aggregates": {"n": "count"}}, "summarize: options.group_by: input should be a valid list"),
    ({"group_by": ["n"], "aggregates": {"n": "count"}}, "summarize: options.aggregates.n: an aggregate cannot have the name"),
])
def test_summarize_option_errors(options: dict[str, Any], message: str) -> None:
    assert _options_error(Summarize, options).message.lower().startswith(message.lower())
