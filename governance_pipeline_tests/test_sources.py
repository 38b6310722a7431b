"""Sources: every bad record comes back as an error with its code and exact raw bytes, the records
after it still come back, nothing is dropped (count in = count out), and resume returns the tail.

Real files in ``tmp_path``, a real SQLite file and the real PostgreSQL server; no mocks.
"""

from __future__ import annotations

import json
import math
import os
import tracemalloc
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from governance_pipeline.contracts.errors import ConfigError, GovernanceError
from governance_pipeline.contracts.hashing import stable_hash
from governance_pipeline.contracts.ids import new_id
from governance_pipeline.engine.plugin_api import Source, SourceRecord
from governance_pipeline.engine.row_schema import RowSchema
from governance_pipeline.landscape.database import normalize_url
from governance_pipeline.plugins.sources.csv_source import CsvSource
from governance_pipeline.plugins.sources.jsonl_source import JsonlSource
from governance_pipeline.plugins.sources.parquet_source import ParquetSource
from governance_pipeline.plugins.sources.sql_source import SqlSource
from governance_pipeline_tests.conftest import PG_ENV, _pg_admin_url, drop_pg_database

SCHEMA = RowSchema.model_validate({"fields": {
    "id": {"type": "int"}, "name": {"max_length": 10}, "amount": {"type": "float"},
    "day": {"type": "date", "nullable": True, "required": False}}, "max_field_bytes": 64})


def collect(source: Source, start: int = 0) -> list[SourceRecord]:
    records = list(source.read(start))
    assert [r.index for r in records] == list(range(start, start + len(records)))
    for r in records:
        if r.row is not None:
            stable_hash(r.row)  # every valid row is canonically hashable
    return records


def check_one_bad(records: list[SourceRecord], total: int, bad: int, code: str,
                  raw: bytes) -> None:
    """Exactly record ``bad`` is an error with ``code`` and ``raw``; all others are valid."""
    assert len(records) == total, "a record was dropped or invented"
    errors = [r for r in records if r.error is not None]
    assert [r.index for r in errors] == [bad], [(r.index, r.error) for r in errors]
    assert errors[0].error.code == code, errors[0].error  # type: ignore[union-attr]
    assert errors[0].raw == raw


# --- CSV ------------------------------------------------------------------------------------------
CSV_HEAD = b"id,name,amount,day\r\n"
CSV_GOOD = [b"1,ann,1.5,2024-01-01\r\n", b'2,"b,\r\nob",2,\r\n', b"3,cy,-3e2,2024-02-29\r\n"]
CSV_AFTER = [b"4,dee,4,\n", b"5,eve,5.25,2024-12-31\n"]

CSV_BAD = [
    (b"9,\xff\xfeok,1,\r\n", "bad_encoding"),
    (b'9,"bad"quote,1,\r\n', "malformed"),
    (b"9,short\r\n", "missing_field"),
    (b"9,x,1,,surplus\r\n", "too_many_fields"),
    (b"9,x,lots,\r\n", "wrong_type"),
    (b"9.5,x,1,\r\n", "wrong_type"),
    (b"9,x,NaN,\r\n", "not_finite"),
    (b"9,x,1e999,\r\n", "not_finite"),
    (b"9,,1,\r\n", "missing_value"),
    (b"99999999999999999,x,1,\r\n", "out_of_range"),
    (b"9,abcdefghijk,1,\r\n", "too_long"),
    (('9,"' + "é" * 11 + '",1,\r\n').encode(), "too_long"),
    (b"9,x,1," + b"2" * 65 + b"\r\n", "oversized_field"),
    (b'9,"multi\r\nline\xe9",1,\r\n', "bad_encoding"),
]


def write(path: Path, *chunks: bytes) -> Path:
    path.write_bytes(b"".join(chunks))
    return path


