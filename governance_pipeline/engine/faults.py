"""Named crash points for the crash-recovery tests.

``GOVERNANCE_CRASH_AT=site:n`` makes the process SIGKILL itself the n-th time it passes
``site`` (1-based). Unset — always, outside the crash tests — a crash point costs one
dictionary lookup. Sites sit at the boundaries that matter for durability: between a sink's
durable write and the audit commit, inside an aggregation flush, around finalisation.
"""

from __future__ import annotations

import os
import signal

ENV = "GOVERNANCE_CRASH_AT"

SITES = (
    "chunk.processed",        # tokens processed in memory, nothing written yet
    "sink.part_written",      # one sink's part is durable, the others may not be
    "chunk.before_commit",    # every part durable, the audit transaction not yet committed
    "chunk.committed",        # the chunk and its checkpoint are committed
    "aggregation.flushed",    # inside an aggregation flush, batch computed but not recorded
    "sink.finalized",         # one sink promoted its parts to the final artifact
    "run.before_close",       # every artifact final, the run not yet closed
)


def _parse(value: str | None) -> tuple[str, int] | None:
    if not value:
        return None
    site, _, n = value.rpartition(":")
    if site not in SITES or not n.isdigit() or int(n) < 1:
        raise ValueError(f"{ENV}={value!r}: expected one of {SITES} and ':n' with n >= 1")
    return site, int(n)


_target = _parse(os.environ.get(ENV))
_seen: dict[str, int] = {}


def crash_point(site: str) -> None:
    if _target is None or _target[0] != site:
        return
    _seen[site] = _seen.get(site, 0) + 1
    if _seen[site] == _target[1]:
        os.kill(os.getpid(), signal.SIGKILL)
