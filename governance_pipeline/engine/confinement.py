"""Where sinks may write: never onto the audit store, a device, or the pipeline's own inputs.

A sink's output path (option ``path``; for a SQL sink, the file of a ``sqlite:`` ``url``) is
checked at validate time, again at run start in every process, and once more just before each
write, always on the *real* path (symlinks resolved), so that a symlink planted or swapped in
after validation is caught when it matters. Refused, each with its own code:

* GP-SINK-006: the Landscape database (and its ``-wal``/``-shm``/``-journal``), the signing key
  directory, the trust file, the Dagster home, the run staging and export directories, and any
  file directly in GOVERNANCE_HOME;
* GP-SINK-007: devices and special files (``/dev``, ``/proc``, ``/sys``, FIFOs, sockets);
* GP-SINK-008: the pipeline file, its source, lookup tables, policy files, and a path another
  sink of the pipeline writes too;
* GP-SINK-009: a path outside the allowed output roots: ``outputs.roots`` of the pipeline and/or
  ``GOVERNANCE_OUTPUT_ROOTS`` (both: the path must be under one of each); neither declared, the
  pipeline's directory tree and GOVERNANCE_HOME.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from governance_pipeline.contracts.errors import ConfigError, ErrorCode, ExitCode, register
from governance_pipeline.contracts.settings import Settings
from governance_pipeline.engine.config import PipelineConfig, TransformNode
from governance_pipeline.landscape.database import sqlite_file

SINK_ONTO_AUDIT_STORE = register(
    "GP-SINK-006", "A sink would write onto the audit store or GOVERNANCE_HOME internals",
    "Point the sink's path at an output directory (e.g. ${GOVERNANCE_HOME}/out/NAME.csv or a "
    "directory next to the pipeline), never at the Landscape database, keys/, the trust file, "
    "the Dagster home, runs/ or exports/, nor at a symlink to any of them.",
    ExitCode.INVALID_INPUT)
SINK_ONTO_SPECIAL_FILE = register(
    "GP-SINK-007", "A sink would write onto a device or special file, or through a swapped symlink",
    "Sinks write regular files: choose a path that is not under /dev, /proc or /sys and is not a "
    "FIFO, socket or device (nor a symlink to one); if the message says the path now "
    "resolves elsewhere, find who changed the output directory during the run, then resume it.",
    ExitCode.INVALID_INPUT)
SINK_ONTO_INPUT = register(
    "GP-SINK-008", "A sink would overwrite a pipeline input or another sink's output",
    "Give every sink its own output path, distinct from the pipeline file, its source, lookup "
    "tables and policy files (symlinks and hard links count as the file they name).",
    ExitCode.INVALID_INPUT)
SINK_OUTSIDE_ROOTS = register(
    "GP-SINK-009", "A sink would write outside the allowed output roots",
    "Write under one of the allowed roots named in the message, or declare the directory in the "
    "pipeline's `outputs: {roots: [...]}` (and in GOVERNANCE_OUTPUT_ROOTS when the operator sets "
    "it); docs/sinks.md#where-sinks-may-write.",
    ExitCode.INVALID_INPUT)

ROOTS_ENV = "GOVERNANCE_OUTPUT_ROOTS"
_SPECIAL_TREES = (Path("/dev"), Path("/proc"), Path("/sys"))
#: GOVERNANCE_HOME's own directories (the user's outputs live in any other subdirectory).
_HOME_INTERNAL_DIRS = ("keys", "dagster", "runs", "exports")
_SQLITE_SIBLINGS = ("-wal", "-shm", "-journal")


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


@dataclass(frozen=True)
class _Guarded:
    real: Path
    tree: bool
    what: str
    identity: tuple[int, int] | None

    def hit(self, real: Path, identity: tuple[int, int] | None) -> bool:
        if real == self.real or (self.tree and self.real in real.parents):
            return True
        return identity is not None and identity == self.identity  # a hard link


def _guarded(path: Path, what: str, *, tree: bool = False) -> _Guarded:
    real = _real(path)
    return _Guarded(real, tree, what, _identity(real))


@dataclass(frozen=True)
class Problem:
    field: str
    message: str
    code: ErrorCode

    def as_dict(self) -> dict[str, str]:
        return {"path": self.field, "problem": self.message, "code": self.code.code}


@dataclass(frozen=True)
class Confinement:
    """The rules for one pipeline in one environment; ``problems`` checks one path."""

    home: Path
    internals: tuple[_Guarded, ...]
    inputs: tuple[_Guarded, ...]
    root_sets: tuple[tuple[str, tuple[Path, ...]], ...]  # (where declared, real roots)

    def problems(self, field: str, path: Path) -> list[Problem]:
        real = _real(path)
        shown = str(path) if real == Path(os.path.abspath(path)) else f"{path} (→ {real})"
        special = self._special(real)
        if special:
            return [Problem(field, f"{shown} {special}", SINK_ONTO_SPECIAL_FILE)]
        identity = _identity(real)
        for guarded in self.internals:
            if guarded.hit(real, identity):
                return [Problem(field, f"{shown} is {guarded.what}", SINK_ONTO_AUDIT_STORE)]
        if real.parent == self.home:
            return [Problem(field, f"{shown} is a file directly in GOVERNANCE_HOME {self.home}, "
                                   "where the product keeps its own files", SINK_ONTO_AUDIT_STORE)]
        for guarded in self.inputs:
            if guarded.hit(real, identity):
                return [Problem(field, f"{shown} is {guarded.what}", SINK_ONTO_INPUT)]
        for origin, roots in self.root_sets:
            if not any(_under(real, root) for root in roots):
                listed = ", ".join(str(r) for r in roots)
                return [Problem(field, f"{shown} is outside the allowed output roots ({origin}: "
                                       f"{listed})", SINK_OUTSIDE_ROOTS)]
        return []

    @staticmethod
    def _special(real: Path) -> str | None:
        for tree in _SPECIAL_TREES:
            if _under(real, tree):
                return f"is under {tree}"
        try:
            mode = os.stat(real).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return None  # nothing there yet (or a file in the way: the write names that)
        except OSError as exc:
            return f"cannot be inspected ({exc.strerror})"
        # A directory in the way is an ordinary, resumable write failure (GP-SINK-002).
        if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
            return None
        kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "a device file")
        return f"is {kind}, not a regular file"


def refusal(problems: list[Problem]) -> ConfigError:
    text = "; ".join(f"{p.field}: {p.message} [{p.code.code}]" for p in problems)
    return ConfigError(f"{len(problems)} sink path problem(s): {text}", code=problems[0].code,
                       details={"problems": [p.as_dict() for p in problems]})


# --- what a pipeline writes and reads ------------------------------------------------------------
def _local_file(options: Mapping[str, Any], base_dir: Path) -> tuple[str, Path] | None:
    """The local file a plugin's options name: ``path``, or the file of a ``sqlite:`` url."""
    raw_path = options.get("path")
    if isinstance(raw_path, str) and raw_path:
        candidate = Path(raw_path).expanduser()
        return "path", candidate if candidate.is_absolute() else base_dir / candidate
    raw_url = options.get("url")
    if isinstance(raw_url, str):
        try:
            url = make_url(raw_url)
        except ArgumentError:
            return None  # the plugin's own option check reports it
        database = url.database
        if url.get_backend_name() == "sqlite" and database and database != ":memory:" \
                and not database.startswith("file:"):
            candidate = Path(database)
            return "url", candidate if candidate.is_absolute() else base_dir / candidate
    return None