@pytest.mark.parametrize(("bad", "code"), CSV_BAD, ids=[c for _, c in CSV_BAD])
def test_csv_bad_record_is_isolated_with_its_exact_bytes(tmp_path: Path, bad: bytes,
                                                         code: str) -> None:
    write(tmp_path / "in.csv", CSV_HEAD, *CSV_GOOD, bad, *CSV_AFTER)
    records = collect(CsvSource({"path": "in.csv"}, base_dir=tmp_path, schema=SCHEMA))
    check_one_bad(records, 6, 3, code, bad)
    assert records[1].row == {"id": 2, "name": "b,\r\nob", "amount": 2.0, "day": None}
    assert records[4].row == {"id": 4, "name": "dee", "amount": 4.0, "day": None}
    assert records[5].row == {"id": 5, "name": "eve", "amount": 5.25, "day": "2024-12-31"}


def test_csv_without_schema_keeps_text_and_still_checks_structure(tmp_path: Path) -> None:
    write(tmp_path / "in.csv", CSV_HEAD, *CSV_GOOD, b"9,x\n", b"7,x,1,\xff\n", *CSV_AFTER)
    records = collect(CsvSource({"path": "in.csv"}, base_dir=tmp_path))
    assert len(records) == 7
    assert records[0].row == {"id": "1", "name": "ann", "amount": "1.5", "day": "2024-01-01"}
    assert [(r.index, r.error.code, r.raw) for r in records if r.error] == [
        (3, "missing_field", b"9,x\n"), (4, "bad_encoding", b"7,x,1,\xff\n")]
    assert "'day'" in records[4].error.reason and "\\xff" in records[4].error.reason  # type: ignore[union-attr]


def test_csv_extra_header_columns_are_rejected_or_dropped_by_the_schema(tmp_path: Path) -> None:
    write(tmp_path / "in.csv", b"id,name,amount,day,extra\n", b"1,a,1,,e\n", b"2,b,2,,f\n")
    rejected = collect(CsvSource({"path": "in.csv"}, base_dir=tmp_path, schema=SCHEMA))
    assert [r.error.code for r in rejected] == ["extra_field"] * 2  # type: ignore[union-attr]
    assert rejected[1].raw == b"2,b,2,,f\n"
    drop = SCHEMA.model_copy(update={"extra_fields": "drop"})
    kept = collect(CsvSource({"path": "in.csv"}, base_dir=tmp_path, schema=drop))
    assert [r.row for r in kept] == [{"id": 1, "name": "a", "amount": 1.0, "day": None},
                                     {"id": 2, "name": "b", "amount": 2.0, "day": None}]


def test_csv_unterminated_quote_swallows_the_rest_as_one_malformed_record(tmp_path: Path) -> None:
    tail = b'3,"never closed,1,\n4,d,4,\n'
    write(tmp_path / "in.csv", CSV_HEAD, *CSV_GOOD[:2], tail)
    records = collect(CsvSource({"path": "in.csv"}, base_dir=tmp_path, schema=SCHEMA))
    assert len(records) == 3 and records[2].error.code == "malformed"  # type: ignore[union-attr]
    assert records[2].raw == tail  # the evidence keeps every byte that was not a row


def test_csv_oversized_records_are_cut_at_the_limit_and_reading_resumes(tmp_path: Path) -> None:
    long_quoted = b'7,"' + b"line\n" * 100 + b'quote "" inside",1,\n'
    long_line = b"8," + b"z" * 600 + b",1,\n"
    write(tmp_path / "in.csv", CSV_HEAD, CSV_GOOD[0], long_quoted, CSV_GOOD[2], long_line,
          *CSV_AFTER)
    source = CsvSource({"path": "in.csv", "max_record_bytes": 200}, base_dir=tmp_path,
                       schema=SCHEMA)
    records = collect(source)
    assert [r.error.code if r.error else "ok" for r in records] == [
        "ok", "oversized_field", "ok", "oversized_field", "ok", "ok"]
    assert records[1].raw == long_quoted[:200] and records[3].raw == long_line[:200]
    assert records[2].row["id"] == 3 and records[5].row["id"] == 5  # type: ignore[index]


