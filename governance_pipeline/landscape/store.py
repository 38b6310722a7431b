"""``Landscape``: one handle on an audit database — its engine, clock and signing key."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from sqlalchemy import Engine

from governance_pipeline.contracts.clock import SYSTEM_CLOCK, Clock
from governance_pipeline.contracts.settings import Settings
from governance_pipeline.landscape import migrate
from governance_pipeline.landscape.anchors import upgrade_sealing_legacy
from governance_pipeline.landscape.database import create_landscape_engine
from governance_pipeline.landscape.keys import Signer, load_or_create_signer
from governance_pipeline.landscape.sealing import PayloadProtection


@dataclass
class Landscape:
    engine: Engine
    keys_dir: Path
    clock: Clock = field(default=SYSTEM_CLOCK)

    @classmethod
    def open(cls, url: str, keys_dir: Path, *, clock: Clock = SYSTEM_CLOCK,
             upgrade: bool = True) -> Landscape:
        """Open the database at ``url``; a new or outdated database is brought to the head."""
        engine = create_landscape_engine(url)
        if upgrade:
            if migrate.current_revision(engine) != migrate.head_revision():
                upgrade_sealing_legacy(engine, keys_dir)
        else:
            migrate.require_head(engine)
        return cls(engine=engine, keys_dir=keys_dir, clock=clock)

    @classmethod
    def from_settings(cls, settings: Settings, *, clock: Clock = SYSTEM_CLOCK,
                      upgrade: bool = True) -> Landscape:
        return cls.open(settings.db_url, settings.keys_dir, clock=clock, upgrade=upgrade)

    @cached_property
    def signer(self) -> Signer:
        return load_or_create_signer(self.keys_dir)

    @cached_property
    def protection(self) -> PayloadProtection:
        """Sealing and opening of subject payloads (keys derived from a secret in keys_dir)."""
        return PayloadProtection(self.keys_dir)

    def dispose(self) -> None:
        self.engine.dispose()
