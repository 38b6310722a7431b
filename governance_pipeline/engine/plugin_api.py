"""What the engine asks of sources, transforms, aggregations and sinks.

Plugins live above the engine (``governance_pipeline.plugins`` or any installed package) and
are found by name through entry points; they implement these base classes. Options arrive as
plain mappings from the pipeline YAML; each plugin validates them with its own pydantic model
(``extra="forbid"``) and raises ``ConfigError`` with the offending field path.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from governance_pipeline.contracts.clock import Clock
from governance_pipeline.contracts.enums import Determinism

Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class RowError:
    """Why a row was refused: a stable code (e.g. ``wrong_type``) and a readable reason."""

    code: str
    reason: str


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One record read by a source: either a valid row or the raw payload of an invalid one."""

    index: int
    row: Row | None
    raw: bytes | None = None
    error: RowError | None = None

    def __post_init__(self) -> None:
        if (self.row is None) == (self.error is None):
            raise ValueError("a source record is either a valid row or an error, not both")
        if self.error is not None and self.raw is None:
            raise ValueError("an invalid source record must keep its raw payload")


class Plugin(ABC):
    """Common identity of every plugin; ``name`` is the entry-point name."""

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    determinism: ClassVar[Determinism] = Determinism.DETERMINISTIC

    def __init__(self, options: Mapping[str, Any], *, base_dir: Path) -> None:
        self.options = options
        self.base_dir = base_dir

    def describe(self) -> dict[str, Any]:
        """What the audit trail records about this plugin instance (JSON-able)."""
        return {"plugin": self.name, "version": self.version, "options": dict(self.options)}

    def user_function(self) -> FunctionIdentity | None:
        """The user code this instance runs besides its own (a Python function), if any."""
        return None


@dataclass(frozen=True, slots=True)
class FunctionIdentity:
    """Which user function a plugin runs: recorded in the run's code manifest.

    ``source_sha256`` is the SHA-256 of the module's source file as it was imported;
    ``distribution``/``distribution_version`` name the installed distribution the module belongs
    to, both None when it belongs to none (a module next to the pipeline file).
    """

    qualified_name: str
    module_path: str
    source_sha256: str
    distribution: str | None
    distribution_version: str | None


class Source(Plugin):
    determinism: ClassVar[Determinism] = Determinism.IO_READ

    @abstractmethod
    def read(self, start_index: int = 0) -> Iterator[SourceRecord]:
        """Stream records from ``start_index`` on, indices contiguous; never loads the whole input."""


@dataclass(frozen=True, slots=True)
class CallRecord:
    """An external request a transform made, for the audit trail."""

    call_type: str
    request: Any
    response: Any | None
    error: Mapping[str, Any] | None
    latency_ms: float
    cost: float | None = None


@dataclass
class TransformContext:
    """What a transform may use besides its row: the injected clock and a call recorder."""

    clock: Clock
    run_id: str
    node_id: str
    token_id: str
    calls: list[CallRecord] = field(default_factory=list)

    def record_call(self, call: CallRecord) -> None:
        self.calls.append(call)


@dataclass(frozen=True, slots=True)
class TransformResult:
    """Exactly one of: a row to pass on, a drop (filtered out, with reason), an error, or the
    rows one input expanded into (two or more: the token is expanded into child tokens).

    ``context`` is recorded on the node state (e.g. the exception a user function raised)."""

    row: Row | None = None
    dropped: str | None = None
    error: RowError | None = None
    expanded: tuple[Row, ...] | None = None
    context: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if sum(x is not None for x in (self.row, self.dropped, self.error, self.expanded)) != 1:
            raise ValueError("a transform result is exactly one of row, dropped, error or "
                             "expanded")
        if self.expanded is not None and len(self.expanded) < 2:
            raise ValueError("an expansion has at least two rows (one row is a plain result)")

    @classmethod
    def ok(cls, row: Row) -> TransformResult:
        return cls(row=row)

    @classmethod
    def drop(cls, reason: str) -> TransformResult:
        return cls(dropped=reason)

    @classmethod
    def fail(cls, code: str, reason: str,
             context: Mapping[str, Any] | None = None) -> TransformResult:
        return cls(error=RowError(code, reason), context=context)


class Transform(Plugin):
    @abstractmethod
    def process(self, row: Row, ctx: TransformContext) -> TransformResult:
        """Process one row. Must not mutate ``row`` in place (the engine reuses its hash)."""


class ChunkTransform(Transform):
    """A transform that can take every row a chunk brings to its node in one call.

    When ``takes_chunks`` is true the engine calls ``process_chunk`` instead of ``process``:
    ``keys`` are the rows' token ids (unique), and the result holds one entry per input row, in
    input order: the output row itself (a ``dict``: the common case, no wrapper to build per
    row) or a ``TransformResult`` (dropped, error, expanded).
    """

    @property
    def takes_chunks(self) -> bool:
        return True

    @abstractmethod
    def process_chunk(self, rows: Sequence[Row],
                      keys: Sequence[str]) -> list[TransformResult | Row]:
        ...


class BatchFunction(Plugin):
    """An aggregation's ``transform`` output mode: many rows in, zero or more rows out."""

    @abstractmethod
    def process_batch(self, rows: Sequence[Row]) -> list[Row]: ...


@dataclass(frozen=True, slots=True)
class PartResult:
    """A durable part written by a sink for one chunk (flushed and fsynced, or committed)."""

    part_key: str
    rows: int
    size_bytes: int


@dataclass(frozen=True, slots=True)
class ArtifactResult:
    artifact_type: str
    path_or_uri: str
    content_hash: str
    size_bytes: int
    row_count: int


class Sink(Plugin):
    """Writes rows in parts, one per chunk, then promotes all parts to the final artifact.

    ``write_part`` is idempotent per ``part_key`` (rewriting a part replaces it) and returns only
    once the part is durable: this is what makes checkpoint-after-sink and resume exact.
    """

    determinism: ClassVar[Determinism] = Determinism.IO_READ

    def __init__(self, options: Mapping[str, Any], *, base_dir: Path, sink_name: str) -> None:
        super().__init__(options, base_dir=base_dir)
        self.sink_name = sink_name

    def reject_reason(self, row: Row) -> str | None:
        """Why this sink cannot accept ``row`` (the row is diverted to the fail sink), or None."""
        return None

    def discard_parts(self) -> None:
        """Forget parts left by an earlier attempt that never finished (fresh runs only)."""

    def as_written(self, row: Row) -> tuple[Row, list[str]] | None:
        """``(row as this sink writes it, the fields it changed)`` when the sink writes ``row``
        differently than given (e.g. CSV formula escaping); None when written as given."""
        return None

    @abstractmethod
    def write_part(self, part_key: str, rows: Sequence[tuple[str, Row]]) -> PartResult:
        """Durably write ``(token_id, row)`` pairs as part ``part_key``."""

    @abstractmethod
    def finalize(self, part_keys: Sequence[str]) -> ArtifactResult:
        """Atomically promote the parts, in the given order, to the final artifact."""


PluginFactory = Callable[..., Plugin]
