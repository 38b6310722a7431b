"""Which surface (cli, dagster, api) the current operator actions are taken through.

Kept apart from the operator log (``governance.operator_log``, which reads it) so that the command
line can set it without importing the Landscape: ``governance-pipeline --help`` loads no more
than this.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from governance_pipeline.contracts.operator_records import OperatorSurface

_SURFACE: ContextVar[OperatorSurface] = ContextVar("operator_surface", default=OperatorSurface.API)


def current_surface() -> OperatorSurface:
    """The surface of the innermost ``acting_via`` block, ``api`` outside any."""
    return _SURFACE.get()


@contextmanager
def acting_via(surface: OperatorSurface) -> Iterator[None]:
    """Record the actions taken inside the block as made through ``surface``."""
    reset = _SURFACE.set(OperatorSurface(surface))
    try:
        yield
    finally:
        _SURFACE.reset(reset)
