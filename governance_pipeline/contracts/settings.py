"""The environment contract (DESIGN.md §4): where the audit database, payloads and keys live."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from governance_pipeline.contracts.errors import ENV_INVALID, ConfigError


TRUST_FILE_NAME = "trusted_keys.json"
#: The signing private key itself (PKCS#8 PEM), e.g. injected by a secret manager.
SIGNING_KEY_ENV = "GOVERNANCE_SIGNING_KEY"
#: A path to the signing private key file, anywhere (default $GOVERNANCE_HOME/keys/...).
SIGNING_KEY_FILE_ENV = "GOVERNANCE_SIGNING_KEY_FILE"


@dataclass(frozen=True, slots=True)
class Settings:
    home: Path
    db_url: str
    pipelines_dir: Path
    dagster_home: Path
    #: GOVERNANCE_TRUSTED_KEYS: the file pinning the public key(s) ``verify`` trusts.
    trusted_keys_file: Path | None = None
    #: GOVERNANCE_SIGNING_KEY_FILE: the signing private key file, when not under keys/.
    signing_key_file: Path | None = None
    #: GOVERNANCE_SIGNING_KEY: the signing private key itself (never printed).
    signing_key_pem: str | None = field(default=None, repr=False)

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"

    @property
    def trust_file(self) -> Path:
        """Where the trusted verify key is pinned: outside the database and outside keys/."""
        return self.trusted_keys_file or self.home / TRUST_FILE_NAME

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        home = Path(env.get("GOVERNANCE_HOME") or "./.governance").expanduser().resolve()
        db_url = env.get("GOVERNANCE_DB_URL") or f"sqlite:///{home / 'landscape.db'}"
        if "://" not in db_url:
            hint = (f" (did you mean {db_url.replace(':/', ':///', 1)!r}?)"
                    if ":/" in db_url else "")
            raise ConfigError(f"GOVERNANCE_DB_URL is not a database URL: {db_url!r}{hint}",
                              code=ENV_INVALID)
        pipelines = Path(env.get("GOVERNANCE_PIPELINES_DIR") or "./examples/pipelines").resolve()
        dagster_home = Path(env.get("DAGSTER_HOME") or home / "dagster").resolve()
        trusted = env.get("GOVERNANCE_TRUSTED_KEYS")
        key_file = env.get(SIGNING_KEY_FILE_ENV)
        return cls(home=home, db_url=db_url, pipelines_dir=pipelines, dagster_home=dagster_home,
                   trusted_keys_file=Path(trusted).expanduser().resolve() if trusted else None,
                   signing_key_file=Path(key_file).expanduser().resolve() if key_file else None,
                   signing_key_pem=env.get(SIGNING_KEY_ENV) or None)
