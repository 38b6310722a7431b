"""Deterministic audit ids for everything a chunk creates.

Re-processing a chunk after a crash must produce the same ids as the first attempt: sinks key
rows by token id (the SQL sink upserts on it), and the ids sort in processing order, which keeps
the Landscape's B-trees append-mostly. Ids derive from the run id, the source row index and
the position of each node in the graph.
"""

from __future__ import annotations


def row_id(run_id: str, index: int) -> str:
    return f"{run_id}.r{index:09d}"


def row_index(row: str) -> int:
    """The source row index a row id was derived from (``row_id``'s inverse)."""
    return int(row.rsplit(".r", 1)[1])


def decision_id(token: str, position: int, ordinal: int) -> str:
    return f"{token}.n{position:02d}.p{ordinal}"


def token_id(row: str, n: int) -> str:
    return f"{row}.t{n}"


def expand_group_id(token: str, position: int) -> str:
    return f"{token}.n{position:02d}.x"


def expand_token_id(group: str, n: int) -> str:
    return f"{group}{n}"


def state_id(token: str, position: int) -> str:
    return f"{token}.n{position:02d}"


def outcome_id(token: str, *, terminal: bool) -> str:
    return f"{token}.o" if terminal else f"{token}.b"


def call_id(state: str, index: int) -> str:
    return f"{state}.c{index}"


def routing_id(state: str, index: int) -> str:
    return f"{state}.x{index}"


def chunk_label(chunk_index: int) -> str:
    return "final" if chunk_index < 0 else f"{chunk_index:06d}"


def batch_id(run_id: str, position: int, chunk_index: int, n: int) -> str:
    return f"{run_id}.b{position:02d}.{chunk_label(chunk_index)}.{n:04d}"


def batch_token_id(batch: str, n: int) -> str:
    return f"{batch}.t{n}"


def edge_id(run_id: str, index: int) -> str:
    return f"{run_id}.e{index:03d}"


def operation_id(run_id: str, chunk_index: int, position: int) -> str:
    return f"{run_id}.op.{chunk_label(chunk_index)}.{position:02d}"


def checkpoint_id(run_id: str, chunk_index: int) -> str:
    return f"{run_id}.cp.{chunk_label(chunk_index)}"


def part_key(chunk_index: int) -> str:
    return f"chunk-{chunk_label(chunk_index)}"