def sink_outputs(config: PipelineConfig, base_dir: Path) -> list[tuple[str, str, Path]]:
    """(sink name, field path, output file) of every sink that writes a local file."""
    out = []
    for name, sink in config.sinks.items():
        found = _local_file(sink.options, base_dir)
        if found is not None:
            out.append((name, f"sinks.{name}.options.{found[0]}", found[1]))
    return out


def pipeline_inputs(config: PipelineConfig, pipeline_file: Path) -> list[tuple[Path, str]]:
    base_dir = pipeline_file.parent
    inputs = [(pipeline_file, "the pipeline file itself")]
    source = _local_file(config.source.options, base_dir)
    if source is not None:
        inputs.append((source[1], f"the pipeline's source (source.options.{source[0]})"))
    for i, node in enumerate(config.nodes):
        refs = []
        if isinstance(node, TransformNode):
            refs.append((node.options, f"nodes[{i}].options"))
        function = getattr(node, "function", None)
        if function is not None:
            refs.append((function.options, f"nodes[{i}].function.options"))
        for options, where in refs:
            found = _local_file(options, base_dir)
            if found is not None:
                inputs.append((found[1], f"an input of node {node.id} ({where}.{found[0]}, "
                                         "e.g. a lookup table)"))
    for i, policy_file in enumerate(config.policy_files):
        inputs.append((base_dir / policy_file, f"a policy file (policy_files[{i}])"))
    return inputs


