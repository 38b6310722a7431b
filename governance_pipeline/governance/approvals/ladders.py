"""Approval ladders: named sequences of stages, each with its approver role, approvers, quorum
and SLA.

A built-in catalog covers the common cases; ``$GOVERNANCE_LADDERS_FILE`` (YAML, ``ladders:``
mapping name → ``{stages: [...]}``) adds ladders or replaces built-ins of the same name. The
built-in approver names are placeholders: a deployment names its real approvers in that file.
A request stores the ladder it was made under (``approvals.ladder_json``), so a later change of
the file never changes who may decide an open request.

A stage may name each approver's Ed25519 public key (``keys: {approver: "ssh-ed25519 AAAA..."}``,
OpenSSH or PEM). A ladder whose approvers have keys requires signed decisions (``signatures:
required``, the default then); ``signatures: unsigned`` is the documented demo mode, and so is a
ladder without keys. The stored ladder keeps the keys, so bundles can check signatures offline.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from governance_pipeline.contracts.errors import ConfigError, ExitCode, GovernanceError, register
from governance_pipeline.contracts.safe_yaml import load_yaml
from governance_pipeline.governance.approvals.decision_keys import load_public_key

LADDERS_ENV = "GOVERNANCE_LADDERS_FILE"

LADDERS_INVALID = register(
    "GP-APPROVAL-015", "Invalid approval ladder configuration",
    "Correct the ladder named in the message in $GOVERNANCE_LADDERS_FILE (docs/approvals.md"
    "#approval-ladders): every stage needs a name, a role, at least `quorum` approvers and a "
    "positive sla_seconds; `governance-pipeline approvals request --ladder` names a known ladder.",
    ExitCode.INVALID_INPUT)

_Name = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.@:-]+$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StageSpec(_Model):
    """One rung: ``quorum`` of ``approvers`` acting for ``role`` must approve within the SLA."""

    name: _Name
    role: _Name
    approvers: list[_Name] = Field(min_length=1)
    quorum: int = Field(default=1, ge=1)
    sla_seconds: int = Field(default=86_400, gt=0)
    #: approver → Ed25519 public key (OpenSSH ``ssh-ed25519 AAAA... comment`` line, or PEM)
    keys: dict[_Name, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _keys_of_listed_approvers(self) -> StageSpec:
        for name, text in self.keys.items():
            if name not in self.approvers:
                raise ValueError(f"stage '{self.name}' lists a key for '{name}', who is not "
                                 "one of its approvers")
            try:
                load_public_key(text)
            except GovernanceError as exc:
                raise ValueError(f"stage '{self.name}', key of '{name}': {exc}") from None
        return self

    @model_validator(mode="after")
    def _quorum_reachable(self) -> StageSpec:
        if len(set(self.approvers)) != len(self.approvers):
            raise ValueError(f"stage '{self.name}' lists an approver twice")
        if self.quorum > len(self.approvers):
            raise ValueError(f"stage '{self.name}' needs a quorum of {self.quorum} but has only "
                             f"{len(self.approvers)} approver(s)")
        return self


SignatureMode = Literal["required", "unsigned"]


class LadderSpec(_Model):
    stages: list[StageSpec] = Field(min_length=1)
    #: None: ``required`` when any approver has a key, else ``unsigned``
    signatures: SignatureMode | None = None

    @property
    def signature_mode(self) -> SignatureMode:
        if self.signatures is not None:
            return self.signatures
        return "required" if any(s.keys for s in self.stages) else "unsigned"

    @model_validator(mode="after")
    def _signers_have_keys(self) -> LadderSpec:
        if self.signature_mode == "required":
            missing = [f"{s.name}/{a}" for s in self.stages for a in s.approvers
                       if a not in s.keys]
            if missing:
                raise ValueError("signatures: required, but these approvers have no key: "
                                 + ", ".join(missing))
        return self

    def stored(self, name: str) -> dict[str, Any]:
        """The ladder as a request stores it (``approvals.ladder_json``) and bundles copy it."""
        return {"name": name, "signatures": self.signature_mode,
                "stages": [s.model_dump() for s in self.stages]}

    @model_validator(mode="after")
    def _unique_stage_names(self) -> LadderSpec:
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError("stage names must be unique within a ladder")
        return self


class LaddersFile(_Model):
    ladders: dict[_Name, LadderSpec]


def _stage(name: str, role: str, approvers: list[str], sla_hours: int) -> StageSpec:
    return StageSpec(name=name, role=role, approvers=approvers, quorum=1,
                     sla_seconds=sla_hours * 3600)


BUILTIN_LADDERS: dict[str, LadderSpec] = {
    "pipeline_tier2": LadderSpec(stages=[
        _stage("data_owner", "data_owner", ["data-owner"], 24),
        _stage("compliance", "compliance", ["compliance-officer"], 24)]),
    "pipeline_tier3": LadderSpec(stages=[
        _stage("data_owner", "data_owner", ["data-owner"], 24),
        _stage("compliance", "compliance", ["compliance-officer"], 24),
        _stage("security", "security", ["security-officer"], 24)]),
    "export": LadderSpec(stages=[
        _stage("compliance", "compliance", ["compliance-officer"], 24),
        _stage("security", "security", ["security-officer"], 24)]),
}


class LadderCatalog:
    """The ladders a service may use, by name."""

    def __init__(self, ladders: Mapping[str, LadderSpec]) -> None:
        self._ladders = dict(ladders)

    def names(self) -> list[str]:
        return sorted(self._ladders)

    def get(self, name: str) -> LadderSpec:
        try:
            return self._ladders[name]
        except KeyError:
            raise ConfigError(f"unknown approval ladder '{name}' (known: "
                              f"{', '.join(self.names())})", code=LADDERS_INVALID) from None

    @staticmethod
    def default_for(subject_type: str, risk_tier: int | None = None) -> str:
        """The ladder a subject goes through when the request names none."""
        if subject_type == "export":
            return "export"
        return "pipeline_tier3" if (risk_tier or 0) >= 3 else "pipeline_tier2"


def parse_ladders(data: Any, *, source: str) -> dict[str, LadderSpec]:
    try:
        return dict(LaddersFile.model_validate(data).ladders)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{source}: {where}: {first['msg']}", code=LADDERS_INVALID) from exc


def load_ladders(path: Path | None = None,
                 env: Mapping[str, str] | None = None) -> LadderCatalog:
    """Built-in ladders, overridden by ``path`` or else by ``$GOVERNANCE_LADDERS_FILE``."""
    if path is None:
        configured = (os.environ if env is None else env).get(LADDERS_ENV, "").strip()
        path = Path(configured) if configured else None
    ladders = dict(BUILTIN_LADDERS)
    if path is not None:
        try:
            data = load_yaml(path.read_text(encoding="utf-8"), source=str(path))
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read approval ladders file {path}: {exc}",
                              code=LADDERS_INVALID) from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"approval ladders file {path} is not valid YAML: {exc}",
                              code=LADDERS_INVALID) from exc
        ladders.update(parse_ladders(data, source=str(path)))
    return LadderCatalog(ladders)
