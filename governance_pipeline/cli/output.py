"""How the command line speaks: one JSON document on stdout under ``--json``, text otherwise.

Errors are rendered here too: a ``GovernanceError`` prints its stable code, message and fix on
stderr (or its RFC 9457 problem document on stdout under ``--json``) and the process exits with
the code's exit code. Anything else is a bug: exit 1 with the exception named, and the traceback
when ``--debug`` or ``GOVERNANCE_DEBUG`` asks for it.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import click

from governance_pipeline.contracts.errors import (
    INTERNAL_ERROR,
    LEDGER_TAMPERED,
    REGISTRY,
    SWEEP_FINDINGS,
    USAGE_INVALID,
    ErrorCode,
    ExitCode,
    Finding,
    GovernanceError,
)
from governance_pipeline.contracts.settings import Settings

DEBUG_ENV = "GOVERNANCE_DEBUG"


def debug_from_env(env: dict[str, str] | None = None) -> bool:
    value = (os.environ if env is None else env).get(DEBUG_ENV, "")
    return value.strip().lower() not in ("", "0", "false", "no", "off")


@dataclass
class CliState:
    """Per-invocation state shared by the group, its commands and the error renderer."""

    json: bool = False
    debug: bool = False
    _settings: Settings | None = field(default=None, repr=False)

    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = Settings.from_env()
        return self._settings

    # -- output ---------------------------------------------------------------------------------
    def emit(self, doc: Any) -> None:
        """The one JSON document of a ``--json`` invocation."""
        click.echo(json.dumps(doc, indent=2, ensure_ascii=False, default=str))

    def say(self, line: str = "", *, err: bool = False) -> None:
        """Human output; never printed under ``--json`` (stdout must stay one clean document)."""
        if not self.json:
            click.echo(line, err=err)

    def note(self, line: str) -> None:
        """Progress and hints: stderr, so piping stdout stays clean in both modes."""
        if not self.json:
            click.echo(line, err=True)

    # -- errors ---------------------------------------------------------------------------------
    def render_error(self, exc: GovernanceError) -> int:
        if self.json:
            self.emit(exc.problem())
        else:
            click.echo(f"error {exc.code.code}: {exc.message}", err=True)
            click.echo(f"fix: {exc.code.fix}", err=True)
            click.echo(f"see: {exc.code.docs_ref}", err=True)
        if self.debug:
            traceback.print_exception(exc, file=sys.stderr)
        return int(exc.exit_code)

    def render_usage(self, exc: click.ClickException) -> int:
        return self.render_error(GovernanceError(exc.format_message(), code=USAGE_INVALID))

    def render_crash(self, exc: BaseException) -> int:
        message = f"unexpected {type(exc).__name__}: {exc}"
        if not self.debug:
            message += f" (re-run with --debug or {DEBUG_ENV}=1 for the traceback)"
        err = GovernanceError(message, code=INTERNAL_ERROR,
                              details={"exception": type(exc).__qualname__})
        if self.json:
            self.emit(err.problem())
        else:
            click.echo(f"error {INTERNAL_ERROR.code}: {message}", err=True)
            click.echo(f"fix: {INTERNAL_ERROR.fix}", err=True)
        if self.debug:
            traceback.print_exception(exc, file=sys.stderr)
        return int(ExitCode.OPERATIONAL)


class FindingsFailure(GovernanceError):
    """verify or sweep found something: exit 5 after the findings have been printed."""


def report_findings(state: CliState, command: str, doc: dict[str, Any],
                    findings: Sequence[Finding], summary: str, code: ErrorCode) -> int:
    """Print a verify/sweep report: every finding, a summary, and the exit code (0 or 5)."""
    failure = None
    if findings:
        failure = FindingsFailure(f"{command} found {len(findings)} problem(s); each finding "
                                  "names its table and key", code=code,
                                  details={"finding_count": len(findings)})
    if state.json:
        out = {"command": command, **doc, "ok": not findings}
        if failure is not None:
            out["problem"] = failure.problem()
        state.emit(out)
        return int(failure.exit_code) if failure else 0
    for finding in findings:
        state.say(format_finding(finding))
    state.say(summary)
    if failure is not None:
        click.echo(f"error {code.code}: {failure.message}", err=True)
        click.echo(f"fix: {code.fix}", err=True)
        return int(failure.exit_code)
    return 0


def findings_code(verify_doc: dict[str, Any], sweep_findings: Sequence[Finding]) -> ErrorCode:
    """The problem code of a verify (+ sweep) report: the first ledger finding's own code
    (tampered records, untrusted seals and corrupt payloads differ), else the sweep's."""
    ledger_findings = verify_doc.get("findings") or []
    if ledger_findings:
        return REGISTRY.get(ledger_findings[0].get("code", ""), LEDGER_TAMPERED)
    return SWEEP_FINDINGS if sweep_findings else LEDGER_TAMPERED


def format_finding(finding: Finding) -> str:
    scope = f" (scope {finding.scope})" if finding.scope and finding.scope not in finding.key \
        else ""
    return f"[{finding.check}] {finding.table} {finding.key}: {finding.message}{scope}"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """A plain left-aligned text table (no dependency, copy-paste friendly)."""
    body = [list(map(str, r)) for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h)
              for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in body]
    return lines


def reporting(fn: Callable[..., int]) -> Callable[..., int]:
    """Add ``--json`` to a command; the flag is recorded before the body runs so that errors
    raised by the body render as a problem document too."""
    def callback(as_json: bool, **kwargs: Any) -> int:
        state = click.get_current_context().ensure_object(CliState)
        state.json = as_json
        return fn(state, **kwargs)

    callback.__name__ = fn.__name__
    callback.__doc__ = fn.__doc__
    params = list(getattr(fn, "__click_params__", []))
    callback.__click_params__ = params  # type: ignore[attr-defined]
    return click.option("--json", "as_json", is_flag=True,
                        help="Print exactly one JSON document on stdout.")(callback)
