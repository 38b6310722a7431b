"""Anchor checks of ``verify``: every run the global chain anchored is still there, whole, and
the global chain still reaches the head its witness file recorded.

The anchors are global records, so their own integrity is the global chain's (sealed at every
commit); here each is compared with the run chain it names. A run deleted outright leaves no
chain, no seal and no row to check, only its anchor: that is the finding.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import Connection

from governance_pipeline.landscape.schema import GLOBAL_SCOPE, run_anchors
from governance_pipeline.landscape.verify_chain import CHAIN, Chain, Tally, entry_key, raw_select
from governance_pipeline.landscape.witness import WITNESS_FILE, WitnessedHead

ANCHOR = CHAIN  # an anchor mismatch is chain damage: the run's chain lost what it committed


def check_anchors(conn: Connection, chains: Mapping[str, Chain], state: Tally,
                  run_id: str | None = None) -> None:
    """Compare the anchors (of ``run_id``, or of every run) with the chains verify replayed."""
    query = raw_select(run_anchors).order_by(run_anchors.c.run_id, run_anchors.c.run_seq)
    if run_id is not None:
        query = query.where(run_anchors.c.run_id == run_id)
    reported: set[str] = set()
    for anchor in conn.execute(query).mappings():
        run, seq, head = anchor["run_id"], anchor["run_seq"], anchor["run_head_hash"]
        if not isinstance(run, str) or type(seq) is not int:
            continue  # a retyped anchor is already a modified global record
        chain = chains.get(run)
        where = f"anchored in the global chain at seq {seq} (anchor {anchor['anchor_id']})"
        if chain is None or chain.last_seq == 0:
            if run not in reported:
                reported.add(run)
                state.add(ANCHOR, "run_anchors", str(anchor["anchor_id"]),
                          f"run missing: run {run} {where} is missing (no chain entry left)",
                          run, run_seq=seq)
        elif seq not in chain.heads:
            state.add(ANCHOR, "ledger_entries", entry_key(run, seq),
                      f"run truncated: run {run} {where} now ends at seq {chain.last_seq}", run,
                      run_seq=seq, last_seq=chain.last_seq)
        elif chain.heads[seq] != head:
            state.add(ANCHOR, "ledger_entries", entry_key(run, seq),
                      f"run rewritten: entry seq {seq} of run {run} is not the head {where}",
                      run, expected=head, actual=chain.heads[seq])


def check_witness(chain: Chain, witnessed: Mapping[str, WitnessedHead], state: Tally) -> None:
    """The global chain must still reach the head the witness file recorded for it."""
    first = chain.heads.get(1)
    seen = witnessed.get(first) if first is not None else None
    if seen is None:
        return  # no witness for this chain here (another host, a fresh GOVERNANCE_HOME)
    key = entry_key(GLOBAL_SCOPE, seen.seq)
    if seen.seq not in chain.heads:
        state.add(ANCHOR, "ledger_entries", key,
                  f"global chain truncated: the head witness ({WITNESS_FILE} beside the signing "
                  f"key) recorded seq {seen.seq}, the chain now ends at seq {chain.last_seq}",
                  GLOBAL_SCOPE, witnessed_seq=seen.seq, last_seq=chain.last_seq)
    elif chain.heads[seen.seq] != seen.head_hash:
        state.add(ANCHOR, "ledger_entries", key,
                  f"global chain rewritten: entry seq {seen.seq} is not the head the witness "
                  f"({WITNESS_FILE}) recorded", GLOBAL_SCOPE, expected=seen.head_hash,
                  actual=chain.heads[seen.seq])