def test_csv_options_delimiter_quotechar_encoding_and_bom(tmp_path: Path) -> None:
    content = "\ufeffid;name\n1;'a;b'\n2;'it''s'\n3;café\n".encode("utf-8")
    write(tmp_path / "in.csv", content)
    records = collect(CsvSource({"path": "in.csv", "delimiter": ";", "quotechar": "'"},
                                base_dir=tmp_path))
    assert [r.row for r in records] == [{"id": "1", "name": "a;b"}, {"id": "2", "name": "it's"},
                                        {"id": "3", "name": "café"}]
    write(tmp_path / "latin.csv", "id,name\n1,café\n".encode("latin-1"))
    latin = collect(CsvSource({"path": "latin.csv", "encoding": "latin-1"}, base_dir=tmp_path))
    assert latin[0].row == {"id": "1", "name": "café"}
    utf8 = collect(CsvSource({"path": "latin.csv"}, base_dir=tmp_path))
    assert utf8[0].error.code == "bad_encoding" and utf8[0].raw == b"1,caf\xe9\n"  # type: ignore[union-attr]


def test_csv_blank_lines_are_not_records_and_empty_files_have_none(tmp_path: Path) -> None:
    write(tmp_path / "in.csv", b"a,b\n\n1,2\n\r\n3,4")
    assert [r.row for r in collect(CsvSource({"path": "in.csv"}, base_dir=tmp_path))] == [
        {"a": "1", "b": "2"}, {"a": "3", "b": "4"}]
    write(tmp_path / "empty.csv", b"")
    write(tmp_path / "header.csv", b"a,b\n")
    assert collect(CsvSource({"path": "empty.csv"}, base_dir=tmp_path)) == []
    assert collect(CsvSource({"path": "header.csv"}, base_dir=tmp_path)) == []


@pytest.mark.parametrize(("content", "problem"), [
    (b"a,b,a\n1,2,3\n", "duplicate column 'a'"),
    (b"a,\xff\n1,2\n", "header row is not valid"),
    (b'a,"b\n', "header row cannot be read"),
])
def test_csv_unusable_header_stops_the_read_with_a_source_error(tmp_path: Path, content: bytes,
                                                                problem: str) -> None:
    write(tmp_path / "in.csv", content)
    with pytest.raises(GovernanceError, match=problem) as caught:
        list(CsvSource({"path": "in.csv"}, base_dir=tmp_path).read())
    assert caught.value.code.code == "GP-SOURCE-002" and int(caught.value.exit_code) == 2


# --- JSON Lines -----------------------------------------------------------------------------------
JSONL_GOOD = [b'{"id": 1, "name": "ann", "amount": 1.5, "day": "2024-01-01"}\n',
              b'{"id": "2", "name": "bob", "amount": 2, "day": null}\r\n',
              b'{"id": 3.0, "name": "cy", "amount": "3.25", "day": " 2024-02-29 "}\n']
JSONL_AFTER = [b'{"id": 4, "name": "dee", "amount": 4, "day": ""}\n',
               b'{"id": 5, "name": "eve", "amount": 5.25, "day": "2024-12-31"}']

JSONL_BAD = [
    (b'{"id": 9, "name": "\xff", "amount": 1}\n', "bad_encoding"),
    (b'{"id": 9, "name": "\\udc80", "amount": 1}\n', "bad_encoding"),
    (b'{"id": 9, "name": "x", "amount": 1\n', "malformed"),
    (b'[9, "x", 1]\n', "malformed"),
    (b'"just text"\n', "malformed"),
    (b'{"id": 9, "name": "x", "name": "y", "amount": 1}\n', "malformed"),
    (b'{"id": 9, "name": "x", "amount": NaN}\n', "not_finite"),
    (b'{"id": 9, "name": "x", "amount": -Infinity}\n', "not_finite"),
    (b'{"id": 9, "name": "x", "amount": 1e999}\n', "not_finite"),
    (b'{"id": 9, "amount": 1}\n', "missing_field"),
    (b'{"id": 9, "name": "x", "amount": 1, "zz": 0}\n', "extra_field"),
    (b'{"id": 9, "name": null, "amount": 1}\n', "missing_value"),
    (b'{"id": 9.5, "name": "x", "amount": 1}\n', "wrong_type"),
    (b'{"id": true, "name": "x", "amount": 1}\n', "wrong_type"),
    (b'{"id": 9007199254740993, "name": "x", "amount": 1}\n', "out_of_range"),
    (b'{"id": 9, "name": "abcdefghijk", "amount": 1}\n', "too_long"),
    (b'{"id": 9, "name": "x", "amount": 1, "day": "' + b"9" * 70 + b'"}\n', "oversized_field"),
]


