"""Sinks: durable idempotent parts, atomic promotion, crash safety, row refusal, I/O failures.

Every sink kind runs the same protocol tests on real files, a real SQLite file and the real
PostgreSQL server; the format-specific tests follow.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import NullPool

from governance_pipeline.contracts.errors import GovernanceError
from governance_pipeline.contracts.hashing import canonical_json
from governance_pipeline.engine.plugin_api import Sink
from governance_pipeline.landscape.database import normalize_url
from governance_pipeline_tests.conftest import PG_ENV, drop_pg_database, fresh_pg_url

KINDS = ["csv", "jsonl", "parquet", "sql-sqlite", "sql-postgres"]
FILE_KINDS = ["csv", "jsonl", "parquet"]


def make_row(i: int, tag: str = "") -> dict[str, Any]:
    note = None if i % 3 else f'n,{i} "q"{tag}' + ("\nsecond line" if i % 6 == 0 else "")
    return {"id": i, "name": f"name-{i}{tag}", "score": i * 0.25 + 0.1, "active": i % 2 == 0,
            "note": note}


def pairs(start: int, stop: int, tag: str = "") -> list[tuple[str, dict[str, Any]]]:
    return [(f"tok-{i:06d}", make_row(i, tag)) for i in range(start, stop)]


def csv_text(value: Any) -> str:
    """The CSV rendering the sink promises: None → empty, booleans → true/false, floats repr."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


@dataclass
class Harness:
    kind: str
    base_dir: Path
    url: str | None = None
    sinks: list[Sink] = field(default_factory=list)

    @property
    def plugin(self) -> str:
        return self.kind.split("-")[0]

    @property
    def options(self) -> dict[str, Any]:
        if self.plugin == "sql":
            return {"url": self.url, "table": "results"}
        return {"path": f"out/result.{self.plugin}"}

    @property
    def output(self) -> Path:
        return self.base_dir / "out" / f"result.{self.plugin}"

    @property
    def parts_dir(self) -> Path:
        return self.output.with_name(self.output.name + ".parts")

    def make(self, **options: Any) -> Sink:
        (entry_point,) = entry_points(group="governance_pipeline.sinks", name=self.plugin)
        cls = entry_point.load()
        sink = cls({**self.options, **options}, base_dir=self.base_dir, sink_name="out")
        self.sinks.append(sink)
        return sink

    def sql(self, statement: str, **params: Any) -> list[Any]:
        url = normalize_url(self.url)
        if url.get_backend_name() == "sqlite":  # the sink resolves it against base_dir
            url = url.set(database=str(self.base_dir / str(url.database)))
            Path(str(url.database)).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, poolclass=NullPool)
        try:
            with engine.begin() as conn:
                result = conn.execute(text(statement), params)
                return [tuple(r) for r in result] if result.returns_rows else []
        finally:
            engine.dispose()

    def read_final(self) -> list[Any]:
        """The final output as comparable records (CSV: rows of text, others: dicts)."""
        if self.plugin == "csv":
            with open(self.output, encoding="utf-8", newline="") as fh:
                return list(csv.reader(fh))
        if self.plugin == "jsonl":
            return [json.loads(line) for line in self.output.read_text("utf-8").splitlines()]
        if self.plugin == "parquet":
            return pq.read_table(self.output).to_pylist()
        names = list(make_row(0))
        rows = self.sql(f"SELECT {', '.join(names)} FROM results "
                        "WHERE _gp_part IS NOT NULL ORDER BY _gp_token_id")
        return [dict(zip(names, r, strict=True)) for r in rows]

    def read_part(self, part_key: str) -> list[Any]:
        if self.plugin == "sql":
            names = list(make_row(0))
            rows = self.sql(f"SELECT {', '.join(names)} FROM results WHERE _gp_part = :p "
                            "ORDER BY _gp_token_id", p=part_key)
            return [dict(zip(names, r, strict=True)) for r in rows]
        path = self.parts_dir / f"{part_key}.{self.plugin}"
        if self.plugin == "csv":
            with open(path, encoding="utf-8", newline="") as fh:
                return list(csv.reader(fh))
        if self.plugin == "jsonl":
            return [json.loads(line) for line in path.read_text("utf-8").splitlines()]
        return pq.read_table(path).to_pylist()

    def expected(self, rows: list[tuple[str, dict[str, Any]]], *, header: bool = True) -> list[Any]:
        if self.plugin != "csv":
            return [row for _, row in rows]
        body = [[csv_text(v) for v in row.values()] for _, row in rows]
        return [list(make_row(0)), *body] if header else body

    def expected_hash(self, rows: list[tuple[str, dict[str, Any]]]) -> str:
        if self.plugin != "sql":
            return hashlib.sha256(self.output.read_bytes()).hexdigest()
        lines = b"".join(canonical_json(row) + b"\n" for _, row in sorted(rows))
        return hashlib.sha256(lines).hexdigest()

    def leftovers(self) -> list[str]:
        """Hidden temporaries or trash anywhere under the output directory."""
        root = self.base_dir / "out"
        return sorted(str(p.relative_to(root)) for p in root.rglob(".*")) if root.exists() else []


