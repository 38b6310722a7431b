"""Retention settings: the pipeline's ``retention:``, the environment's defaults, and the floor.

A run's retention is what its recorded definition said (``runs.config_json``: the definition as
of the run, not as of today), else the environment default, else none (kept until purged by
hand). The floor is the shortest retention purge accepts; a setting under it refuses the purge.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from governance_pipeline.contracts.data_protection import PurgeScope, parse_days
from governance_pipeline.contracts.errors import RETENTION_UNDER_FLOOR, ConfigError

PAYLOADS_ENV = "GOVERNANCE_RETENTION_PAYLOADS"
RUNS_ENV = "GOVERNANCE_RETENTION_RUNS"
FLOOR_ENV = "GOVERNANCE_RETENTION_FLOOR"
DEFAULT_FLOOR_DAYS = 183  # six months: EU AI Act Art. 19 / 26(6) minimum for logs


@dataclass(frozen=True, slots=True)
class RetentionDefaults:
    payloads_days: int | None
    runs_days: int | None
    floor_days: int

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RetentionDefaults:
        env = os.environ if env is None else env

        def days(name: str) -> int | None:
            value = (env.get(name) or "").strip()
            return parse_days(value, where=name) if value else None

        floor_text = (env.get(FLOOR_ENV) or "").strip()
        floor = DEFAULT_FLOOR_DAYS if not floor_text else (
            0 if floor_text in ("0", "0d") else parse_days(floor_text, where=FLOOR_ENV))
        defaults = cls(days(PAYLOADS_ENV), days(RUNS_ENV), floor)
        for scope, value, name in ((PurgeScope.PAYLOADS, defaults.payloads_days, PAYLOADS_ENV),
                                   (PurgeScope.RUN, defaults.runs_days, RUNS_ENV)):
            if value is not None:
                defaults.check_floor(value, f"{name} ({scope.value})")
        return defaults

    def check_floor(self, days: int, where: str) -> None:
        if days < self.floor_days:
            raise ConfigError(
                f"{where}: a retention of {days} days is under the floor of {self.floor_days} "
                f"days ({FLOOR_ENV})", code=RETENTION_UNDER_FLOOR,
                details={"setting": where, "days": days, "floor_days": self.floor_days})


@dataclass(frozen=True, slots=True)
class RunRetention:
    """The retention that applies to one run, and where it came from."""

    payloads_days: int | None
    runs_days: int | None
    origin: str  # "pipeline" or "environment"


def run_retention(config_json: str, defaults: RetentionDefaults, *, run_id: str,
                  pipeline: str) -> RunRetention:
    """The run's retention from its recorded definition, else the defaults; floor enforced."""
    config: Any = orjson.loads(config_json)
    declared = config.get("retention") if isinstance(config, dict) else None
    declared = declared if isinstance(declared, dict) else {}
    where = f"run {run_id} (pipeline {pipeline}) retention"
    values: dict[str, int | None] = {}
    for key, default in (("payloads", defaults.payloads_days), ("runs", defaults.runs_days)):
        text = declared.get(key)
        values[key] = parse_days(text, where=f"{where}.{key}") if text else default
        if text:
            defaults.check_floor(values[key], f"{where}.{key}")  # type: ignore[arg-type]
    origin = "pipeline" if any(declared.get(k) for k in ("payloads", "runs")) else "environment"
    return RunRetention(values["payloads"], values["runs"], origin)