# --- building the rules ------------------------------------------------------------------------
def _internals(settings: Settings, env: Mapping[str, str]) -> list[_Guarded]:
    guarded = []
    db = sqlite_file(settings.db_url)
    if db is not None:
        db = db if db.is_absolute() else Path.cwd() / db
        guarded.append(_guarded(db, f"the Landscape database {db}"))
        guarded += [_guarded(Path(f"{db}{suffix}"), f"the Landscape database's {suffix[1:]} file")
                    for suffix in _SQLITE_SIBLINGS]
    guarded.append(_guarded(settings.keys_dir, "in the signing key directory", tree=True))
    guarded.append(_guarded(settings.trust_file, "the trust file pinning the verify key"))
    if settings.signing_key_file is not None:  # GOVERNANCE_SIGNING_KEY_FILE, and a rotation's
        for suffix in ("", ".next"):            # new key written beside it
            guarded.append(_guarded(Path(f"{settings.signing_key_file}{suffix}"),
                                    "the signing key file (GOVERNANCE_SIGNING_KEY_FILE)"))
    guarded.append(_guarded(settings.dagster_home, "in the Dagster home", tree=True))
    guarded += [_guarded(settings.home / d, f"in GOVERNANCE_HOME's {d}/ directory", tree=True)
                for d in _HOME_INTERNAL_DIRS]
    for variable in ("GOVERNANCE_SUBSCRIBERS_FILE", "GOVERNANCE_LADDERS_FILE"):
        if env.get(variable, "").strip():
            guarded.append(_guarded(Path(env[variable].strip()).expanduser(),
                                    f"the {variable} file"))
    return guarded


def _roots(config: PipelineConfig, pipeline_file: Path, settings: Settings,
           env: Mapping[str, str]) -> list[tuple[str, tuple[Path, ...]]]:
    sets = []
    if config.outputs is not None:
        sets.append(("outputs.roots", tuple(
            _real(pipeline_file.parent / Path(r).expanduser()) for r in config.outputs.roots)))
    declared = [r for r in env.get(ROOTS_ENV, "").split(os.pathsep) if r.strip()]
    if declared:
        sets.append((ROOTS_ENV, tuple(_real(Path(r.strip()).expanduser()) for r in declared)))
    if not sets:
        sets.append(("default: the pipeline's directory and GOVERNANCE_HOME",
                     (_real(pipeline_file.parent), _real(settings.home))))
    return sets


def confinement_for(config: PipelineConfig, pipeline_file: Path, settings: Settings,
                    env: Mapping[str, str] | None = None) -> Confinement:
    env = os.environ if env is None else env
    pipeline_file = Path(os.path.abspath(pipeline_file))
    inputs = [_guarded(path, what) for path, what in pipeline_inputs(config, pipeline_file)]
    return Confinement(_real(settings.home), tuple(_internals(settings, env)), tuple(inputs),
                       tuple(_roots(config, pipeline_file, settings, env)))


def check_sink_paths(config: PipelineConfig, pipeline_file: Path, settings: Settings,
                     env: Mapping[str, str] | None = None) -> Confinement:
    """Refuse (one ConfigError listing every problem) any sink path the rules forbid."""
    rules = confinement_for(config, pipeline_file, settings, env)
    outputs = sink_outputs(config, Path(os.path.abspath(pipeline_file)).parent)
    problems: list[Problem] = []
    seen: dict[Path, str] = {}
    for name, field, path in outputs:
        found = rules.problems(field, path)
        problems += found
        real = _real(path)
        if not found and real in seen:
            problems.append(Problem(field, f"{path} is also the output of sink {seen[real]!r}",
                                    SINK_ONTO_INPUT))
        seen.setdefault(real, name)
    if problems:
        raise refusal(problems)
    return rules


def pinned_path(field: str, path: Path) -> Callable[[Path], None]:
    """A check that ``path`` still resolves where it did now, when the run checked it, and is no
    special file: a sink calls it before each write, so a symlink created or swapped in later
    (in any component) is refused instead of followed."""
    checked = _real(path)

    def recheck(current: Path) -> None:
        real = _real(current)
        if real != checked:
            raise refusal([Problem(field, f"{current} now resolves to {real}, not to {checked} "
                                          "as when the run checked it: a symlink was created or "
                                          "swapped in; refusing to follow it",
                                   SINK_ONTO_SPECIAL_FILE)])
        special = Confinement._special(real)
        if special:
            raise refusal([Problem(field, f"{current} {special}", SINK_ONTO_SPECIAL_FILE)])

    return recheck
