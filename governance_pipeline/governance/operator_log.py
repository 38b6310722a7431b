"""The operator audit log: one call records who did what, with which inputs, and how it ended.

Every state-changing action an operator takes — run, resume, approvals (request, approve,
reject, delegate, reset), token consumption, export (granted and refused), incident
acknowledge/resolve, purge, legal hold, erasure, key rotation and revocation — is an
``OperatorEvent`` in the ``operator_events`` table, written through a ``Recorder`` unit so the
hash chain covers it and ``verify`` names an edited, inserted or deleted entry.

Two ways to record, both one line at the call site:

``record_operator_action(target, *, action, actor, inputs, result=OK, code=None, ...)``
    ``target`` is a ``UnitOfWork`` (the event joins that transaction and its scope: the action
    and its record commit or vanish together — use this where the state change is written), a
    ``Recorder`` or a ``Landscape`` (the event is written alone, in the global scope).

``with operator_action(target, *, action, actor, inputs, subject=None) as act: ...``
    Wraps a whole action. Inside, ``act.record_in(uow)`` adds the ``ok`` event to the unit that
    makes the change (same transaction); ``act.inputs`` may be extended as the action learns its
    inputs (e.g. the policy snapshot hash). If the block raises, the event is written on its own
    with ``refused`` (a ``GovernanceError`` of exit code 2, 3, 4 or 5: the product said no) or
    ``failed`` (exit 1, or any other exception: ``GP-INTERNAL-001``) and the error's GP code,
    then the error propagates unchanged. If the block ends without ``record_in``, the ``ok``
    event is written on its own at the end.

``inputs`` holds hashes and identifiers of what the action acted on (``pipeline_sha256``,
``policy_snapshot_hash``, ``approval_id``, ``subject_hash``…): str, int, float, bool or None
values. A secret is refused (``ValueError``): keys such as ``token`` or ``password`` and any value
that looks like an approval token. Time comes from the Landscape's injected clock (the unit's
``now``). The actor is the caller's; ``default_actor()`` is ``$GOVERNANCE_ACTOR``, else the OS
user. The surface (cli, dagster, api) is ``api`` unless the caller runs inside
``with acting_via(OperatorSurface.CLI):`` (the command line does) or passes ``surface=``.

Adding an action is adding an ``OperatorAction`` member: no migration (see the table's comment).
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from governance_pipeline.contracts.errors import (
    INTERNAL_ERROR,
    ErrorCode,
    ExitCode,
    GovernanceError,
)
from governance_pipeline.contracts.hashing import canonical_json, sha256_hex
from governance_pipeline.contracts.ids import new_id
from governance_pipeline.contracts.operator_records import (
    OperatorAction,
    OperatorEvent,
    OperatorResult,
    OperatorSurface,
)
from governance_pipeline.contracts.surface import acting_via, current_surface
from governance_pipeline.landscape.recorder import Recorder, UnitOfWork
from governance_pipeline.landscape.schema import GLOBAL_SCOPE
from governance_pipeline.landscape.store import Landscape

__all__ = ["OperatorAction", "OperatorResult", "OperatorSurface", "OperatorEvent",
           "record_operator_action", "operator_action", "acting_via", "default_actor",
           "ACTOR_ENV"]

ACTOR_ENV = "GOVERNANCE_ACTOR"
_SECRET_KEYS = frozenset({"token", "approval_token", "secret", "password", "private_key"})
_TOKEN_PREFIX = "gpa_"  # governance/approvals/tokens.py: a raw approval token
_DETAIL_MAX = 500
_REFUSALS = (ExitCode.INVALID_INPUT, ExitCode.POLICY_STOP, ExitCode.BLOCKED, ExitCode.INTEGRITY)

Target = UnitOfWork | Recorder | Landscape
Inputs = Mapping[str, str | int | float | bool | None]


def default_actor() -> str:
    """``$GOVERNANCE_ACTOR``, else the OS user (``uid:N`` where the user has no name)."""
    named = os.environ.get(ACTOR_ENV)
    if named:
        return named
    try:
        return getpass.getuser()
    except OSError:  # no login name (a container with an unnamed uid): still someone
        return f"uid:{os.getuid()}"


def _checked_inputs(inputs: Inputs) -> dict[str, Any]:
    clean: dict[str, Any] = {}
    for key, value in inputs.items():
        if key.lower() in _SECRET_KEYS:
            raise ValueError(f"operator log input {key!r} would record a secret: record what "
                             "it unlocks (e.g. the approval id) instead")
        if isinstance(value, str) and value.startswith(_TOKEN_PREFIX) and len(value) > 20:
            raise ValueError(f"operator log input {key!r} holds an approval token")
        if value is not None and not isinstance(value, (str, int, float, bool)):
            raise TypeError(f"operator log input {key!r}: {type(value).__name__} is not a "
                            "hash, identifier or scalar")
        clean[key] = value
    return clean


def _code_text(code: ErrorCode | str | None) -> str | None:
    return code.code if isinstance(code, ErrorCode) else code


def build_event(*, scope: str, now: str, action: OperatorAction | str, actor: str,
                inputs: Inputs, result: OperatorResult | str = OperatorResult.OK,
                code: ErrorCode | str | None = None, subject: str | None = None,
                detail: str | None = None,
                surface: OperatorSurface | str | None = None) -> OperatorEvent:
    """The record ``record_operator_action`` writes (for callers that add it to records
    handed to another writer, e.g. the records of a run's first transaction)."""
    data = canonical_json(_checked_inputs(inputs))
    return OperatorEvent(
        event_id=new_id("op_"), scope=scope, action=OperatorAction(action), actor=actor,
        surface=OperatorSurface(surface) if surface else current_surface(), subject=subject,
        inputs_json=data.decode(), inputs_hash=sha256_hex(data), result=OperatorResult(result),
        code=_code_text(code), detail=detail[:_DETAIL_MAX] if detail else None,
        occurred_at=now)


def record_operator_action(target: Target, *, action: OperatorAction | str, actor: str,
                           inputs: Inputs, result: OperatorResult | str = OperatorResult.OK,
                           code: ErrorCode | str | None = None, subject: str | None = None,
                           detail: str | None = None,
                           surface: OperatorSurface | str | None = None) -> OperatorEvent:
    """Record one operator action (see the module docstring); returns the event."""
    if isinstance(target, UnitOfWork):
        event = build_event(scope=target.scope, now=target.now, action=action, actor=actor,
                            inputs=inputs, result=result, code=code, subject=subject,
                            detail=detail, surface=surface)
        target.add(event)
        return event
    recorder = target if isinstance(target, Recorder) else Recorder(target)
    with recorder.unit(GLOBAL_SCOPE) as uow:
        return record_operator_action(uow, action=action, actor=actor, inputs=inputs,
                                      result=result, code=code, subject=subject, detail=detail,
                                      surface=surface)


def classify(exc: BaseException) -> tuple[OperatorResult, str, str]:
    """(result, GP code, detail) of an action that raised ``exc``."""
    if isinstance(exc, GovernanceError):
        result = OperatorResult.REFUSED if exc.exit_code in _REFUSALS else OperatorResult.FAILED
        return result, exc.code.code, exc.message
    return OperatorResult.FAILED, INTERNAL_ERROR.code, f"{type(exc).__name__}: {exc}"


@dataclass
class OperatorActionScope:
    """The action in progress inside ``operator_action``."""

    recorder: Recorder
    action: OperatorAction
    actor: str
    subject: str | None
    surface: OperatorSurface | None
    inputs: dict[str, Any] = field(default_factory=dict)
    recorded: OperatorEvent | None = None

    def record_in(self, uow: UnitOfWork) -> OperatorEvent:
        """Add the ``ok`` event to ``uow``, the unit that writes the action's state change."""
        self.recorded = record_operator_action(
            uow, action=self.action, actor=self.actor, inputs=self.inputs, subject=self.subject,
            surface=self.surface)
        return self.recorded

    def refusal_in(self, uow: UnitOfWork, exc: GovernanceError) -> OperatorEvent:
        """Add the refused (or failed) event for ``exc`` to ``uow``, e.g. the unit that records
        a refused attempt's own evidence; the block then raises ``exc`` without a second event."""
        result, code, detail = classify(exc)
        self.recorded = record_operator_action(
            uow, action=self.action, actor=self.actor, inputs=self.inputs, result=result,
            code=code, subject=self.subject, detail=detail, surface=self.surface)
        return self.recorded

    def event_for(self, scope: str, now: str) -> OperatorEvent:
        """The ``ok`` event as a record of scope ``scope``, for a writer that takes records."""
        self.recorded = build_event(scope=scope, now=now, action=self.action, actor=self.actor,
                                    inputs=self.inputs, subject=self.subject,
                                    surface=self.surface)
        return self.recorded


@contextmanager
def operator_action(target: Recorder | Landscape, *, action: OperatorAction | str, actor: str,
                    inputs: Inputs | None = None, subject: str | None = None,
                    surface: OperatorSurface | str | None = None
                    ) -> Iterator[OperatorActionScope]:
    """Record the action the block performs, whatever its end (see the module docstring)."""
    recorder = target if isinstance(target, Recorder) else Recorder(target)
    scope = OperatorActionScope(recorder, OperatorAction(action), actor, subject,
                                OperatorSurface(surface) if surface else None,
                                _checked_inputs(inputs or {}))
    try:
        yield scope
    except Exception as exc:
        if scope.recorded is not None and scope.recorded.result is not OperatorResult.OK:
            raise  # recorded with the refusal's own evidence (``refusal_in``)
        result, code, detail = classify(exc)
        try:
            record_operator_action(recorder, action=scope.action, actor=actor,
                                   inputs=scope.inputs, result=result, code=code,
                                   subject=scope.subject, detail=detail, surface=scope.surface)
        except GovernanceError as write_error:
            # The database may be what failed: the original error is the one to report.
            exc.add_note(f"the operator log could not record this: {write_error.message}")
        raise
    if scope.recorded is None:
        record_operator_action(recorder, action=scope.action, actor=actor, inputs=scope.inputs,
                               subject=scope.subject, surface=scope.surface)
