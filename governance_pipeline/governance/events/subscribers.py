"""Who receives events: the subscribers file.

The file is YAML at ``$GOVERNANCE_SUBSCRIBERS_FILE`` or, when that is unset,
``$GOVERNANCE_HOME/subscribers.yaml``; no file means no subscribers (events stay in the outbox
and ``governance-pipeline events`` still shows them). Relative paths in it are relative to the
file's directory. Example::

    subscribers:
      - name: audit-log
        kind: jsonl
        path: events.jsonl
      - name: security
        kind: webhook
        url: http://127.0.0.1:8080/hooks/governance
        timeout_s: 5
        headers: {Authorization: "Bearer ..."}
        types: ["ir.*", "approval.*", "policy.violation"]
      - name: marquez
        kind: openlineage
        url: http://127.0.0.1:5000/api/v1/lineage

``types`` takes event types or shell-style patterns (``run.*``); each must match a known type,
so a typo is a configuration error rather than a subscriber that silently receives nothing.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from governance_pipeline.contracts.safe_yaml import load_yaml
from governance_pipeline.contracts.errors import ConfigError, ExitCode, register
from governance_pipeline.contracts.settings import Settings
from governance_pipeline.governance.events.catalog import EVENT_TYPES

SUBSCRIBERS_ENV = "GOVERNANCE_SUBSCRIBERS_FILE"
DEFAULT_FILE = "subscribers.yaml"

SUBSCRIBERS_INVALID = register(
    "GP-EVENT-003", "Invalid subscribers file",
    "Correct the field named in the message; docs/events.md#subscribers lists the kinds (jsonl, "
    "webhook, openlineage) and their options. The file is $GOVERNANCE_SUBSCRIBERS_FILE, else "
    "$GOVERNANCE_HOME/subscribers.yaml.",
    ExitCode.INVALID_INPUT)

#: OpenLineage describes runs, so an openlineage subscriber takes only these types.
OPENLINEAGE_TYPES = frozenset({"run.started", "run.resumed", "run.completed", "run.failed",
                               "run.failed_policy", "run.interrupted", "run.cancelled",
                               "run.abandoned"})

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"


def _http_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an http:// or https:// URL with a host, got {url!r}")
    return url


class _Subscriber(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME, description="Unique; the key of its delivery state.")
    types: tuple[str, ...] | None = Field(
        default=None, description="Event types or patterns (run.*) to receive; default all.")

    @field_validator("types")
    @classmethod
    def _known_types(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for pattern in value or ():
            if not fnmatch.filter(EVENT_TYPES, pattern):
                raise ValueError(f"{pattern!r} matches no event type (see docs/events.md)")
        return value

    def accepted_types(self) -> frozenset[str] | None:
        """The event types this subscriber receives; None means every type, known or not."""
        if self.types is None:
            return None
        return frozenset(t for p in self.types for t in fnmatch.filter(EVENT_TYPES, p))


class JsonlSubscriber(_Subscriber):
    kind: Literal["jsonl"]
    path: Path = Field(description="Appended to: one envelope per line, fsynced per batch.")


class WebhookSubscriber(_Subscriber):
    kind: Literal["webhook"]
    url: str = Field(description="http(s) URL; each event is POSTed as its JSON envelope.")
    timeout_s: float = Field(default=5.0, gt=0, le=120)
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return _http_url(value)


class OpenLineageSubscriber(_Subscriber):
    kind: Literal["openlineage"]
    url: str | None = Field(default=None, description="OpenLineage HTTP endpoint (POST).")
    path: Path | None = Field(default=None, description="Or a file: one RunEvent per line.")
    namespace: str = Field(default="governance-pipeline", min_length=1,
                           description="OpenLineage job namespace; the job name is the pipeline.")
    timeout_s: float = Field(default=5.0, gt=0, le=120)
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        return None if value is None else _http_url(value)

    @model_validator(mode="after")
    def _one_target(self) -> OpenLineageSubscriber:
        if (self.url is None) == (self.path is None):
            raise ValueError("give exactly one of url or path")
        outside = (self.accepted_types() or OPENLINEAGE_TYPES) - OPENLINEAGE_TYPES
        if outside:
            raise ValueError(f"OpenLineage describes runs only; not {sorted(outside)}")
        return self

    def accepted_types(self) -> frozenset[str] | None:
        chosen = super().accepted_types()
        return OPENLINEAGE_TYPES if chosen is None else chosen


Subscriber = Annotated[JsonlSubscriber | WebhookSubscriber | OpenLineageSubscriber,
                       Field(discriminator="kind")]


class SubscribersFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subscribers: list[Subscriber] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> SubscribersFile:
        names = [s.name for s in self.subscribers]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"subscriber names must be unique: {dupes}")
        return self


def subscribers_path(settings: Settings, env: Mapping[str, str] | None = None) -> Path:
    explicit = (os.environ if env is None else env).get(SUBSCRIBERS_ENV)
    return Path(explicit).expanduser().resolve() if explicit else settings.home / DEFAULT_FILE


def parse_subscribers(doc: object, base_dir: Path, *, origin: str = "subscribers") -> list[
        JsonlSubscriber | WebhookSubscriber | OpenLineageSubscriber]:
    """Validate a subscribers document (the parsed YAML); paths resolve against ``base_dir``."""
    try:
        parsed = SubscribersFile.model_validate(doc if doc is not None else {})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{origin}: {where}: {first['msg']}", code=SUBSCRIBERS_INVALID,
                          details={"errors": exc.errors(include_url=False,
                                                        include_context=False)}) from exc
    out = []
    for sub in parsed.subscribers:
        path = getattr(sub, "path", None)
        if path is not None and not path.is_absolute():
            sub = sub.model_copy(update={"path": (base_dir / path).resolve()})
        out.append(sub)
    return out


def load_subscribers(settings: Settings, env: Mapping[str, str] | None = None) -> list[
        JsonlSubscriber | WebhookSubscriber | OpenLineageSubscriber]:
    """The configured subscribers; an absent file means none."""
    path = subscribers_path(settings, env)
    if not path.is_file():
        if (os.environ if env is None else env).get(SUBSCRIBERS_ENV):
            raise ConfigError(f"{SUBSCRIBERS_ENV} names {path}, which is not a file",
                              code=SUBSCRIBERS_INVALID)
        return []
    try:
        doc = load_yaml(path.read_text(encoding="utf-8"), source=str(path))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot be read as YAML: {exc}",
                          code=SUBSCRIBERS_INVALID) from exc
    return parse_subscribers(doc, path.parent, origin=str(path))
