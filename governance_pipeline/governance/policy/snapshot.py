"""Policy snapshots: the exact policies in force for a run, canonical, hashed and stored at start.

A snapshot holds each policy's full definition (deny lists resolved to their terms), the mode it
runs in for this run, and how that mode was decided (the policy's own mode, else the global
default; the kill switch caps 'enforced' at 'advisory'). Its id is derived from the tenant and
the content hash, so runs under the same policies share one snapshot. The run stores the id;
resume reads the snapshot back and refuses it unless its content still hashes to the stored
hash. Editing a policy file during a run therefore changes nothing for that run.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import select

from governance_pipeline.contracts.enums import PolicyMode
from governance_pipeline.contracts.errors import (
    AuditIntegrityError,
    ConfigError,
    ExitCode,
    register,
)
from governance_pipeline.contracts.hashing import CANONICAL_VERSION, canonical_json, sha256_hex
from governance_pipeline.contracts.records import PolicySnapshotRecord
from governance_pipeline.engine.config import PipelineConfig
from governance_pipeline.governance.policy.model import (
    PolicyFile,
    effective_mode,
    load_policy_file,
)
from governance_pipeline.governance.policy.text_rules import shipped_list
from governance_pipeline.landscape.recorder import Recorder
from governance_pipeline.landscape.schema import GLOBAL_SCOPE, policy_snapshots
from governance_pipeline.landscape.store import Landscape

#: Mode of policies that do not state their own (``off``, ``advisory`` or ``enforced``).
ENV_DEFAULT_MODE = "GOVERNANCE_POLICY_MODE"
#: ``1``/``true``: every enforced policy acts as advisory (recorded would_block, never stops).
ENV_KILL_SWITCH = "GOVERNANCE_POLICY_KILL_SWITCH"
DEFAULT_MODE = PolicyMode.ADVISORY
SNAPSHOT_FORMAT = 1

SNAPSHOT_MISSING = register(
    "GP-POLICY-004", "The run's policy snapshot is missing",
    "The run names a policy snapshot the Landscape does not hold (deleted or never stored). "
    "Run `governance-pipeline verify RUN_ID`; the run cannot be resumed without it — start a "
    "new run.", ExitCode.INTEGRITY)
SNAPSHOT_TAMPERED = register(
    "GP-POLICY-005", "The stored policy snapshot does not match its hash",
    "The snapshot's content was altered after the run started. Treat the run's policy decisions "
    "as untrustworthy: `governance-pipeline verify` names the altered record; restore from a "
    "verified backup or start a new run.", ExitCode.INTEGRITY)
POLICY_UNKNOWN = register(
    "GP-POLICY-006", "The pipeline attaches a policy that none of its policy files defines",
    "Add the file defining it to the pipeline's `policy_files`, or correct the id in "
    "`policies` (docs/policies.md#attaching-policies).", ExitCode.INVALID_INPUT)


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _mode(value: str | None, where: str) -> PolicyMode | None:
    if not value:
        return None
    try:
        return PolicyMode(value.strip().lower())
    except ValueError:
        raise ConfigError(f"{where} must be off, advisory or enforced, not {value!r}",
                          details={"setting": where}) from None


@dataclass(frozen=True, slots=True)
class ModeSettings:
    """How modes are decided for a run: global default, run override, kill switch."""

    default: PolicyMode = DEFAULT_MODE
    kill_switch: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *,
                 override: str | None = None) -> ModeSettings:
        env = os.environ if env is None else env
        default = (_mode(override, "the run's policy_mode")
                   or _mode(env.get(ENV_DEFAULT_MODE), ENV_DEFAULT_MODE) or DEFAULT_MODE)
        return cls(default, _flag(env.get(ENV_KILL_SWITCH)))

    def effective(self, declared: PolicyMode | None) -> PolicyMode:
        return effective_mode(declared, default=self.default, kill_switch=self.kill_switch)


def attached_policy_ids(config: PipelineConfig) -> dict[str, list[str]]:
    """Where the pipeline evaluates which policies: node id or sink name → policy ids."""
    where: dict[str, list[str]] = {node.id: list(node.policies) for node in config.nodes
                                   if node.policies}
    if config.policies:
        for sink in config.sinks:
            where[sink] = list(config.policies)
    return where


def _load_files(config: PipelineConfig, base_dir: Path) -> list[tuple[str, bytes, PolicyFile]]:
    loaded = []
    for i, name in enumerate(config.policy_files):
        path = (base_dir / name).resolve()
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"policy_files[{i}]: cannot read {path}: {exc.strerror}",
                              details={"path": f"policy_files[{i}]", "file": str(path)}) from exc
        loaded.append((name, raw, load_policy_file(path)))
    return loaded


def build_snapshot_content(config: PipelineConfig, base_dir: Path,
                           modes: ModeSettings) -> dict[str, Any]:
    """The canonical content of the policies this pipeline's run would use, as of now."""
    files = _load_files(config, base_dir)
    by_id: dict[str, tuple[str, bytes, PolicyFile]] = {}
    for name, raw, policy in files:
        if policy.policy in by_id:
            raise ConfigError(f"policy {policy.policy} is defined by both "
                              f"{by_id[policy.policy][0]} and {name}",
                              details={"policy": policy.policy})
        by_id[policy.policy] = (name, raw, policy)
    attached = attached_policy_ids(config)
    for where, ids in attached.items():
        for pid in ids:
            if pid not in by_id:
                raise ConfigError(f"{where}: policy {pid!r} is not defined by any of "
                                  f"policy_files {config.policy_files}", code=POLICY_UNKNOWN,
                                  details={"node": where, "policy": pid})
    in_use = sorted({pid for ids in attached.values() for pid in ids})
    policies = []
    for pid in in_use:
        name, raw, policy = by_id[pid]
        policies.append({
            "policy": pid, "version": policy.version,
            "declared_mode": policy.mode.value if policy.mode else None,
            "mode": modes.effective(policy.mode).value,
            "source": {"file": name, "sha256": hashlib.sha256(raw).hexdigest()},
            "definition": resolved_definition(policy)})
    return {"format": SNAPSHOT_FORMAT, "default_mode": modes.default.value,
            "kill_switch": modes.kill_switch, "policies": policies}


