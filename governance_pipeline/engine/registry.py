"""Finding plugins by name through entry points (built-ins register the same way as user code)."""

from __future__ import annotations

from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import TypeVar

from governance_pipeline.contracts.errors import ConfigError, register, ExitCode
from governance_pipeline.engine.plugin_api import BatchFunction, Plugin, Sink, Source, Transform

UNKNOWN_PLUGIN = register(
    "GP-CONFIG-010", "Unknown plugin",
    "Use one of the plugins listed in the message, or install the package that provides it "
    "(it must register an entry point in the named group).",
    ExitCode.INVALID_INPUT)

GROUPS: dict[type[Plugin], str] = {
    Source: "governance_pipeline.sources",
    Transform: "governance_pipeline.transforms",
    BatchFunction: "governance_pipeline.batch_functions",
    Sink: "governance_pipeline.sinks",
}

P = TypeVar("P", bound=Plugin)


@cache
def available(group: str) -> dict[str, str]:
    """name → 'module:attr' for every plugin registered in ``group``."""
    return {ep.name: ep.value for ep in entry_points(group=group)}


def plugin_class(kind: type[P], name: str, *, where: str) -> type[P]:
    group = GROUPS[kind]
    eps = {ep.name: ep for ep in entry_points(group=group)}
    if name not in eps:
        known = ", ".join(sorted(eps)) or "none"
        raise ConfigError(f"{where}: unknown {kind.__name__.lower()} plugin '{name}' "
                          f"(available: {known})", code=UNKNOWN_PLUGIN,
                          details={"path": where, "group": group})
    cls = eps[name].load()
    if not (isinstance(cls, type) and issubclass(cls, kind)):
        raise ConfigError(f"{where}: entry point '{name}' in {group} is not a {kind.__name__}",
                          code=UNKNOWN_PLUGIN, details={"path": where})
    return cls


@cache
def _entry_points(group: str) -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=group)}


def plugin_distribution(kind: type[Plugin], name: str) -> tuple[str | None, str | None]:
    """(distribution, version) that registers plugin ``name``; (None, None) if none does."""
    ep = _entry_points(GROUPS[kind]).get(name)
    dist = getattr(ep, "dist", None)
    if dist is None:
        return None, None
    return dist.metadata["Name"], dist.version