@pytest.fixture(params=KINDS)
def harness(request: pytest.FixtureRequest, tmp_path: Path,
            pg_template: str | None) -> Iterator[Harness]:
    kind = request.param
    if kind == "sql-postgres":
        if pg_template is None:
            pytest.skip(f"PostgreSQL not configured: set {PG_ENV}")
        h = Harness(kind, tmp_path, url=fresh_pg_url(pg_template).replace(
            "postgresql+psycopg://", "postgresql://"))  # the plain scheme must work too
    elif kind == "sql-sqlite":
        h = Harness(kind, tmp_path, url="sqlite:///out/sink.db")  # relative: against base_dir
    else:
        h = Harness(kind, tmp_path)
    try:
        yield h
    finally:
        for sink in h.sinks:
            close = getattr(sink, "close", None)
            if close is not None:
                close()
        if kind == "sql-postgres" and pg_template is not None and h.url:
            drop_pg_database(pg_template, h.url)


def vet(sink: Sink, rows: list[tuple[str, dict[str, Any]]]) -> None:
    for _, row in rows:
        assert sink.reject_reason(row) is None, row


# --- the protocol, for every sink -----------------------------------------------------------------
def test_parts_written_out_of_order_finalize_in_part_order(harness: Harness) -> None:
    sink = harness.make()
    p0, p1, p2 = pairs(0, 7), pairs(7, 15), pairs(15, 22)
    vet(sink, p0 + p1 + p2)
    results = [sink.write_part("chunk-000002", p2), sink.write_part("chunk-000000", p0),
               sink.write_part("chunk-000003", []), sink.write_part("chunk-000001", p1)]
    assert [r.rows for r in results] == [7, 7, 0, 8]
    artifact = sink.finalize(["chunk-000000", "chunk-000001", "chunk-000002", "chunk-000003"])
    assert harness.read_final() == harness.expected(p0 + p1 + p2)
    assert artifact.row_count == 22
    assert artifact.content_hash == harness.expected_hash(p0 + p1 + p2)
    if harness.plugin == "sql":
        assert artifact.path_or_uri.endswith("#results") and ":gp@" not in artifact.path_or_uri
    else:
        assert artifact.path_or_uri == str(harness.output)
        assert artifact.size_bytes == harness.output.stat().st_size
        assert not harness.parts_dir.exists() and harness.leftovers() == []


def test_rewriting_a_part_replaces_it(harness: Harness) -> None:
    sink = harness.make()
    first, old, new = pairs(0, 5), pairs(5, 15), pairs(10, 13, tag="-v2")
    vet(sink, first + old + new)
    sink.write_part("chunk-000000", first)
    sink.write_part("chunk-000001", old)
    sink.write_part("chunk-000001", new)  # the resumed attempt: fewer rows, other values
    assert harness.read_part("chunk-000001") == harness.expected(new, header=False)
    artifact = sink.finalize(["chunk-000000", "chunk-000001"])
    assert harness.read_final() == harness.expected(first + new)
    assert artifact.row_count == 8