@pytest.mark.parametrize(("bad", "code"), JSONL_BAD, ids=[c for _, c in JSONL_BAD])
def test_jsonl_bad_record_is_isolated_with_its_exact_bytes(tmp_path: Path, bad: bytes,
                                                           code: str) -> None:
    write(tmp_path / "in.jsonl", *JSONL_GOOD, bad, *JSONL_AFTER)
    records = collect(JsonlSource({"path": "in.jsonl"}, base_dir=tmp_path, schema=SCHEMA))
    check_one_bad(records, 6, 3, code, bad)
    assert [r.row for r in records[:3]] == [
        {"id": 1, "name": "ann", "amount": 1.5, "day": "2024-01-01"},
        {"id": 2, "name": "bob", "amount": 2.0, "day": None},
        {"id": 3, "name": "cy", "amount": 3.25, "day": "2024-02-29"}]
    assert records[4].row == {"id": 4, "name": "dee", "amount": 4.0, "day": None}


@pytest.mark.parametrize(("bad", "code"), [
    (b'{"a": {"b": 1, "b": 2}}\n', "malformed"), (b'{"a": [1, NaN]}\n', "not_finite"),
    (b'{"a": [' + b"1" * 5000 + b']}\n', "malformed"), (b'{"a": [[[' * 2000 + b"\n", "malformed"),
    (b'{"a": {"b": 12345678901234567890}}\n', "out_of_range"), (b"{}x\n", "malformed"),
])
def test_jsonl_without_schema_still_refuses_what_cannot_be_hashed(tmp_path: Path, bad: bytes,
                                                                  code: str) -> None:
    good = b'{"a": {"nested": [1, "two", null, true, 2.5]}}\n'
    write(tmp_path / "in.jsonl", good, bad, good)
    records = collect(JsonlSource({"path": "in.jsonl"}, base_dir=tmp_path))
    check_one_bad(records, 3, 1, code, bad)
    assert records[2].row == {"a": {"nested": [1, "two", None, True, 2.5]}}


def test_jsonl_oversized_line_is_cut_and_the_rest_of_it_skipped(tmp_path: Path) -> None:
    huge = b'{"id": 9, "name": "' + b"x" * 300_000 + b'", "amount": 1}\n'
    write(tmp_path / "in.jsonl", *JSONL_GOOD, huge, *JSONL_AFTER)
    records = collect(JsonlSource({"path": "in.jsonl", "max_record_bytes": 1000},
                                  base_dir=tmp_path, schema=SCHEMA))
    check_one_bad(records, 6, 3, "oversized_field", huge[:1000])


def test_jsonl_blank_lines_are_not_records(tmp_path: Path) -> None:
    write(tmp_path / "in.jsonl", b"\xef\xbb\xbf", b'{"a": 1}\n', b"\n   \n\r\n", b'{"a": 2}\n\n')
    assert [r.row for r in collect(JsonlSource({"path": "in.jsonl"}, base_dir=tmp_path))] == [
        {"a": 1}, {"a": 2}]


# --- resume ---------------------------------------------------------------------------------------
def _mixed_csv(tmp_path: Path) -> Source:
    write(tmp_path / "in.csv", CSV_HEAD, *CSV_GOOD, CSV_BAD[0][0], CSV_BAD[1][0], *CSV_AFTER,
          b"\n", b"6,fay,6,\n")
    return CsvSource({"path": "in.csv"}, base_dir=tmp_path, schema=SCHEMA)


def _mixed_jsonl(tmp_path: Path) -> Source:
    write(tmp_path / "in.jsonl", *JSONL_GOOD, JSONL_BAD[0][0], b"\n", JSONL_BAD[3][0],
          JSONL_AFTER[0], b'{"id": 6, "name": "x" "amount": 1}\n', JSONL_AFTER[1])
    return JsonlSource({"path": "in.jsonl", "max_record_bytes": 100}, base_dir=tmp_path,
                       schema=SCHEMA)


