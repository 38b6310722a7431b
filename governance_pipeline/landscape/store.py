"""``Landscape``: one handle on an audit database — its engine, clock and signing key."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine

from governance_pipeline.contracts.clock import SYSTEM_CLOCK, Clock
from governance_pipeline.contracts.errors import ConfigError, ExitCode, GovernanceError, register
from governance_pipeline.contracts.settings import Settings
from governance_pipeline.landscape import migrate
from governance_pipeline.landscape.database import (
    create_landscape_engine,
    landscape_url,
    read_snapshot,
    sqlite_file,
)
from governance_pipeline.landscape.keys import KeySource

if TYPE_CHECKING:
    from governance_pipeline.landscape.keys import PublicKey, Signer
    from governance_pipeline.landscape.sealing import PayloadProtection
    from governance_pipeline.landscape.signing_keyring import SigningKeyring
    from governance_pipeline.landscape.trust import TrustAnchors, TrustedKey

# The keyring, the trust file and payload sealing are imported where they are used: a command
# that only reads (``explain``, ``runs``) needs none of them, and the trust file's model alone
# (pydantic) cost it ~0.1 s to import.


LANDSCAPE_MISSING = register(
    "GP-DB-005", "No Landscape at this database URL",
    "Check GOVERNANCE_DB_URL and GOVERNANCE_HOME: they must name the existing audit database "
    "(a mistyped path would be a new, empty one). To start a new Landscape run "
    "`governance-pipeline db upgrade` (or `run`, `demo`), which create it.",
    ExitCode.INVALID_INPUT)


def _refuse_missing(url: str) -> None:
    """A command that reads an existing Landscape must not create one at a mistyped path."""
    path = sqlite_file(url)
    shown = landscape_url(url).render_as_string(hide_password=True)
    if path is None:
        return
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        raise ConfigError(f"no Landscape at {shown}: the SQLite file {path} {what}",
                          code=LANDSCAPE_MISSING, details={"db_url": shown})
    # Read-only and outside the Landscape engine, whose connect pragmas (WAL) would write.
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as conn:
            found = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                                 "name = 'alembic_version'").fetchone()
    except sqlite3.DatabaseError as exc:
        raise ConfigError(f"no Landscape at {shown}: {path} is not a SQLite database ({exc})",
                          code=LANDSCAPE_MISSING, details={"db_url": shown}) from exc
    if found is None:
        raise ConfigError(f"no Landscape at {shown}: the database has no Landscape schema "
                          "(no alembic_version)", code=LANDSCAPE_MISSING,
                          details={"db_url": shown})


def _refuse_schemaless(revision: str | None, url: str) -> None:
    if revision is None:
        shown = landscape_url(url).render_as_string(hide_password=True)
        raise ConfigError(f"no Landscape at {shown}: the database has no Landscape schema "
                          "(no alembic_version)", code=LANDSCAPE_MISSING,
                          details={"db_url": shown})


@dataclass
class Landscape:
    engine: Engine
    keys_dir: Path
    clock: Clock = field(default=SYSTEM_CLOCK)
    #: Where the verify key is pinned (default: next to keys/, i.e. $GOVERNANCE_HOME).
    trust_file: Path | None = None
    #: Where the signing private key is (default keys/ledger_ed25519.pem).
    key_source: KeySource | None = None

    @classmethod
    def open(cls, url: str, keys_dir: Path, *, clock: Clock = SYSTEM_CLOCK,
             upgrade: bool = True, create: bool = True,
             trust_file: Path | None = None, key_source: KeySource | None = None) -> Landscape:
        """Open the database at ``url``; a new or outdated database is brought to the head.

        ``create=False``: the Landscape must exist already (a SQLite file, or a database with
        the Landscape schema); otherwise ``LANDSCAPE_MISSING`` and nothing is created.
        """
        if not create:
            _refuse_missing(url)
        engine = create_landscape_engine(url)
        try:
            revision = migrate.current_revision(engine)
            if not create:
                _refuse_schemaless(revision, url)
        except BaseException:
            engine.dispose()
            raise
        if upgrade:
            if revision != migrate.head_revision():
                # Imported here: a Landscape at the head (every command but the first after an
                # upgrade) never needs the migration and re-sealing machinery.
                from governance_pipeline.landscape.anchors import upgrade_sealing_legacy

                upgrade_sealing_legacy(engine, keys_dir)
        else:
            migrate.require_head(engine)
        return cls(engine=engine, keys_dir=keys_dir, clock=clock, trust_file=trust_file,
                   key_source=key_source)

    @classmethod
    def from_settings(cls, settings: Settings, *, clock: Clock = SYSTEM_CLOCK,
                      upgrade: bool = True, create: bool = True) -> Landscape:
        return cls.open(settings.db_url, settings.keys_dir, clock=clock, upgrade=upgrade,
                        create=create, trust_file=settings.trust_file,
                        key_source=KeySource.of(settings))

    @property
    def trust_path(self) -> Path:
        from governance_pipeline.landscape.trust import default_trust_file

        return self.trust_file or default_trust_file(self.keys_dir)

    @property
    def signing_key_source(self) -> KeySource:
        return self.key_source or KeySource(self.keys_dir)

    @cached_property
    def signer(self) -> Signer:
        """The signing key; refused (GP-KEY-005) when a rotation or revocation ended it."""
        from governance_pipeline.landscape.key_errors import SIGNING_KEY_RETIRED
        from governance_pipeline.landscape.signing_keyring import signing_key_ended
        from governance_pipeline.landscape.trust import load_or_create_pinned_signer

        signer = load_or_create_pinned_signer(self.keys_dir, self.trust_path,
                                              self.signing_key_source)
        with read_snapshot(self.engine) as conn:
            ended = signing_key_ended(conn, signer.public)
        if ended:
            raise GovernanceError(f"the signing key {signer.key_id} at {signer.location} "
                                  f"{ended}", code=SIGNING_KEY_RETIRED,
                                  details={"key_id": signer.key_id})
        return signer

    def use_signer(self, signer: Signer) -> None:
        """Sign with ``signer`` from now on (after a rotation installed it)."""
        self.__dict__["signer"] = signer

    def trust_anchors(self, public_key: PublicKey | None = None,
                      source: Path | None = None) -> TrustAnchors:
        """The keys and revocations verify starts from: ``public_key`` when given (from
        ``source``), else every key pinned in the trust file; the trust file's revocations."""
        from governance_pipeline.landscape.trust import TrustAnchors, explicit_key

        trusted = (explicit_key(public_key, source or Path("-")) if public_key is not None
                   else self.trusted_key())
        return TrustAnchors.of(trusted, self.trust_path if self.trust_path.exists() else None)

    def own_keyring(self) -> SigningKeyring:
        """The keyring as this Landscape's signing key sees it (anchored at the signer, with the
        trust file's revocations): checkpoints are built only from seals it accepts, and bundles
        carry it, so a bundle can always link its seals to the key that signs it."""
        from governance_pipeline.landscape.trust import TrustAnchors, explicit_key

        signer = self.signer
        anchors = TrustAnchors.of(explicit_key(signer.public, Path(signer.location)),
                                  self.trust_path if self.trust_path.exists() else None)
        return self.signing_keyring(anchors=anchors)

    def signing_keyring(self, conn: Connection | None = None,
                        anchors: TrustAnchors | None = None) -> SigningKeyring:
        """The keyring the trust anchors and the ledgered key statements prove (read in
        ``conn``'s snapshot when given)."""
        from governance_pipeline.landscape.signing_keyring import build_keyring, statements_in

        anchors = anchors or self.trust_anchors()
        if conn is None:
            with read_snapshot(self.engine) as own:
                statements = statements_in(own)
        else:
            statements = statements_in(conn)
        return build_keyring(anchors.keys, statements[0], statements[1], anchors.revocations,
                             statements[2])

    def trusted_public_keys(self, anchors: TrustAnchors | None = None) -> list[PublicKey]:
        """Every key the keyring trusts (pinned, or linked to a pinned key by rotations): what a
        checkpoint made before or after a rotation may be signed by."""
        return [e.public for e in self.signing_keyring(anchors=anchors).trusted()]

    def trusted_key(self) -> TrustedKey:
        """The key seals must be made by: the pinned one, never the key file as such."""
        from governance_pipeline.landscape.trust import pinned_key

        if not self.trust_path.exists():
            _ = self.signer  # a home without a key creates (and so pins) its first one now
        return pinned_key(self.trust_path, self.keys_dir)

    @cached_property
    def protection(self) -> PayloadProtection:
        """Sealing and opening of subject payloads (keys derived from a secret in keys_dir)."""
        from governance_pipeline.landscape.sealing import PayloadProtection

        return PayloadProtection(self.keys_dir)

    def dispose(self) -> None:
        self.engine.dispose()
