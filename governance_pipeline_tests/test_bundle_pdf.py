"""The bundle PDFs read back with pypdf: what an auditor needs is on the page (run id, digests,
control ids, sample ids); hostile row values render literally; the bytes are the same in two
separate processes and twice in one."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pypdf import PdfReader

from governance_pipeline.contracts.clock import ManualClock, to_iso
from governance_pipeline.contracts.enums import IncidentSeverity, IncidentStatus
from governance_pipeline.contracts.ids import new_id
from governance_pipeline.contracts.records import Incident
from governance_pipeline.governance.exports.debrief import build_debrief
from governance_pipeline.governance.exports.evidence import build_evidence
from governance_pipeline.governance.exports.pdf_text import safe
from governance_pipeline.governance.exports.render_json import bundle_digest, render_json
from governance_pipeline.governance.exports.render_pdf import render_pdf
from governance_pipeline.governance.exports.soc2 import build_soc2
from governance_pipeline.landscape.recorder import Recorder
from governance_pipeline.landscape.store import Landscape
from governance_pipeline_tests.bundle_fixtures import GovernedPeriod, governed_period

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def month(landscape: Landscape, clock: ManualClock, tmp_path: Path) -> GovernedPeriod:
    return governed_period(landscape, clock, tmp_path)


def pdf_text(data: bytes) -> tuple[int, str]:
    reader = PdfReader(io.BytesIO(data))
    return len(reader.pages), "\n".join(page.extract_text() for page in reader.pages)


def squeezed(text: str) -> str:
    """Text without whitespace: a long id wrapped across lines still matches."""
    return re.sub(r"\s+", "", text)


def pdf_of(bundle: object) -> tuple[bytes, str]:
    digest = bundle_digest(bundle)  # type: ignore[arg-type]
    return render_pdf(bundle, bundle_digest=digest), digest  # type: ignore[arg-type]


def test_evidence_pdf_shows_run_digests_and_samples(landscape: Landscape,
                                                    month: GovernedPeriod) -> None:
    b = build_evidence(landscape, month.stopped_run, sample_size=5)
    data, digest = pdf_of(b)
    assert digest == hashlib.sha256(render_json(b)).hexdigest()
    pages, text = pdf_text(data)
    flat = squeezed(text)
    assert pages >= 3 and "Page 1 of" in text and f"Page {pages} of {pages}" in text
    for needle in [month.stopped_run, digest, b.run.config_hash, month.incident_id,
                   b.generated_at, *(a.content_hash for a in b.artifacts),
                   *(x.row_id for x in b.lineage), *(x.source_data_hash for x in b.lineage),
                   b.lineage_sample.population_digest, b.inflection_point.inflection_id]:  # type: ignore[union-attr]
        assert squeezed(needle) in flat, needle
    meta = PdfReader(io.BytesIO(data)).metadata
    assert meta is not None and meta.title == b.title


def test_soc2_pdf_shows_controls_populations_and_samples(landscape: Landscape,
                                                         month: GovernedPeriod) -> None:
    b = build_soc2(landscape, month.period)
    data, digest = pdf_of(b)
    pages, text = pdf_text(data)
    flat = squeezed(text)
    assert digest in flat and "not an auditor's opinion" in text.replace("\n", " ")
    for c in b.controls:
        assert c.control_id in flat
        for criterion in c.criteria:
            assert criterion in flat
        if c.population is not None:
            assert c.population.digest in flat
        for r in c.results:
            assert squeezed(r.key) in flat
    assert flat.count("Notassessed") >= 6


def test_debrief_pdf_shows_summary_and_actions(landscape: Landscape,
                                               month: GovernedPeriod) -> None:
    d = build_debrief(landscape, month.incident_id)
    data, digest = pdf_of(d)
    pages, text = pdf_text(data)
    flat = squeezed(text)
    assert digest in flat and month.incident_id in flat and "HIGH" in text
    assert squeezed(d.recommended_actions[0]) in flat
    assert "2.500 seconds" in text


HOSTILE = ("<font size=80>BIG</font> </para><para> & &amp; \x00\x1b[31m red "
           "\u202eevil\u202c done")


def test_hostile_row_values_render_literally(landscape: Landscape, clock: ManualClock,
                                             db_url: str, month: GovernedPeriod) -> None:
    huge = "x" * 100_000
    # PostgreSQL text cannot hold NUL at all; there the nearest control character stands in
    hostile = HOSTILE if db_url.startswith("sqlite") else HOSTILE.replace("\x00", "\x01")
    nul = "[U+0000]" if db_url.startswith("sqlite") else "[U+0001]"
    incident_id = new_id("inc_")
    with Recorder(landscape).unit(month.stopped_run) as uow:
        uow.add(Incident(incident_id, month.stopped_run, IncidentSeverity.CRITICAL,
                         IncidentStatus.OPEN, hostile, None, None, None, None, None, None,
                         huge, None, to_iso(clock.now())))
    for bundle in (build_debrief(landscape, incident_id),
                   build_evidence(landscape, month.stopped_run)):
        data, _ = pdf_of(bundle)
        _, text = pdf_text(data)
        flat = squeezed(text)
        assert squeezed("<font size=80>BIG</font> </para><para> & &amp;") in flat
        assert f"{nul}[U+001B][31m" in flat and "[U+202E]evil[U+202C]" in flat
        assert "\u202e" not in text and "\x00" not in text and "\x1b" not in text
    debrief_text = pdf_text(pdf_of(build_debrief(landscape, incident_id))[0])[1]
    assert re.search(r"truncated: 9\d{4} more characters", debrief_text)
    assert debrief_text.count("x") < 10_000


def test_safe_escapes_markup_controls_and_length() -> None:
    assert safe("<b>&") == "&lt;b&gt;&amp;"
    assert safe("a\nb\tc\x7f") == "a\\nb\\tc[U+007F]"
    assert safe("\u202e\u200b\u4e2d") == "[U+202E][U+200B][U+4E2D]"
    assert safe("é€—") == "é€—"  # WinAnsi characters stay as they are
    assert safe("y" * 30, limit=10) == "y" * 10 + " \u2026[truncated: 20 more characters]"
    assert safe(None) == ""


_CHILD = """
import hashlib, json, sys
from pathlib import Path
from governance_pipeline.contracts.clock import ManualClock, from_iso
from governance_pipeline.landscape.store import Landscape
from governance_pipeline.governance.exports.debrief import build_debrief
from governance_pipeline.governance.exports.evidence import build_evidence
from governance_pipeline.governance.exports.soc2 import build_soc2
from governance_pipeline.governance.exports.render_json import bundle_digest, render_json
from governance_pipeline.governance.exports.render_pdf import render_pdf
url, keys, now, run_id, period, incident_id = sys.argv[1:]
ls = Landscape.open(url, Path(keys), clock=ManualClock(from_iso(now)), upgrade=False)
out = {}
for name, b in (("evidence", build_evidence(ls, run_id)), ("soc2", build_soc2(ls, period)),
                ("debrief", build_debrief(ls, incident_id))):
    out[name] = [hashlib.sha256(render_json(b)).hexdigest(),
                 hashlib.sha256(render_pdf(b, bundle_digest=bundle_digest(b))).hexdigest()]