def test_resume_with_different_chunking_ignores_and_cleans_stale_parts(harness: Harness) -> None:
    sink = harness.make()
    everything = pairs(0, 10)
    vet(sink, everything)
    sink.write_part("chunk-000000", everything[:6])
    sink.write_part("chunk-000001", everything[6:])
    sink.write_part("chunk-000002", pairs(90, 95))  # a chunk that never was checkpointed
    resumed = harness.make()  # a new process: chunks of three rows this time
    keys = []
    for n, start in enumerate(range(0, 10, 3)):
        keys.append(f"chunk-{n:06d}")
        resumed.write_part(keys[-1], everything[start:start + 3])
    artifact = resumed.finalize(keys)
    assert harness.read_final() == harness.expected(everything)
    assert artifact.row_count == 10
    if harness.plugin == "sql":
        assert harness.sql("SELECT count(*) FROM results")[0][0] == 10


def test_finalize_again_gives_the_same_result(harness: Harness) -> None:
    sink = harness.make()
    rows = pairs(0, 12)
    vet(sink, rows)
    sink.write_part("chunk-000000", rows[:6])
    sink.write_part("chunk-000001", rows[6:])
    keys = ["chunk-000000", "chunk-000001"]
    if harness.plugin == "sql":
        first = sink.finalize(keys)
        assert harness.make().finalize(keys) == first == sink.finalize(keys)
        return
    saved = harness.base_dir / "saved-parts"
    shutil.copytree(harness.parts_dir, saved)
    first = sink.finalize(keys)
    content = harness.output.read_bytes()
    # Crash after the parts directory vanished (trash left) and before finalize returned.
    (harness.base_dir / "out" / f".{harness.parts_dir.name}.trash-dead").mkdir()
    assert harness.make().finalize(keys) == first
    # Crash after promotion but before the parts were removed; a stale final temporary too.
    shutil.copytree(saved, harness.parts_dir)
    (harness.base_dir / "out" / f".{harness.output.name}.tmp-1-dead").write_bytes(b"half")
    assert harness.make().finalize(keys) == first
    assert harness.output.read_bytes() == content
    assert not harness.parts_dir.exists() and harness.leftovers() == []


def test_finalize_of_an_empty_run(harness: Harness) -> None:
    artifact = harness.make().finalize([])
    assert artifact.row_count == 0
    if harness.plugin == "sql":  # nothing was written, so no table was created either
        assert artifact.content_hash == hashlib.sha256(b"").hexdigest()
        return
    assert harness.read_final() == []
    assert artifact.content_hash == hashlib.sha256(harness.output.read_bytes()).hexdigest()


@pytest.mark.parametrize("harness", FILE_KINDS, indirect=True)
def test_a_missing_part_is_reported_not_skipped(harness: Harness) -> None:
    sink = harness.make()
    rows = pairs(0, 3)
    vet(sink, rows)
    sink.write_part("chunk-000000", rows)
    with pytest.raises(GovernanceError) as info:
        sink.finalize(["chunk-000000", "chunk-000001"])
    assert info.value.code.code == "GP-SINK-003" and "chunk-000001" in info.value.message
    assert not harness.output.exists()


CHILD = r"""
import json, sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path

plugin, options, base_dir, part_key, total, block_after = json.loads(sys.argv[1])


class BlockingRows(Sequence):
    '''Rows for a big part; after ``block_after`` of them it says so and never continues.'''

    def __len__(self):
        return total

    def __getitem__(self, i):
        return self._pair(i)

    @staticmethod
    def _pair(i):
        note = None if i % 3 else "killed-" + str(i)
        return ("tok-k-%08d" % i, {"id": i, "name": "killed", "score": i * 0.5 + 0.1,
                                   "active": True, "note": note})

    def __iter__(self):
        for i in range(total):
            if i == block_after:
                print("mid-write", flush=True)
                sys.stdin.read()
            yield self._pair(i)


(entry_point,) = entry_points(group="governance_pipeline.sinks", name=plugin)
cls = entry_point.load()
sink = cls(options, base_dir=Path(base_dir), sink_name="out")
sink.write_part(part_key, BlockingRows())
print("finished", flush=True)
"""


