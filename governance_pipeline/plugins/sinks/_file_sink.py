"""The part/promote protocol shared by the file sinks (CSV, JSON Lines, Parquet).

Layout next to the output ``<path>``::

    <path>.parts/<part_key>.<ext>   one durable file per chunk (rewriting a key replaces it)
    <path>.parts/_schema.<suffix>   the column list / schema, fixed once for all processes
    <path>                          written only by finalize, by atomic rename

``finalize`` builds the output from exactly the listed parts into a hidden temporary, fsyncs and
renames it, then removes the parts directory in one rename. A crash at any point leaves either the
parts (finalize is simply redone, producing the same bytes) or the finished output with no parts
(finalize describes the output it already produced).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel

from governance_pipeline.contracts.errors import SINK_PART_MISSING
from governance_pipeline.engine.confinement import pinned_path
from governance_pipeline.engine.plugin_api import ArtifactResult, PartResult, Row, Sink
from governance_pipeline.plugins.sinks import _durable as durable
from governance_pipeline.plugins.sinks._common import (
    SinkError,
    check_part_key,
    parse_options,
    resolve_path,
)


class FileSink(Sink):
    extension: ClassVar[str]
    schema_suffix: ClassVar[str] = "json"
    Options: ClassVar[type[BaseModel]]
    def __init__(self, options: Mapping[str, Any], *, base_dir: Path, sink_name: str) -> None:
        super().__init__(options, base_dir=base_dir, sink_name=sink_name)
        self.config: Any = parse_options(self.Options, options, sink_name=sink_name,
                                         plugin=self.name)
        self.path = resolve_path(base_dir, self.config.path)
        self.parts_dir = self.path.with_name(self.path.name + ".parts")
        self.schema_file = self.parts_dir / f"_schema.{self.schema_suffix}"
        # The run checked this path's real location just before building its sinks
        # (engine.confinement); each write re-checks it, so a symlink swapped in meanwhile is
        # refused rather than followed.
        self.path_guard: Callable[[Path], None] = pinned_path(
            f"sinks.{sink_name}.options.path", self.path)

    # --- what each format provides ------------------------------------------------------------
    @abstractmethod
    def _write_part_file(self, tmp: Path, part_key: str,
                         rows: Sequence[tuple[str, Row]]) -> int:
        """Write the rows to the fresh file ``tmp``; return how many were written."""

    @abstractmethod
    def _assemble(self, tmp: Path, parts: Sequence[Path]) -> int:
        """Build the final output at ``tmp`` from the parts, in order; return the row count."""

    @abstractmethod
    def _count_rows(self, final: Path) -> int:
        """Rows in an output this sink finalized earlier (its parts are gone)."""

    # --- the protocol ---------------------------------------------------------------------------
    def part_path(self, part_key: str) -> Path:
        return self.parts_dir / f"{check_part_key(part_key)}.{self.extension}"

    def write_part(self, part_key: str, rows: Sequence[tuple[str, Row]]) -> PartResult:
        target = self.part_path(part_key)
        self._check_path()
        with self._io(f"write part {part_key} to {target}"):
            durable.ensure_dir(self.parts_dir)
            # A rewrite means any earlier attempt at this key is dead: drop its temporaries.
            for stale in self.parts_dir.glob(durable.temp_glob(target)):
                stale.unlink(missing_ok=True)
            with durable.atomic_target(target) as tmp:
                count = self._write_part_file(tmp, part_key, rows)
            size = target.stat().st_size
        return PartResult(part_key=part_key, rows=count, size_bytes=size)

    def finalize(self, part_keys: Sequence[str]) -> ArtifactResult:
        paths = [self.part_path(key) for key in part_keys]
        self._check_path()
        with self._io(f"finalize {self.path}"):
            durable.purge_trash(self.parts_dir)
            durable.purge_trash(self.path)
            if paths and not self.parts_dir.is_dir():
                return self._finalized_already(part_keys)
            missing = [key for key, path in zip(part_keys, paths, strict=True)
                       if not path.is_file()]
            if missing:
                raise SinkError(
                    f"sink {self.sink_name!r}: cannot finalize {self.path}: part(s) "
                    f"{', '.join(missing)} missing from {self.parts_dir}",
                    code=SINK_PART_MISSING, details={"missing": missing})
            durable.ensure_dir(self.path.parent)
            with durable.atomic_target(self.path) as tmp:
                rows = self._assemble(tmp, paths)
                digest, size = durable.file_digest(tmp)
            durable.remove_tree_atomically(self.parts_dir)
        return self._artifact(digest, size, rows)

    def _check_path(self) -> None:
        self.path_guard(self.path)

    def discard_parts(self) -> None:
        """Forget every part and the stored schema: for a fresh run, never for a resume.

        Not part of the plugin API yet: without it a fresh run inherits the column list a
        crashed earlier run stored in the parts directory.
        """
        with self._io(f"remove {self.parts_dir}"):
            durable.purge_trash(self.parts_dir)
            durable.remove_tree_atomically(self.parts_dir)
        self._forget_schema()

    def _forget_schema(self) -> None:
        """Drop the schema held in memory (formats that keep one override this)."""

    def _finalized_already(self, part_keys: Sequence[str]) -> ArtifactResult:
        if not self.path.is_file():
            raise SinkError(
                f"sink {self.sink_name!r}: cannot finalize {self.path}: neither the parts "
                f"directory {self.parts_dir} nor a finished output exists "
                f"({len(part_keys)} part(s) expected)", code=SINK_PART_MISSING)
        digest, size = durable.file_digest(self.path)
        return self._artifact(digest, size, self._count_rows(self.path))

    def _artifact(self, digest: str, size: int, rows: int) -> ArtifactResult:
        return ArtifactResult(artifact_type=self.name, path_or_uri=str(self.path),
                              content_hash=digest, size_bytes=size, row_count=rows)

    # --- the durable schema ------------------------------------------------------------------
    def _read_schema_bytes(self) -> bytes | None:
        with self._io(f"read {self.schema_file}"):
            try:
                return self.schema_file.read_bytes()
            except FileNotFoundError:
                return None

    def _adopt_schema_bytes(self, data: bytes) -> bytes:
        """Persist ``data`` as the schema unless one exists; return the schema in force."""
        with self._io(f"write {self.schema_file}"):
            durable.ensure_dir(self.parts_dir)
            if durable.create_once(self.schema_file, data):
                return data
            return self.schema_file.read_bytes()

    def _replace_schema_bytes(self, data: bytes) -> None:
        with self._io(f"write {self.schema_file}"):
            durable.ensure_dir(self.parts_dir)
            durable.replace_bytes(self.schema_file, data)

    @contextmanager
    def _io(self, action: str) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            raise SinkError(f"sink {self.sink_name!r} ({self.name}): cannot {action}: {exc}",
                            details={"sink": self.sink_name, "path": str(self.path)}) from exc
