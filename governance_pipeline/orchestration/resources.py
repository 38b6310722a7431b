"""The Landscape as a Dagster resource.

Nothing is read from the environment when the resource is declared: ``db_url`` and ``home`` fall
back to the environment contract (``GOVERNANCE_DB_URL``, ``GOVERNANCE_HOME``, DESIGN.md §4) when
a step first uses the resource, so the code location loads on a machine without an audit store
and every run process resolves the same settings the command line would.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field, PrivateAttr

from governance_pipeline.contracts.settings import Settings
from governance_pipeline.landscape.store import Landscape


def pipeline_env(settings: Settings) -> dict[str, str]:
    return {**os.environ, "GOVERNANCE_HOME": str(settings.home)}


class LandscapeResource(ConfigurableResource):  # type: ignore[misc]
    """Where the audit trail lives; one database handle per run process, disposed at its end."""

    db_url: str | None = Field(
        default=None, description="SQLAlchemy URL of the Landscape; default GOVERNANCE_DB_URL, "
                                  "else sqlite under the home.")
    home: str | None = Field(
        default=None, description="GOVERNANCE_HOME (keys, payloads, staged chunks, sink "
                                  "outputs); default the environment's, else ./.governance.")

    _landscape: Landscape | None = PrivateAttr(default=None)

    def settings(self) -> Settings:
        env = dict(os.environ)
        if self.home:
            env["GOVERNANCE_HOME"] = self.home
        if self.db_url:
            env["GOVERNANCE_DB_URL"] = self.db_url
        return Settings.from_env(env)

    def pipeline_env(self) -> dict[str, str]:
        """The environment pipeline files are loaded with: ``${GOVERNANCE_HOME}`` is this
        resource's resolved home, as on the command line, so a run and its resume hash the same
        configuration whoever launched them."""
        return pipeline_env(self.settings())

    def landscape(self) -> Landscape:
        """The Landscape of this process, opened (and migrated if new) on first use."""
        if self._landscape is None:
            self._landscape = Landscape.from_settings(self.settings())
        return self._landscape

    @contextmanager
    def open(self) -> Iterator[Landscape]:
        """A Landscape outside a run (sensors, schedules): disposed when the block ends."""
        landscape = Landscape.from_settings(self.settings())
        try:
            yield landscape
        finally:
            landscape.dispose()

    def staging_dir(self, run_id: str) -> Path:
        return self.settings().home / "runs" / run_id / "chunks"

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        if self._landscape is not None:
            self._landscape.dispose()
            self._landscape = None


#: The one Landscape resource of a code location: every pipeline component and the catalog bind
#: this same object, so Dagster merges their definitions (it refuses two different resources
#: under one key).
SHARED_LANDSCAPE = LandscapeResource()