def test_sigkill_during_a_part_write_leaves_the_previous_part_intact(harness: Harness) -> None:
    sink = harness.make()
    first, old, new = pairs(0, 10), pairs(10, 20), pairs(10, 14, tag="-resumed")
    vet(sink, first + old + new)
    sink.write_part("chunk-000000", first)
    sink.write_part("chunk-000001", old)
    args = [harness.plugin, harness.options, str(harness.base_dir), "chunk-000001", 60_000, 25_000]
    child = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(args)], cwd="/",
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        line = child.stdout.readline() if child.stdout else ""
        assert line == "mid-write\n", child.stderr.read() if child.stderr else line
        if harness.plugin != "sql":
            temps = list(harness.parts_dir.glob(".chunk-000001.*.tmp-*"))
            assert len(temps) == 1 and temps[0].stat().st_size > 0  # really mid-write
        elif harness.kind == "sql-sqlite":
            assert (harness.base_dir / "out" / "sink.db-journal").exists()
        else:
            assert harness.sql("SELECT count(*) FROM pg_stat_activity "
                               "WHERE state = 'idle in transaction' "
                               "AND datname = current_database()")[0][0] == 1
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.communicate()
    assert child.returncode == -signal.SIGKILL
    assert harness.read_part("chunk-000001") == harness.expected(old, header=False)
    if harness.plugin != "sql":
        visible = {p.name for p in harness.parts_dir.iterdir() if not p.name.startswith(".")}
        assert visible - {"_schema.json", "_schema.arrow"} == \
            {f"chunk-000000.{harness.plugin}", f"chunk-000001.{harness.plugin}"}
    sink.write_part("chunk-000001", new)  # the engine re-processes the uncheckpointed chunk
    artifact = sink.finalize(["chunk-000000", "chunk-000001"])
    assert harness.read_final() == harness.expected(first + new)
    assert artifact.row_count == 14
    if harness.plugin != "sql":
        assert harness.leftovers() == []
    else:
        assert harness.sql("SELECT count(*) FROM results")[0][0] == 14


def test_invalid_part_keys_are_refused(harness: Harness) -> None:
    sink = harness.make()
    for bad in ("../escape", "_schema", ".hidden", "a/b", ""):
        with pytest.raises(ValueError, match="invalid part key"):
            sink.write_part(bad, [])


# --- I/O failures raise clear errors ------------------------------------------------------------
@pytest.mark.parametrize("harness", FILE_KINDS, indirect=True)
def test_a_directory_in_place_of_a_part_fails_the_write(harness: Harness) -> None:
    sink = harness.make()
    rows = pairs(0, 4)
    vet(sink, rows)
    sink.write_part("chunk-000000", rows)
    blocker = harness.parts_dir / f"chunk-000001.{harness.plugin}"
    blocker.mkdir()
    with pytest.raises(GovernanceError) as info:
        sink.write_part("chunk-000001", rows)
    assert info.value.code.code == "GP-SINK-002" and str(blocker) in info.value.message
    assert harness.read_part("chunk-000000") == harness.expected(rows, header=False)
    assert harness.leftovers() == []  # the failed attempt's temporary is gone


@pytest.mark.parametrize("harness", FILE_KINDS, indirect=True)
def test_an_output_directory_that_is_a_file_fails_the_write(harness: Harness) -> None:
    (harness.base_dir / "out").write_text("not a directory")
    sink = harness.make()
    with pytest.raises(GovernanceError) as info:
        sink.write_part("chunk-000000", [])
    assert info.value.code.code == "GP-SINK-002" and "out" in info.value.message


@pytest.mark.parametrize("harness", FILE_KINDS, indirect=True)
def test_a_failed_promotion_keeps_the_parts_for_a_retry(harness: Harness) -> None:
    sink = harness.make()
    rows = pairs(0, 5)
    vet(sink, rows)
    sink.write_part("chunk-000000", rows)
    harness.output.mkdir()
    with pytest.raises(GovernanceError) as info:
        sink.finalize(["chunk-000000"])
    assert info.value.code.code == "GP-SINK-002" and str(harness.output) in info.value.message
    assert harness.read_part("chunk-000000") == harness.expected(rows, header=False)
    harness.output.rmdir()
    assert sink.finalize(["chunk-000000"]).row_count == 5
    assert harness.read_final() == harness.expected(rows)