def _mixed_parquet(tmp_path: Path) -> Source:
    table = pa.table({"id": list(range(11)), "name": [f"n{i}" for i in range(11)],
                      "amount": [float(i) if i % 4 else math.nan for i in range(11)]})
    pq.write_table(table, tmp_path / "in.parquet", row_group_size=3)
    return ParquetSource({"path": "in.parquet", "batch_size": 2}, base_dir=tmp_path)


@pytest.mark.parametrize("make", [_mixed_csv, _mixed_jsonl, _mixed_parquet],
                         ids=["csv", "jsonl", "parquet"])
def test_start_index_returns_exactly_the_tail(tmp_path: Path, make: Any) -> None:
    source = make(tmp_path)
    full = collect(source)
    assert any(r.error for r in full) and any(r.row for r in full)
    for start in range(len(full) + 2):
        assert collect(source, start) == full[start:], start


# --- Parquet --------------------------------------------------------------------------------------
def test_parquet_values_become_json_values(tmp_path: Path) -> None:
    paris = datetime(2024, 1, 5, 10, tzinfo=timezone.utc)
    table = pa.table({
        "ts": pa.array([datetime(2024, 1, 5, 10, 0, 0, 123456)], pa.timestamp("us")),
        "ts_ns": pa.array([1_704_448_800_000_000_001], pa.timestamp("ns")),
        "tsz": pa.array([paris], pa.timestamp("ms", tz="UTC")),
        "d": pa.array([date(2024, 1, 5)]), "t": pa.array([time(1, 2, 3)]),
        "dec": pa.array([Decimal("12.50")], pa.decimal128(10, 2)),
        "bin": pa.array([b"\x00\xff"]), "dur": pa.array([timedelta(seconds=90)], pa.duration("s")),
        "list": pa.array([[1, 2]]), "struct": pa.array([{"k": date(2024, 1, 1)}]),
        "cat": pa.array(["x"]).dictionary_encode(), "none": pa.array([None], pa.int64()),
    })
    pq.write_table(table, tmp_path / "in.parquet")
    [record] = collect(ParquetSource({"path": "in.parquet"}, base_dir=tmp_path))
    assert record.row == {
        "ts": "2024-01-05T10:00:00.123456", "ts_ns": "2024-01-05T10:00:00.000000001",
        "tsz": "2024-01-05T10:00:00+00:00", "d": "2024-01-05", "t": "01:02:03", "dec": "12.50",
        "bin": "AP8=", "dur": "PT90S", "list": [1, 2], "struct": {"k": "2024-01-01"},
        "cat": "x", "none": None}


PARQUET_BAD = [
    ("amount", math.nan, "not_finite", b'"amount": NaN'),
    ("amount", math.inf, "not_finite", b'"amount": Infinity'),
    ("name", None, "missing_value", b'"name": null'),
    ("name", "abcdefghijk", "too_long", b'"name": "abcdefghijk"'),
    ("day", "2024-13-01", "wrong_type", b'"day": "2024-13-01"'),
    ("day", "9" * 70, "oversized_field", b'"day": "999'),
]


@pytest.mark.parametrize(("column", "value", "code", "raw_part"), PARQUET_BAD,
                         ids=[c for _, _, c, _ in PARQUET_BAD])
def test_parquet_bad_row_is_isolated_with_a_faithful_reconstruction(
        tmp_path: Path, column: str, value: Any, code: str, raw_part: bytes) -> None:
    rows = [{"id": i, "name": f"n{i}", "amount": i + 0.5, "day": None} for i in range(6)]
    rows[3][column] = value
    table = pa.table({"id": pa.array([r["id"] for r in rows], pa.int64()),
                      "name": pa.array([r["name"] for r in rows], pa.string()),
                      "amount": pa.array([r["amount"] for r in rows], pa.float64()),
                      "day": pa.array([r["day"] for r in rows], pa.string())})
    pq.write_table(table, tmp_path / "in.parquet", row_group_size=4)
    records = collect(ParquetSource({"path": "in.parquet", "batch_size": 3}, base_dir=tmp_path,
                                    schema=SCHEMA))
    assert len(records) == 6 and [r.index for r in records if r.error] == [3]
    assert records[3].error.code == code and raw_part in records[3].raw  # type: ignore[union-attr,operator]
    assert records[3].raw.startswith(b'{"id": 3, ')  # type: ignore[union-attr]
    assert records[5].row == {"id": 5, "name": "n5", "amount": 5.5, "day": None}