def resolved_definition(policy: PolicyFile) -> dict[str, Any]:
    """The policy as data, with every shipped list it names resolved to its terms.

    The snapshot carries the terms themselves: a later edit of the shipped list (a package
    upgrade) cannot change what a stored run was evaluated against, and changes the hash of the
    next run's snapshot.
    """
    data = policy.model_dump(mode="json")
    for rule in data["rules"]:
        if rule["kind"] == "deny_list" and rule.get("lists"):
            terms = list(rule.get("terms") or [])
            for name in rule["lists"]:
                terms.extend(t for t in shipped_list(name) if t not in terms)
            rule["terms"], rule["lists"] = terms, []
    return data


def snapshot_id_for(tenant_id: str, content_hash: str) -> str:
    return "pol_" + hashlib.sha256(f"{tenant_id}:{content_hash}".encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class StoredSnapshot:
    snapshot_id: str
    content_hash: str
    content: dict[str, Any]


def store_snapshot(landscape: Landscape, tenant_id: str,
                   content: dict[str, Any]) -> StoredSnapshot:
    """Store ``content`` (once per tenant and content) and return its id and hash."""
    data = canonical_json(content)
    digest = sha256_hex(data)
    sid = snapshot_id_for(tenant_id, digest)
    if _exists(landscape, sid):
        return load_snapshot(landscape, sid)
    record = PolicySnapshotRecord(sid, tenant_id, digest, CANONICAL_VERSION, data.decode(),
                                  len(content["policies"]), Recorder(landscape).now())
    try:
        with Recorder(landscape).unit(GLOBAL_SCOPE) as uow:
            uow.add(record)
    except AuditIntegrityError:
        # Two runs starting at once under the same policies: one stored it, both use it.
        if not _exists(landscape, sid):
            raise
    return load_snapshot(landscape, sid)


def _exists(landscape: Landscape, snapshot_id: str) -> bool:
    with landscape.engine.connect() as conn:
        return conn.execute(select(policy_snapshots.c.snapshot_id).where(
            policy_snapshots.c.snapshot_id == snapshot_id)).first() is not None


def load_snapshot(landscape: Landscape, snapshot_id: str) -> StoredSnapshot:
    """The stored snapshot, trusted only if its content still hashes to its recorded hash."""
    with landscape.engine.connect() as conn:
        row = conn.execute(select(policy_snapshots).where(
            policy_snapshots.c.snapshot_id == snapshot_id)).mappings().first()
    if row is None:
        raise AuditIntegrityError(f"policy snapshot {snapshot_id} is not in the Landscape",
                                  code=SNAPSHOT_MISSING, details={"snapshot_id": snapshot_id})
    record = PolicySnapshotRecord.from_row(row)
    problem = _integrity_problem(record)
    if problem:
        raise AuditIntegrityError(f"policy snapshot {snapshot_id}: {problem}",
                                  code=SNAPSHOT_TAMPERED,
                                  details={"snapshot_id": snapshot_id,
                                           "content_hash": record.content_hash})
    return StoredSnapshot(snapshot_id, record.content_hash, orjson.loads(record.policies_json))


def _integrity_problem(record: PolicySnapshotRecord) -> str | None:
    data = record.policies_json.encode()
    if sha256_hex(data) != record.content_hash:
        return "its content does not hash to the stored content hash"
    try:
        content = orjson.loads(data)
    except orjson.JSONDecodeError:
        return "its content is not JSON"
    if canonical_json(content) != data:
        return "its content is not in canonical form"
    if snapshot_id_for(record.tenant_id, record.content_hash) != record.snapshot_id:
        return "its id does not derive from its tenant and content hash"
    if len(content.get("policies", ())) != record.policy_count:
        return "its policy count does not match its content"
    return None