def test_an_unwritable_sqlite_location_fails_the_write(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file where a directory should be")
    cls = entry_points(group="governance_pipeline.sinks", name="sql")["sql"].load()
    sink = cls({"url": "sqlite:///blocker/sink.db", "table": "t"}, base_dir=tmp_path,
               sink_name="out")
    with pytest.raises(GovernanceError) as info:
        sink.write_part("chunk-000000", pairs(0, 2))
    assert info.value.code.code == "GP-SINK-002" and "blocker" in info.value.message


def test_an_unreachable_database_fails_the_write(tmp_path: Path) -> None:
    cls = entry_points(group="governance_pipeline.sinks", name="sql")["sql"].load()
    sink = cls({"url": "postgresql://gp:secret@127.0.0.1:1/nowhere", "table": "t"},
               base_dir=tmp_path, sink_name="out")
    with pytest.raises(GovernanceError) as info:
        sink.write_part("chunk-000000", pairs(0, 2))
    assert info.value.code.code == "GP-SINK-002"
    assert "127.0.0.1:1/nowhere#t" in info.value.message and "secret" not in info.value.message


def test_a_row_that_was_not_vetted_and_does_not_fit_is_refused_whole(tmp_path: Path) -> None:
    h = Harness("csv", tmp_path)
    sink = h.make(fields=list(make_row(0)))
    good = pairs(0, 3)
    sink.write_part("chunk-000000", good)
    with pytest.raises(GovernanceError) as info:
        sink.write_part("chunk-000000", [*pairs(3, 5), ("tok-bad", {"id": 1})])
    assert info.value.code.code == "GP-SINK-004" and "tok-bad" in info.value.message
    assert h.read_part("chunk-000000") == h.expected(good, header=False)


# --- options ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("plugin", "options", "expected"), [
    ("csv", {}, "options.path: Field required"),
    ("csv", {"path": "o.csv", "colour": "red"}, "options.colour: Extra inputs are not permitted"),
    ("csv", {"path": "o.csv", "fields": ["a", "a"]}, "options.fields: Value error, duplicate"),
    ("csv", {"path": "o.csv", "delimiter": ";;"}, "options.delimiter"),
    ("jsonl", {"path": ""}, "options.path"),
    ("parquet", {"path": "o.parquet", "compression": "zstd"}, "options.compression"),
    ("sql", {"url": "sqlite:///x.db"}, "options.table: Field required"),
    ("sql", {"url": "::not a url::", "table": "t"}, "options.url: Value error, not a SQLAlchemy"),
    ("sql", {"url": "sqlite:///x.db", "table": "t", "key_column": "_gp_part"}, "key_column"),
])
def test_invalid_options_name_the_field(tmp_path: Path, plugin: str, options: dict[str, Any],
                                         expected: str) -> None:
    cls = entry_points(group="governance_pipeline.sinks", name=plugin)[plugin].load()
    with pytest.raises(GovernanceError) as info:
        cls(options, base_dir=tmp_path, sink_name="out")
    assert info.value.code.code == "GP-SINK-001" and int(info.value.exit_code) == 2
    assert expected in info.value.message and "'out'" in info.value.message


# --- CSV ----------------------------------------------------------------------------------------
def test_csv_renders_values_deterministically_with_one_header(tmp_path: Path) -> None:
    from datetime import datetime
    from decimal import Decimal
    h = Harness("csv", tmp_path)
    sink = h.make(fields=["none", "yes", "no", "real", "big", "int", "text", "nested", "when",
                          "money"], delimiter=";")
    nested = {"b": [1, 2], "a": "x"}
    row = {"none": None, "yes": True, "no": False, "real": 0.1, "big": 1e20, "int": 7,
           "text": "a;b", "nested": nested, "when": datetime(2024, 5, 1, 12, 30),
           "money": Decimal("10.50")}
    assert sink.reject_reason(row) is None
    sink.write_part("chunk-000000", [("t1", row)])
    sink.write_part("chunk-000001", [("t2", row)])
    sink.finalize(["chunk-000000", "chunk-000001"])
    line = ";".join(["", "true", "false", repr(0.1), repr(1e20), "7", '"a;b"',
                     canonical_json(nested).decode().replace('"', '""').join('""'),
                     "2024-05-01T12:30:00", "10.50"])
    header = ";".join(["none", "yes", "no", "real", "big", "int", "text", "nested", "when",
                       "money"])
    assert h.output.read_text("utf-8") == f"{header}\n{line}\n{line}\n"


