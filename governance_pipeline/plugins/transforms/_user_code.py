"""Loading a user's Python function (``package.module:callable``) and telling which code it is.

Search order: the directories of ``options.path`` (relative to the pipeline file), then the
pipeline file's own directory, then the environment (``sys.path``). Modules found next to a
pipeline are imported under their own name, so the function's own imports (``from
claims_code import helpers``) work as in any project; two pipeline directories that ship a
package of the same name replace each other's modules in ``sys.modules`` (each loaded function
keeps the module it was loaded from). A module whose source file changed since it was imported is
imported afresh, so the identity recorded (the file's SHA-256) is always that of the code the run
executes.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import inspect
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib.metadata import packages_distributions, version
from pathlib import Path
from types import ModuleType
from typing import Any

from governance_pipeline.contracts.errors import (
    PYTHON_FUNCTION_SIGNATURE,
    PYTHON_FUNCTION_UNLOADABLE,
    ConfigError,
)
from governance_pipeline.contracts.hashing import file_sha256
from governance_pipeline.engine.plugin_api import FunctionIdentity

#: (module name → (source sha256, directory it was found in)) of the modules this loader imported.
_IMPORTED: dict[str, tuple[str, str | None]] = {}


@dataclass(frozen=True, slots=True)
class LoadedFunction:
    function: Callable[..., Any]
    identity: FunctionIdentity


def _fail(plugin: str, message: str, *, code: Any = PYTHON_FUNCTION_UNLOADABLE,
          option: str = "function") -> ConfigError:
    return ConfigError(f"{plugin}: options.{option}: {message}", code=code,
                       details={"plugin": plugin, "problems": [f"options.{option}: {message}"]})


def _local_origin(top: str, dirs: Sequence[Path]) -> str | None:
    """The directory among ``dirs`` that holds the top-level module ``top``, if any."""
    for directory in dirs:
        if importlib.machinery.PathFinder.find_spec(top, [str(directory)]) is not None:
            return str(directory)
    return None


def _forget(top: str) -> None:
    for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
        del sys.modules[name]
        _IMPORTED.pop(name, None)


def _import(plugin: str, module_name: str, dirs: Sequence[Path]) -> tuple[ModuleType, str | None]:
    top = module_name.partition(".")[0]
    origin = _local_origin(top, dirs)
    loaded = sys.modules.get(module_name)
    if loaded is not None:
        seen = _IMPORTED.get(module_name)
        file = getattr(loaded, "__file__", None)
        if seen is None:
            if origin is not None and not _is_under(file, origin):
                raise _fail(plugin, f"module {module_name!r} next to the pipeline ({origin}) has "
                                    f"the name of a module already imported from {file}: "
                                    "rename the package")
        elif seen[1] != origin or (file is not None and Path(file).is_file()
                                   and file_sha256(file) != seen[0]):
            # Another pipeline's module of the same name, or this one edited since its import.
            _forget(top)
    if origin is not None:
        sys.path.insert(0, origin)
    try:
        importlib.invalidate_caches()
        module = importlib.import_module(module_name)
    finally:
        if origin is not None:
            sys.path.remove(origin)
    file = getattr(module, "__file__", None)
    if file is not None and Path(file).is_file():
        _IMPORTED[module_name] = (file_sha256(file), origin)
    return module, origin


def _is_under(file: str | None, directory: str) -> bool:
    return file is not None and Path(file).resolve().is_relative_to(Path(directory).resolve())


@cache
def _distributions() -> dict[str, list[str]]:
    return packages_distributions()


def _distribution(module_name: str, origin: str | None) -> tuple[str | None, str | None]:
    if origin is not None:  # found next to the pipeline: part of no installed distribution
        return None, None
    names = _distributions().get(module_name.partition(".")[0])
    if not names:
        return None, None
    return names[0], version(names[0])


def load_function(plugin: str, spec: str, *, base_dir: Path,
                  extra_dirs: Sequence[str] = ()) -> LoadedFunction:
    """Import ``spec`` (``package.module:callable``) or raise ConfigError with the fix."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise _fail(plugin, f"{spec!r} is not package.module:callable "
                            "(e.g. claims_code.rules:classify_claim)")
    dirs = [(base_dir / d).resolve() for d in extra_dirs] + [base_dir.resolve()]
    missing = [str(d) for d in dirs[:len(extra_dirs)] if not d.is_dir()]
    if missing:
        raise _fail(plugin, f"directory {missing[0]} does not exist (paths are relative to "
                            "the pipeline file)", option="path")
    try:
        module, origin = _import(plugin, module_name, dirs)
    except ConfigError:
        raise
    except ModuleNotFoundError as exc:
        where = ", ".join(str(d) for d in dirs)
        raise _fail(plugin, f"cannot import module {module_name!r} ({exc}); searched {where} "
                            "and the environment") from None
    except Exception as exc:  # the module itself failed while importing: its error, its place
        raise _fail(plugin, f"importing module {module_name!r} raised "
                            f"{type(exc).__name__}: {exc}") from None
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise _fail(plugin, f"module {module_name!r} ({getattr(module, '__file__', '?')}) "
                                f"has no attribute {attr!r}")
        target = getattr(target, part)
    if not callable(target):
        raise _fail(plugin, f"{spec} is a {type(target).__name__}, not a callable",
                    code=PYTHON_FUNCTION_SIGNATURE)
    file = getattr(module, "__file__", None)
    if file is None or not Path(file).is_file():
        raise _fail(plugin, f"module {module_name!r} has no source file to identify it by "
                            "(a built-in or namespace module cannot be a transform's code)")
    source = Path(file).resolve()
    digest = _IMPORTED.get(module_name, (None,))[0] or file_sha256(source)
    dist, dist_version = _distribution(module_name, origin)
    shown = source.relative_to(base_dir.resolve()) if source.is_relative_to(base_dir.resolve()) \
        else source
    return LoadedFunction(target, FunctionIdentity(f"{module_name}:{attr}", str(shown), digest,
                                                   dist, dist_version))