def test_parquet_structure_errors_missing_extra_and_range(tmp_path: Path) -> None:
    pq.write_table(pa.table({"id": [1, 2**60], "name": ["a", "b"], "amount": [1.0, 2.0]}),
                   tmp_path / "in.parquet")
    schema = RowSchema.model_validate({"fields": {"id": {"type": "int"}, "name": {}}})
    records = collect(ParquetSource({"path": "in.parquet"}, base_dir=tmp_path, schema=schema))
    assert [r.error.code for r in records] == ["extra_field", "out_of_range"]  # type: ignore[union-attr]
    with_day = RowSchema.model_validate({"fields": {
        "id": {"type": "int"}, "name": {}, "amount": {"type": "float"}, "day": {"type": "date"}}})
    records = collect(ParquetSource({"path": "in.parquet"}, base_dir=tmp_path, schema=with_day))
    # One problem per row, the first in declared field order: "id" is checked before "day".
    assert [r.error.code for r in records] == ["missing_field", "out_of_range"]  # type: ignore[union-attr]
    assert "'day'" in records[0].error.reason  # type: ignore[union-attr]


def test_parquet_unreadable_file_is_a_source_error(tmp_path: Path) -> None:
    write(tmp_path / "in.parquet", b"PAR1 but not really")
    with pytest.raises(GovernanceError, match="not a readable Parquet file") as caught:
        list(ParquetSource({"path": "in.parquet"}, base_dir=tmp_path).read())
    assert caught.value.code.code == "GP-SOURCE-002"


# --- SQL ------------------------------------------------------------------------------------------
@pytest.fixture
def pg_admin() -> str:
    """The PostgreSQL server's admin URL. The source tests need no audit schema, so they make
    their own empty databases rather than copying the shared migrated template."""
    admin = _pg_admin_url()  # fails in CI when unset, so these never skip there
    if admin is None:
        pytest.skip(f"PostgreSQL not configured: set {PG_ENV}")
    return admin


def _empty_pg_database(admin: str) -> str:
    name = f"gp_source_{new_id()[-12:].lower()}_{os.getpid()}"
    engine = create_engine(normalize_url(admin), poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return normalize_url(admin).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(params=["sqlite", "postgres"])
def source_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database holding table ``items`` (13 rows: id 0..12, row 7 has a NULL name)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'source.db'}"
        cleanup = None
    else:
        cleanup = request.getfixturevalue("pg_admin")
        url = _empty_pg_database(cleanup)
    engine = create_engine(normalize_url(url), poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE items (id INTEGER PRIMARY KEY, name VARCHAR(40), "
                          "amount NUMERIC(10, 2), seen DATE)"))
        conn.execute(text("INSERT INTO items VALUES (:id, :name, :amount, :seen)"), [
            {"id": i, "name": None if i == 7 else f"n{i}",
             # sqlite3 cannot bind Decimal; SQLite's NUMERIC stores a REAL (or INTEGER) anyway.
             "amount": Decimal(i) / 4 if cleanup else i / 4,
             "seen": date(2024, 1, 1 + i)} for i in range(13)])
    engine.dispose()
    try:
        yield url
    finally:
        if cleanup is not None:
            drop_pg_database(cleanup, url)


SQL_SCHEMA = RowSchema.model_validate({"fields": {
    "id": {"type": "int"}, "name": {}, "amount": {"type": "float"}, "seen": {"type": "date"}}})