def test_csv_rejects_rows_whose_fields_differ_and_says_which(tmp_path: Path) -> None:
    sink = Harness("csv", tmp_path).make(fields=["a", "b", "c"])
    assert sink.reject_reason({"a": 1, "b": 2, "c": 3}) is None
    assert sink.reject_reason({"a": 1}) == "missing fields: b, c"
    assert sink.reject_reason({"a": 1, "b": 2, "c": 3, "d": 4, "e": 5}) == \
        "unexpected fields: d, e"
    assert sink.reject_reason({"a": 1, "b": 2, "x": 3}) == "missing fields: c; unexpected fields: x"
    assert "field b" in (sink.reject_reason({"a": 1, "b": b"raw", "c": 3}) or "")
    assert "field c" in (sink.reject_reason({"a": 1, "b": 2, "c": {"x": float("nan")}}) or "")


def test_csv_columns_from_the_first_row_are_shared_by_every_instance(tmp_path: Path) -> None:
    h = Harness("csv", tmp_path)
    first = h.make()
    assert first.reject_reason({"b": 1, "a": 2}) is None
    other = h.make()  # e.g. the resumed process: agrees before any part is written
    assert other.reject_reason({"a": 1, "b": 2}) is None
    assert other.reject_reason({"a": 1, "c": 2}) == "missing fields: b; unexpected fields: c"
    other.write_part("chunk-000000", [("t1", {"a": 1, "b": 2})])
    other.finalize(["chunk-000000"])
    assert h.output.read_text("utf-8") == "b,a\n2,1\n"


def test_csv_with_fields_and_no_rows_is_just_the_header(tmp_path: Path) -> None:
    h = Harness("csv", tmp_path)
    sink = h.make(fields=["x", "y"])
    sink.write_part("chunk-000000", [])
    assert sink.finalize(["chunk-000000"]).row_count == 0
    assert h.output.read_text("utf-8") == "x,y\n"