_FRAME_NAMES = {"DataFrame", "pd.DataFrame", "pandas.DataFrame",
                "pandas.core.frame.DataFrame"}
_ROW_NAMES = {"dict", "Row", "Mapping", "dict[str, Any]", "dict[str, object]",
              "Mapping[str, Any]"}


def _annotation_name(annotation: Any) -> str | None:
    if annotation is inspect.Parameter.empty:
        return None
    if isinstance(annotation, str):
        return annotation.replace(" ", "")
    module = getattr(annotation, "__module__", "")
    name = getattr(annotation, "__qualname__", None) or str(annotation)
    if module.startswith("pandas") and name == "DataFrame":
        return "pandas.DataFrame"
    return str(annotation).replace("typing.", "") if not isinstance(annotation, type) else name


def check_signature(plugin: str, loaded: LoadedFunction, *, takes_frame: bool) -> None:
    """One positional argument, and an annotation (if any) that matches the mode."""
    fn, name = loaded.function, loaded.identity.qualified_name
    if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
        raise _fail(plugin, f"{name} is async; transforms are plain functions",
                    code=PYTHON_FUNCTION_SIGNATURE)
    if inspect.isgeneratorfunction(fn):
        raise _fail(plugin, f"{name} is a generator function; return a "
                            f"{'DataFrame' if takes_frame else 'dict'} instead",
                    code=PYTHON_FUNCTION_SIGNATURE)
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # some C callables have no signature: nothing to check before the run
    try:
        bound = signature.bind(object())
    except TypeError:
        shape = "(df: pandas.DataFrame) -> pandas.DataFrame" if takes_frame \
            else "(row: dict) -> dict"
        raise _fail(plugin, f"{name}{signature} cannot be called with one argument; "
                            f"it must look like {name.partition(':')[2]}{shape}",
                    code=PYTHON_FUNCTION_SIGNATURE) from None
    first = next(iter(bound.arguments))
    annotation = _annotation_name(signature.parameters[first].annotation)
    if annotation is None:
        return
    if takes_frame and annotation in _ROW_NAMES:
        raise _fail(plugin, f"{name} takes a row ({annotation}) but the node passes a "
                            "DataFrame: use mode: row", code=PYTHON_FUNCTION_SIGNATURE)
    if not takes_frame and annotation in _FRAME_NAMES:
        raise _fail(plugin, f"{name} takes a DataFrame but the node passes one row (dict): "
                            "use mode: dataframe", code=PYTHON_FUNCTION_SIGNATURE)
