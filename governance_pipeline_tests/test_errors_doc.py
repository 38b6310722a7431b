"""docs/errors.md is generated from the error registry and must match it exactly."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from governance_pipeline.contracts.errors import ErrorCode, ExitCode
from governance_pipeline.errors_doc import REGENERATE, load_all_codes, render

DOC = Path(__file__).resolve().parents[1] / "docs" / "errors.md"
CODE_FORMAT = re.compile(r"^GP-[A-Z]+-\d{3}$")


def test_committed_errors_page_matches_the_registry() -> None:
    assert DOC.read_text(encoding="utf-8") == render(), (
        f"docs/errors.md is out of date with the error registry; regenerate it with:\n"
        f"    {REGENERATE}")


def test_every_code_has_its_anchor_title_fix_and_exit_code_on_the_page() -> None:
    page = DOC.read_text(encoding="utf-8")
    registry = load_all_codes()
    assert registry, "the registry is empty"
    for entry in registry.values():
        assert CODE_FORMAT.match(entry.code), f"{entry.code} is not GP-<AREA>-<NNN>"
        assert entry.docs_ref == f"docs/errors.md#{entry.anchor}"
        section = page.split(f'<a id="{entry.anchor}"></a>\n', 1)
        assert len(section) == 2, f"no anchor for {entry.code}"
        body = section[1].split("<a id=", 1)[0]
        assert body.startswith(f"### {entry.code}: {entry.title}\n")
        assert f"**Exit code:** {int(entry.exit_code)} " in body
        assert entry.fix in body


def test_a_new_code_changes_the_page() -> None:
    """The comparison above can fail: a code missing from the page makes the pages differ."""
    extra = ErrorCode("GP-ZZZ-999", "Only in this test", "Nothing to fix.", ExitCode.BLOCKED)
    registry = {**load_all_codes(), extra.code: extra}
    page = render(registry)
    assert page != DOC.read_text(encoding="utf-8")
    assert '<a id="gp-zzz-999"></a>' in page and "[GP-ZZZ-999](#gp-zzz-999)" in page


def test_the_module_prints_the_page() -> None:
    out = subprocess.run([sys.executable, "-m", "governance_pipeline.errors_doc"], check=True,
                         capture_output=True, text=True, timeout=120).stdout
    assert out == render()