def test_sql_rows_stream_with_schema_and_a_bad_row_is_isolated(source_db: str,
                                                               tmp_path: Path) -> None:
    source = SqlSource({"url": source_db, "query": "SELECT * FROM items ORDER BY id",
                        "batch_size": 4}, base_dir=tmp_path, schema=SQL_SCHEMA)
    records = collect(source)
    assert len(records) == 13 and [r.index for r in records if r.error] == [7]
    assert records[7].error.code == "missing_value"  # type: ignore[union-attr]
    evidence = json.loads(records[7].raw)  # type: ignore[arg-type]
    postgres = source_db.startswith("postgresql")
    assert evidence == {"id": 7, "name": None, "amount": "1.75" if postgres else 1.75,
                        "seen": "2024-01-08"}
    assert records[6].row == {"id": 6, "name": "n6", "amount": 1.5, "seen": "2024-01-07"}
    assert records[12].row == {"id": 12, "name": "n12", "amount": 3.0, "seen": "2024-01-13"}
    for start in (0, 1, 3, 4, 5, 8, 12, 13, 14):
        assert collect(source, start) == records[start:], start


def test_sql_params_bind_and_decimals_stay_exact_text(source_db: str, tmp_path: Path) -> None:
    source = SqlSource({"url": source_db, "query": "SELECT id, amount FROM items WHERE id >= :lo "
                        "ORDER BY id", "params": {"lo": 11}}, base_dir=tmp_path)
    # PostgreSQL NUMERIC arrives as Decimal and stays exact text; SQLite has no decimal type.
    expected = ["2.75", "3.00"] if source_db.startswith("postgresql") else [2.75, 3]
    assert [r.row for r in collect(source)] == [{"id": 11, "amount": expected[0]},
                                               {"id": 12, "amount": expected[1]}]


@pytest.mark.parametrize(("query", "params", "problem"), [
    ("SELEC id FROM items", {}, "query failed"),
    ("SELECT id, name AS id FROM items", {}, "duplicate column names"),
    ("SELECT id FROM items WHERE id = :missing", {}, "query failed"),
    ("SELECT id FROM no_such_table", {}, "query failed"),
])
def test_sql_query_problems_are_source_query_errors(source_db: str, tmp_path: Path, query: str,
                                                    params: dict[str, Any], problem: str) -> None:
    source = SqlSource({"url": source_db, "query": query, "params": params}, base_dir=tmp_path)
    with pytest.raises(GovernanceError, match=problem) as caught:
        list(source.read())
    assert caught.value.code.code == "GP-SOURCE-003"


@pytest.mark.parametrize("url", ["sqlite:////nonexistent-dir/x/source.db",
                                 "postgresql://gp:secret@127.0.0.1:1/nothing"])
def test_sql_unreachable_database_is_operational_and_hides_the_password(tmp_path: Path,
                                                                        url: str) -> None:
    source = SqlSource({"url": url, "query": "SELECT 1"}, base_dir=tmp_path)
    with pytest.raises(GovernanceError, match="cannot connect") as caught:
        list(source.read())
    assert caught.value.code.code == "GP-SOURCE-004" and int(caught.value.exit_code) == 1
    assert "secret" not in str(caught.value) and "secret" not in json.dumps(source.describe())


def test_sql_relative_sqlite_path_resolves_against_the_pipeline_dir(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'rel.db'}", poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (a INTEGER)"))
        conn.execute(text("INSERT INTO t VALUES (1)"))
    engine.dispose()
    source = SqlSource({"url": "sqlite:///rel.db", "query": "SELECT a FROM t"}, base_dir=tmp_path)
    assert [r.row for r in collect(source)] == [{"a": 1}]


def test_postgres_types_become_json_values(pg_admin: str, tmp_path: Path) -> None:
    query = ("SELECT 1.50::numeric(10,2) AS dec, TIMESTAMPTZ '2024-01-05 10:00:00+00' AS tsz, "
             "'\\x00ff'::bytea AS bin, '7c9e6679-7425-40de-944b-e07fc1f90ae7'::uuid AS id, "
             "INTERVAL '1 minute 30 seconds' AS dur, '{\"k\": [1, null]}'::jsonb AS doc, "
             "'NaN'::float8 AS bad")
    [record] = collect(SqlSource({"url": pg_admin, "query": query}, base_dir=tmp_path))
    assert record.error is not None and record.error.code == "not_finite"
    assert json.loads(record.raw.replace(b"NaN", b"null")) == {  # type: ignore[union-attr]
        "dec": "1.50", "tsz": "2024-01-05T10:00:00+00:00", "bin": "AP8=",
        "id": "7c9e6679-7425-40de-944b-e07fc1f90ae7", "dur": "PT90S", "doc": {"k": [1, None]},
        "bad": None}