ls.dispose()
print(json.dumps(out))
"""


def test_rendering_is_byte_identical_across_processes(
        landscape: Landscape, clock: ManualClock, db_url: str, tmp_path: Path,
        month: GovernedPeriod) -> None:
    bundles = {"evidence": build_evidence(landscape, month.stopped_run),
               "soc2": build_soc2(landscape, month.period),
               "debrief": build_debrief(landscape, month.incident_id)}
    here = {}
    for name, b in bundles.items():
        pdf = render_pdf(b, bundle_digest=bundle_digest(b))
        assert pdf == render_pdf(b, bundle_digest=bundle_digest(b))  # twice in one process
        here[name] = [hashlib.sha256(render_json(b)).hexdigest(), hashlib.sha256(pdf).hexdigest()]
    args = [db_url, str(tmp_path / "keys"), to_iso(clock.now()), month.stopped_run,
            month.period, month.incident_id]
    seen = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        child = subprocess.run([sys.executable, "-c", _CHILD, *args], cwd=REPO, env=env,
                               capture_output=True, text=True, timeout=300, check=False)
        assert child.returncode == 0, child.stderr
        seen.append(json.loads(child.stdout))
    assert seen[0] == seen[1] == here
    # and a different bundle gives a different PDF: the check can fail
    other = build_evidence(landscape, month.approved_run)
    assert hashlib.sha256(render_pdf(other, bundle_digest=bundle_digest(other))).hexdigest() \
        != here["evidence"][1]
