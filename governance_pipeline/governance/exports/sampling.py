"""Seeded, reproducible samples over stably ordered populations.

A population is a list of text keys; it is sorted, so its order never depends on how the
database returned it, and committed to by the SHA-256 of its canonical JSON. The sample is
``random.Random(seed).sample`` of the sorted keys (``random.Random`` seeded with text is the same
generator in every process and on every platform, whatever ``PYTHONHASHSEED``), reported in
sorted order. The default seed is a hash of the bundle's subject and the ledger heads it was
built from: rebuilt from the same records it draws the same sample, and nobody can choose a
convenient sample without changing the seed recorded in the bundle.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

from governance_pipeline.contracts.hashing import stable_hash
from governance_pipeline.governance.exports.models import LedgerHead, SampleInfo


def population_digest(keys: Iterable[str]) -> str:
    """SHA-256 of the canonical JSON list of the sorted keys."""
    return stable_hash(sorted(keys))


def default_seed(kind: str, subject: str, heads: Sequence[LedgerHead]) -> str:
    return stable_hash({"kind": kind, "subject": subject,
                        "heads": [[h.scope, h.seq, h.entry_hash] for h in heads]})


def draw(keys: Iterable[str], size: int, seed: str) -> SampleInfo:
    """Sample up to ``size`` keys; the whole population when it is smaller."""
    if size < 0:
        raise ValueError("sample size must not be negative")
    population = sorted(set(keys))
    chosen = random.Random(seed).sample(population, min(size, len(population)))
    return SampleInfo(seed=seed, population_size=len(population),
                      population_digest=stable_hash(population), requested=size,
                      drawn=sorted(chosen))
