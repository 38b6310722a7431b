"""Opening the audit database from the command line, with errors a user can act on."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from governance_pipeline.contracts.errors import (
    DATABASE_UNAVAILABLE,
    ENV_INVALID,
    ConfigError,
    OperationalError,
)
from governance_pipeline.contracts.settings import Settings
from governance_pipeline.landscape.store import Landscape


def redact(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


@contextmanager
def database_errors(url: str) -> Iterator[None]:
    """Opening the audit database: a bad URL is configuration (exit 2), a failure is operational."""
    try:
        yield
    except (ArgumentError, ImportError) as exc:
        raise ConfigError(f"GOVERNANCE_DB_URL {redact(url)!r} cannot be used: {exc}",
                          code=ENV_INVALID) from exc
    except DBAPIError as exc:
        raise OperationalError(f"cannot open the audit database {redact(url)}: {exc.orig}",
                               code=DATABASE_UNAVAILABLE) from exc
    except OSError as exc:
        raise OperationalError(f"cannot open the audit database {redact(url)}: {exc}",
                               code=DATABASE_UNAVAILABLE) from exc


@contextmanager
def open_landscape(settings: Settings, *, create: bool = False) -> Iterator[Landscape]:
    """The Landscape of GOVERNANCE_DB_URL. Only the commands that start one (``db upgrade``,
    ``demo``, ``run``, ``validate --record``, ``approvals request``) pass ``create=True``; every
    other command refuses a database that is not a Landscape yet (GP-DB-005), so a mistyped URL
    never yields a new, empty Landscape that verifies clean."""
    with database_errors(settings.db_url):
        landscape = Landscape.from_settings(settings, create=create)
    try:
        yield landscape
    finally:
        landscape.dispose()