# --- JSON Lines ---------------------------------------------------------------------------------
def test_jsonl_writes_one_sorted_object_per_line(tmp_path: Path) -> None:
    from decimal import Decimal
    h = Harness("jsonl", tmp_path)
    sink = h.make()
    rows = [("t1", {"z": 1, "a": {"y": [1, None], "b": "é"}, "m": True}),
            ("t2", {"only": Decimal("1.10")})]
    vet(sink, rows)
    sink.write_part("chunk-000000", rows)
    sink.finalize(["chunk-000000"])
    expected = [json.dumps(r, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
                for r in ({"z": 1, "a": {"y": [1, None], "b": "é"}, "m": True}, {"only": "1.10"})]
    assert h.output.read_text("utf-8").splitlines() == expected


@pytest.mark.parametrize(("row", "where"), [
    ({"x": float("nan")}, "field x: nan"),
    ({"x": [1, float("inf")]}, "field x[1]: inf"),
    ({"x": {"y": {1: "int key"}}}, "field x.y: object key 1"),
    ({"x": b"bytes"}, "field x: values of type bytes"),
    ({"x": 2**70}, "field x: integer"),
    ({"x": object()}, "field x: values of type object"),
])
def test_jsonl_refuses_values_json_cannot_hold_faithfully(tmp_path: Path, row: dict[str, Any],
                                                          where: str) -> None:
    sink = Harness("jsonl", tmp_path).make()
    assert where in (sink.reject_reason(row) or "")
    with pytest.raises(GovernanceError, match="GP-SINK-004|does not fit"):
        sink.write_part("chunk-000000", [("t1", row)])


# --- Parquet ------------------------------------------------------------------------------------
def test_parquet_all_null_column_gets_its_type_from_a_later_part(tmp_path: Path) -> None:
    h = Harness("parquet", tmp_path)
    sink = h.make()
    early = [(f"t{i}", {"id": i, "tag": None}) for i in range(3)]
    late = [(f"t{i}", {"id": i, "tag": f"x{i}"}) for i in range(3, 5)]
    vet(sink, early)
    sink.write_part("chunk-000000", early)
    vet(sink, late)
    sink.write_part("chunk-000001", late)
    resumed = h.make()  # reads the refined schema from the parts directory
    assert "field tag" in (resumed.reject_reason({"id": 9, "tag": 5}) or "")
    assert resumed.reject_reason({"id": 9, "tag": "ok"}) is None
    resumed.finalize(["chunk-000000", "chunk-000001"])
    table = pq.read_table(h.output)
    assert str(table.schema.field("tag").type) == "string"
    assert table.to_pylist() == [row for _, row in early + late]


def test_parquet_refuses_rows_that_do_not_match_the_schema(tmp_path: Path) -> None:
    h = Harness("parquet", tmp_path)
    sink = h.make()
    assert sink.reject_reason({"id": 1, "score": 0.5, "name": "a"}) is None
    assert sink.reject_reason({"id": 1, "score": 2, "name": "b"}) is None  # int fits a double
    assert sink.reject_reason({"id": 1}) == "missing fields: score, name"
    assert "field id" in (sink.reject_reason({"id": "one", "score": 0.5, "name": "c"}) or "")
    assert "field name" in (sink.reject_reason({"id": 1, "score": 0.5, "name": object()}) or "")
    sink.write_part("chunk-000000", [("t1", {"id": 1, "score": 2, "name": "b"})])
    sink.finalize(["chunk-000000"])
    assert pq.read_table(h.output).to_pylist() == [{"id": 1, "score": 2.0, "name": "b"}]


def test_parquet_promotion_streams_bounded_row_groups(tmp_path: Path) -> None:
    from governance_pipeline.plugins.sinks.parquet_sink import ROW_GROUP_ROWS
    h = Harness("parquet", tmp_path)
    sink = h.make()
    keys = []
    for n in range(7):
        part = [(f"t{i:07d}", {"id": i}) for i in range(n * 10_000, (n + 1) * 10_000)]
        vet(sink, part[:1])
        keys.append(f"chunk-{n:06d}")
        sink.write_part(keys[-1], part)
    assert sink.finalize(keys).row_count == 70_000
    meta = pq.read_metadata(h.output)
    groups = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    assert sum(groups) == 70_000 and len(groups) >= 2 and max(groups) <= ROW_GROUP_ROWS
    assert pq.read_table(h.output).column("id").to_pylist() == list(range(70_000))


# --- SQL ------------------------------------------------------------------------------------------
SQL_KINDS = ["sql-sqlite", "sql-postgres"]
DECLARED = ("CREATE TABLE results (_gp_token_id VARCHAR(64) PRIMARY KEY, _gp_part TEXT, "
            "id INTEGER NOT NULL, name VARCHAR(8), score FLOAT, active BOOLEAN, note TEXT)")


@pytest.mark.parametrize("harness", SQL_KINDS, indirect=True)
def test_sql_refuses_rows_the_declared_table_cannot_take(harness: Harness) -> None:
    harness.sql(DECLARED)
    sink = harness.make(create=False)
    ok = {"id": 1, "name": "a", "score": 0.5, "active": True, "note": None}
    assert sink.reject_reason(ok) is None
    assert sink.reject_reason({"id": 1}) is None  # nullable columns may be left out
    assert sink.reject_reason({**ok, "colour": "red", "size": 1}) == \
        "fields not in table results: colour, size"
    assert sink.reject_reason({"name": "a"}) == "NOT NULL columns missing or null: id"
    assert sink.reject_reason({**ok, "id": None}) == "NOT NULL columns missing or null: id"
    assert "field id" in (sink.reject_reason({**ok, "id": "one"}) or "")
    assert "field id" in (sink.reject_reason({**ok, "id": True}) or "")
    assert "field active" in (sink.reject_reason({**ok, "active": 1}) or "")
    assert "reserved" in (sink.reject_reason({**ok, "_gp_part": "x"}) or "")
    long_name, huge = sink.reject_reason({**ok, "name": "x" * 9}), \
        sink.reject_reason({**ok, "id": 2**40})
    if harness.kind == "sql-postgres":  # limits PostgreSQL enforces and SQLite does not
        assert "exceeds the column length 8" in (long_name or "")
        assert "out of range" in (huge or "")
    else:
        assert long_name is None and huge is None
    rows = [("t1", ok), ("t2", {"id": 2}), ("t3", {**ok, "id": 3, "note": "n"})]
    sink.write_part("chunk-000000", rows)
    artifact = sink.finalize(["chunk-000000"])
    assert artifact.row_count == 3
    assert harness.sql("SELECT id, name, note FROM results ORDER BY _gp_token_id") == \
        [(1, "a", None), (2, None, None), (3, "a", "n")]


@pytest.mark.parametrize("harness", SQL_KINDS, indirect=True)
def test_sql_refuses_a_table_it_cannot_key(harness: Harness) -> None:
    with pytest.raises(GovernanceError) as info:
        harness.make(create=False).reject_reason({"id": 1})
    assert info.value.code.code == "GP-SINK-005" and "does not exist" in info.value.message
    harness.sql("CREATE TABLE results (_gp_token_id VARCHAR(64) PRIMARY KEY, id INTEGER)")
    with pytest.raises(GovernanceError) as info:
        harness.make(create=False).write_part("chunk-000000", [("t1", {"id": 1})])
    assert info.value.code.code == "GP-SINK-005" and "_gp_part" in info.value.message


@pytest.mark.parametrize("harness", SQL_KINDS, indirect=True)
def test_sql_creates_a_keyed_table_from_the_first_part(harness: Harness) -> None:
    sink = harness.make()
    assert sink.reject_reason({"id": 1, "score": 1, "tag": None}) is None
    assert sink.reject_reason({"id": 2, "score": 2.5, "tag": "x"}) is None  # int column → float
    assert sink.reject_reason({"id": 3}) == "missing fields: score, tag"
    assert "field id" in (sink.reject_reason({"id": "x", "score": 1.0, "tag": "y"}) or "")
    sink.write_part("chunk-000000", [("t1", {"id": 1, "score": 1, "tag": None}),
                                     ("t2", {"id": 2, "score": 2.5, "tag": "x"})])
    resumed = harness.make()  # reflects the table the first instance created
    assert "field tag" in (resumed.reject_reason({"id": 5, "score": 1.0, "tag": 5}) or "")
    with pytest.raises(IntegrityError):
        harness.sql("INSERT INTO results (_gp_token_id, _gp_part, id) VALUES ('t1', 'x', 9)")
    assert resumed.finalize(["chunk-000000"]).row_count == 2
    assert harness.sql("SELECT id, score, tag FROM results ORDER BY _gp_token_id") == \
        [(1, 1.0, None), (2, 2.5, "x")]


@pytest.mark.parametrize("harness", SQL_KINDS, indirect=True)
def test_sql_leaves_rows_it_did_not_write_alone(harness: Harness) -> None:
    sink = harness.make()
    rows = pairs(0, 3)
    vet(sink, rows)
    sink.write_part("chunk-000000", rows)
    harness.sql("INSERT INTO results (_gp_token_id, id, name) VALUES ('manual', 99, 'm')")
    artifact = sink.finalize(["chunk-000000"])
    assert artifact.row_count == 3 and artifact.content_hash == harness.expected_hash(rows)
    assert harness.sql("SELECT count(*) FROM results WHERE _gp_token_id = 'manual'") == [(1,)]


def test_sql_describe_and_artifact_hide_the_password(tmp_path: Path) -> None:
    cls = entry_points(group="governance_pipeline.sinks", name="sql")["sql"].load()
    sink = cls({"url": "postgresql://gp:topsecret@db.example/warehouse", "table": "t"},
               base_dir=tmp_path, sink_name="out")
    assert "topsecret" not in json.dumps(sink.describe())
    assert sink.uri == "postgresql+psycopg://gp@db.example/warehouse#t"


@pytest.mark.parametrize("harness", ["csv", "parquet"], indirect=True)
def test_a_fresh_run_can_discard_the_columns_a_crashed_run_stored(harness: Harness) -> None:
    crashed = harness.make()
    assert crashed.reject_reason({"old": 1}) is None
    crashed.write_part("chunk-000000", [("t1", {"old": 1})])
    fresh = harness.make()
    assert fresh.reject_reason({"new": 1}) == "missing fields: old; unexpected fields: new"
    fresh.discard_parts()  # type: ignore[attr-defined]
    assert not harness.parts_dir.exists()
    assert fresh.reject_reason({"new": 1}) is None
    fresh.write_part("chunk-000000", [("t1", {"new": 1})])
    assert fresh.finalize(["chunk-000000"]).row_count == 1
    assert harness.read_final() == ([["new"], ["1"]] if harness.plugin == "csv" else [{"new": 1}])
