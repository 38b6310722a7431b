"""The pipeline definition (YAML) as pydantic models, and its loading with precise errors.

Wiring is explicit and by name. The source and every node send their successes to a *target*:
a sink name or a channel name. A channel is consumed by exactly one node (its ``input``, or one
of a coalesce's ``branches``). Errors go to ``on_error`` (a sink, or ``discard``); invalid source
rows go to ``on_invalid`` (a sink, or ``discard``). ``graph.py`` checks that the names connect.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from governance_pipeline.contracts.safe_yaml import load_yaml
from governance_pipeline.contracts.data_protection import parse_days
from governance_pipeline.contracts.errors import CONFIG_INVALID, ConfigError
from governance_pipeline.engine.row_schema import RowSchema

DISCARD = "discard"
_NAME = r"^[A-Za-z_][A-Za-z0-9_\-]{0,63}$"
Name = Annotated[str, Field(pattern=_NAME)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceConfig(_Model):
    plugin: str
    options: dict[str, Any] = Field(default_factory=dict)
    row_schema: RowSchema | None = Field(default=None, alias="schema")
    on_success: Name
    on_invalid: Name = DISCARD


class PluginRef(_Model):
    plugin: str
    options: dict[str, Any] = Field(default_factory=dict)


class _NodeBase(_Model):
    id: Name
    on_error: Name = DISCARD
    #: Ids of policies (from the pipeline's policy_files) evaluated on this node's output.
    policies: list[str] = Field(default_factory=list)


class TransformNode(_NodeBase):
    kind: Literal["transform"]
    plugin: str
    options: dict[str, Any] = Field(default_factory=dict)
    input: Name
    on_success: Name


class Route(_Model):
    when: str
    to: Name | None = None
    fork: list[Name] | None = None

    @model_validator(mode="after")
    def _one_action(self) -> Route:
        if (self.to is None) == (self.fork is None):
            raise ValueError("a route has exactly one of 'to' (a sink or channel) or 'fork' (channels)")
        if self.fork is not None and len(set(self.fork)) != len(self.fork):
            raise ValueError("fork branches must be distinct")
        if self.fork is not None and len(self.fork) < 2:
            raise ValueError("a fork needs at least two branches")
        return self


class GateNode(_NodeBase):
    kind: Literal["gate"]
    input: Name
    routes: list[Route] = Field(min_length=1)
    default: Name

    @property
    def targets(self) -> list[str]:
        out: list[str] = []
        for route in self.routes:
            out.extend(route.fork or [route.to])  # type: ignore[list-item]
        return [*out, self.default]


class CoalesceNode(_NodeBase):
    kind: Literal["coalesce"]
    branches: list[Name] = Field(min_length=2)
    policy: Literal["require_all", "quorum", "best_effort", "first"] = "require_all"
    quorum: int | None = Field(default=None, ge=1)
    timeout_seconds: float | None = Field(default=None, gt=0)
    merge: Literal["union", "nested", "select"] = "union"
    select_branch: Name | None = None
    on_success: Name

    @model_validator(mode="after")
    def _policy_args(self) -> CoalesceNode:
        if self.policy == "quorum" and (self.quorum is None or self.quorum > len(self.branches)):
            raise ValueError("policy 'quorum' needs 'quorum' between 1 and the number of branches")
        if self.policy == "best_effort" and self.timeout_seconds is None:
            raise ValueError("policy 'best_effort' needs 'timeout_seconds'")
        if self.merge == "select" and self.select_branch not in self.branches:
            raise ValueError("merge 'select' needs 'select_branch' naming one of 'branches'")
        return self


class Trigger(_Model):
    count: int | None = Field(default=None, ge=1)
    timeout_seconds: float | None = Field(default=None, gt=0)
    condition: str | None = None
    end_of_source: bool = True

    @model_validator(mode="after")
    def _some_trigger(self) -> Trigger:
        if not (self.count or self.timeout_seconds or self.condition or self.end_of_source):
            raise ValueError("a trigger needs at least one of count, timeout_seconds, condition, "
                             "end_of_source")
        return self


class AggregationNode(_NodeBase):
    kind: Literal["aggregation"]
    input: Name
    trigger: Trigger = Field(default_factory=Trigger)
    output: Literal["passthrough", "transform"] = "passthrough"
    function: PluginRef | None = None
    on_success: Name

    @model_validator(mode="after")
    def _function_for_transform(self) -> AggregationNode:
        if (self.output == "transform") != (self.function is not None):
            raise ValueError("output 'transform' needs a 'function'; 'passthrough' takes none")
        if not self.trigger.end_of_source:
            # Without it, tokens left in a partial batch would stay buffered forever.
            raise ValueError("trigger.end_of_source cannot be false: the last partial batch must flush")
        return self


NodeConfig = Annotated[TransformNode | GateNode | CoalesceNode | AggregationNode,
                       Field(discriminator="kind")]


class SinkConfig(_Model):
    plugin: str
    options: dict[str, Any] = Field(default_factory=dict)
    on_reject: Name | None = None
    #: The destination is outside the organisation (a partner's database, a shared bucket):
    #: raises the pipeline's risk tier, so a run needs an approval.
    external: bool = False


class RetentionConfig(_Model):
    """How long this pipeline's audit data is kept (docs/data_protection.md): ``payloads``,
    the contents of its payloads; ``runs``, its runs as a whole (then tombstoned). Unset: the
    GOVERNANCE_RETENTION_* default, else kept until purged by hand."""

    payloads: str | None = None
    runs: str | None = None

    @field_validator("payloads", "runs")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_days(value, where="retention")
            except ConfigError as exc:  # pydantic reports a ValueError with its field path
                raise ValueError(exc.message.removeprefix("retention: ")) from exc
        return value


class OutputsConfig(_Model):
    #: Directories (relative to the pipeline file) that every sink output must lie in; they
    #: replace the default roots (docs/sinks.md#where-sinks-may-write).
    roots: list[str] = Field(min_length=1)


class PipelineConfig(_Model):
    name: Name
    tenant: str = Field(default="default", min_length=1, max_length=128)
    description: str = ""
    chunk_size: int = Field(default=1000, ge=1, le=100_000)
    source: SourceConfig
    nodes: list[NodeConfig] = Field(default_factory=list)
    sinks: dict[Name, SinkConfig] = Field(min_length=1)
    #: Policy YAML files (paths relative to the pipeline file) whose policies this run may use.
    policy_files: list[str] = Field(default_factory=list)
    #: Ids of policies evaluated on every row as it enters any sink (the output boundary).
    policies: list[str] = Field(default_factory=list)
    #: Fields holding personal data: declared here, they raise the risk tier (approvals).
    pii_fields: list[str] = Field(default_factory=list)
    #: Name of the approval ladder a run or export of this pipeline goes through, if not the
    #: default ladder for its risk tier.
    approval_ladder: str | None = None
    #: Fields that identify a data subject (e.g. ``customer``): payloads holding one are
    #: encrypted under that subject's key, indexed by keyed HMAC, and erasable (`erase`).
    subject_fields: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(
        default_factory=list)
    retention: RetentionConfig | None = None
    #: Where sinks may write (``outputs.roots``); unset: the default roots.
    outputs: OutputsConfig | None = None

    @field_validator("nodes")
    @classmethod
    def _unique_ids(cls, nodes: list[Any]) -> list[Any]:
        seen: set[str] = set()
        for node in nodes:
            if node.id in seen:
                raise ValueError(f"node id '{node.id}' is used twice")
            seen.add(node.id)
        return nodes

    def canonical(self) -> dict[str, Any]:
        """The definition as hashed into ``config_hash``: defaults filled in, aliases used."""
        dump = self.model_dump(mode="json", by_alias=True)
        # Absent when unused, so a definition written before these keys existed keeps its hash
        # (a run started before an upgrade still resumes against the same config_hash).
        for key in ("subject_fields", "retention", "outputs"):
            if not dump[key]:
                del dump[key]
        return dump


def _field_path(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item in ("transform", "gate", "coalesce", "aggregation", "[key]"):
            continue  # the discriminator's tag (and pydantic's mark of a bad mapping key) is noise
        else:
            parts.append(f".{item}" if parts else str(item))
    return "".join(parts) or "(root)"


def format_validation_error(exc: ValidationError) -> list[dict[str, str]]:
    problems = []
    for err in exc.errors():
        problems.append({"path": _field_path(err["loc"]), "problem": err["msg"],
                         "input": repr(err.get("input"))[:80]})
    return problems


def parse_pipeline(data: Any, *, origin: str = "<pipeline>") -> PipelineConfig:
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as exc:
        problems = format_validation_error(exc)
        lines = "; ".join(f"{p['path']}: {p['problem']}" for p in problems)
        raise ConfigError(f"{origin}: {len(problems)} problem(s): {lines}", code=CONFIG_INVALID,
                          details={"problems": problems, "file": origin}) from exc


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(data: Any, env: Mapping[str, str], path: str = "") -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in string values (never in keys)."""
    if isinstance(data, str):
        def sub(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise ConfigError(f"{path or '(root)'}: environment variable {name} is not set",
                              details={"path": path, "variable": name})
        return _VAR.sub(sub, data)
    if isinstance(data, dict):
        return {k: interpolate(v, env, f"{path}.{k}" if path else str(k)) for k, v in data.items()}
    if isinstance(data, list):
        return [interpolate(v, env, f"{path}[{i}]") for i, v in enumerate(data)]
    return data


def load_pipeline(path: Path, env: Mapping[str, str] | None = None) -> PipelineConfig:
    """Load and validate a pipeline file; ``${VAR}`` values come from ``env`` (default: os.environ)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read pipeline file {path}: {exc.strerror}",
                          details={"file": str(path)}) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: a pipeline file is UTF-8 text; byte {exc.start} is not "
                          f"({exc.reason})", details={"file": str(path)}) from exc
    try:
        data = load_yaml(text, source=str(path))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}",
                          details={"file": str(path)}) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a pipeline file is a YAML mapping with name, source, nodes, sinks",
                          details={"file": str(path)})
    return parse_pipeline(interpolate(data, os.environ if env is None else env), origin=str(path))
