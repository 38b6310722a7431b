"""Render ``docs/errors.md`` from the error registry, the single source of codes and fixes.

    python -m governance_pipeline.errors_doc > docs/errors.md

A test regenerates the page and fails when the committed file differs, so the page can never
describe codes the product does not raise or miss one it does.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import governance_pipeline
from governance_pipeline.contracts.errors import REGISTRY, ErrorCode, ExitCode

REGENERATE = "python -m governance_pipeline.errors_doc > docs/errors.md"

_EXIT_MEANING = {
    ExitCode.OK: "ok",
    ExitCode.OPERATIONAL: "operational failure",
    ExitCode.INVALID_INPUT: "invalid input or configuration",
    ExitCode.POLICY_STOP: "stopped by an enforced policy",
    ExitCode.BLOCKED: "blocked (approval required or export gated)",
    ExitCode.INTEGRITY: "integrity failure",
}


def load_all_codes() -> dict[str, ErrorCode]:
    """Import every module of the package so codes registered outside contracts are listed too.

    Alembic's migration scripts run only under Alembic, and ``__main__`` modules run on import,
    so both are left out.
    """
    for module in pkgutil.walk_packages(governance_pipeline.__path__, "governance_pipeline."):
        name = module.name
        if ".migrations" in name or name.endswith("__main__"):
            continue
        importlib.import_module(name)
    return REGISTRY


def _area(code: str) -> str:
    return code.split("-")[1]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _section(entry: ErrorCode) -> list[str]:
    return [
        f'<a id="{entry.anchor}"></a>',
        f"### {entry.code}: {entry.title}",
        "",
        f"- **Exit code:** {int(entry.exit_code)} ({_EXIT_MEANING[entry.exit_code]})",
        f"- **Fix:** {entry.fix}",
        "",
    ]


def render(registry: dict[str, ErrorCode] | None = None) -> str:
    entries = sorted((registry if registry is not None else load_all_codes()).values(),
                     key=lambda e: e.code)
    lines = [
        "# Error codes",
        "",
        "<!-- Generated from the error registry (every code the package registers); "
        f"do not edit by hand. Regenerate with: {REGENERATE} -->",
        "",
        "Every error the product raises on purpose carries a stable code `GP-<AREA>-<NNN>`, a "
        "one-line message and a suggested fix. The command line prints them as",
        "",
        "```",
        "error GP-INPUT-001: no run 'run_x' in this Landscape",
        "fix: Check the identifier; ...",
        "```",
        "",
        "on stderr, or with `--json` as an RFC 9457 problem document on stdout (members `type`, "
        "`title`, `detail`, `code`, `fix`, `exit_code`, `docs`, and `details` when there are "
        "any). The process exit code is the code's exit code.",
        "",
        "## Exit codes",
        "",
        "| exit | meaning |",
        "|---|---|",
        *(f"| {int(c)} | {m} |" for c, m in _EXIT_MEANING.items()),
        "",
        "## Codes",
        "",
        "| code | title | exit |",
        "|---|---|---|",
        *(f"| [{e.code}](#{e.anchor}) | {_cell(e.title)} | {int(e.exit_code)} |" for e in entries),
        "",
    ]
    area = None
    for entry in entries:
        if _area(entry.code) != area:
            area = _area(entry.code)
            lines += [f"## {area}", ""]
        lines += _section(entry)
    return "\n".join(lines).rstrip("\n") + "\n"


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