# --- options, entry points, memory ----------------------------------------------------------------
@pytest.mark.parametrize(("cls", "options", "message"), [
    (CsvSource, {}, "options.path: field required"),
    (CsvSource, {"path": "x.csv", "bogus": 1}, "options.bogus: unknown option"),
    (CsvSource, {"path": "x.csv", "schema": {}}, "options.schema: unknown option"),
    (CsvSource, {"path": "x.csv", "delimiter": ";;"}, "options.delimiter"),
    (CsvSource, {"path": "x.csv", "quotechar": "\n"}, "options.quotechar"),
    (CsvSource, {"path": "x.csv", "encoding": "utf-16"}, "options.encoding: .*not ASCII-compatible"),
    (CsvSource, {"path": "x.csv", "encoding": "klingon"}, "options.encoding: unknown encoding"),
    (JsonlSource, {"path": "x", "max_record_bytes": 0}, "options.max_record_bytes"),
    (ParquetSource, {"path": "x", "encoding": "utf-8"}, "options.encoding: unknown option"),
    (SqlSource, {"url": "sqlite://"}, "options.query: field required"),
    (SqlSource, {"url": "not a url", "query": "SELECT 1"}, "options.url: not a SQLAlchemy URL"),
])
def test_bad_options_are_config_errors_naming_the_field(tmp_path: Path, cls: type[Source],
                                                        options: dict[str, Any],
                                                        message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        cls(options, base_dir=tmp_path)  # type: ignore[call-arg]
    assert caught.value.code.code == "GP-SOURCE-001" and int(caught.value.exit_code) == 2


def test_a_schema_given_as_a_mapping_is_validated(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="source.schema.fields.a.type"):
        CsvSource({"path": "x.csv"}, base_dir=tmp_path, schema={"fields": {"a": {"type": "x"}}})


def test_missing_input_file_is_an_io_error(tmp_path: Path) -> None:
    for cls in (CsvSource, JsonlSource, ParquetSource):
        with pytest.raises(GovernanceError, match="cannot open source file") as caught:
            list(cls({"path": "absent.file"}, base_dir=tmp_path).read())  # type: ignore[call-arg]
        assert caught.value.code.code == "GP-IO-001"


def test_entry_points_load_the_builtin_sources() -> None:
    found = {ep.name: ep.load() for ep in entry_points(group="governance_pipeline.sources")}
    assert found == {"csv": CsvSource, "jsonl": JsonlSource, "parquet": ParquetSource,
                     "sql": SqlSource}
    assert all(cls.name == name and issubclass(cls, Source) for name, cls in found.items())


def test_describe_records_the_schema(tmp_path: Path) -> None:
    doc = CsvSource({"path": "x.csv"}, base_dir=tmp_path, schema=SCHEMA).describe()
    assert doc["plugin"] == "csv" and doc["options"] == {"path": "x.csv"}
    assert RowSchema.model_validate(doc["schema"]) == SCHEMA


def _peak_bytes_reading(tmp_path: Path, rows: int) -> int:
    path = tmp_path / f"gen{rows}.csv"
    with path.open("wb") as out:
        out.write(b"id,name,amount,day\n")
        for i in range(rows):
            out.write(b'%d,"n%d",%d.5,2024-01-01\n' % (i, i % 1000, i))
    source = CsvSource({"path": path.name}, base_dir=tmp_path, schema=SCHEMA)
    tracemalloc.start()
    try:
        count = sum(1 for r in source.read() if r.row is not None)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == rows
    return peak


def test_csv_memory_does_not_grow_with_the_input(tmp_path: Path) -> None:
    small, large = _peak_bytes_reading(tmp_path, 2_000), _peak_bytes_reading(tmp_path, 40_000)
    assert large < small * 1.5 + 64 * 1024, (small, large)  # 20× the rows, (almost) no more memory
