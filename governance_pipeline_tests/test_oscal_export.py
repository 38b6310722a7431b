"""``export soc2 --format oscal`` (issue 13 point 7), on both backends: the OSCAL 1.2
assessment-results document beside the JSON + PDF, accepted by two independent third-party OSCAL
implementations, pointing at the bundle's files by a digest that matches each file, reproducible
byte for byte; a document with a required field removed, an unknown field added, a wrong
``oscal-version``, a malformed UUID or timestamp or an unknown enum value is rejected by both.

The validators are packages of the dev extra, installed with the project (nothing is downloaded
at test time), each made from NIST's official OSCAL JSON schema by someone other than us:

- ``compliance-trestle`` (OSCAL Compass): ``trestle.oscal.assessment_results``, pydantic models
  generated from the OSCAL 1.2.1 schema, ``extra="forbid"`` throughout;
- ``oscal-bindings``: ``AssessmentResultsDocument``, pydantic v2 models generated from the
  OSCAL 1.2.3 schema, ``extra="forbid"``, OSCAL (hyphenated) key names only.

OSCAL 1.x minor releases are backward compatible, so a 1.2.2 document must be valid under both.
Neither wheel ships NIST's schema file itself, and a file fetched from another repository may not
be committed here, so validation against the schema file is one optional test
(``test_the_document_is_valid_against_nists_schema_file``) that runs where one is laid.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import io
import json
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import oscal_bindings
import pydantic
import pytest
import regex
import trestle.oscal
from jsonschema import Draft7Validator, ValidationError, validators
from oscal_bindings import AssessmentResultsDocument
from sqlalchemy import text
from trestle.common.err import TrestleError
from trestle.oscal.assessment_results import AssessmentResults
from trestle.oscal.assessment_results import Model as TrestleDocument

from governance_pipeline.cli.main import run_cli
from governance_pipeline.contracts.clock import ManualClock
from governance_pipeline.contracts.errors import ConfigError
from governance_pipeline.governance.exports.bundle_format import json_bytes
from governance_pipeline.governance.exports.evidence import build_evidence
from governance_pipeline.governance.exports.models import SOC2Bundle
from governance_pipeline.governance.exports.oscal import (
    OSCAL_FILE,
    OSCAL_VERSION,
    assessment_results,
)
from governance_pipeline.landscape import migrate
from governance_pipeline.landscape.database import create_landscape_engine
from governance_pipeline.landscape.store import Landscape
from governance_pipeline_tests import policy_fixtures as pf
from governance_pipeline_tests.conftest import PG_ENV, drop_pg_database, fresh_pg_url

REPO = Path(__file__).resolve().parents[1]


# --- the third-party validators ----------------------------------------------------------------

def trestle_problem(doc: Any) -> str | None:
    """compliance-trestle's verdict: None if valid, else its error. Trestle re-raises errors on
    ``oscal-version`` as ``TrestleError``, everything else as pydantic's ``ValidationError``."""
    try:
        TrestleDocument.model_validate(doc)
    except (pydantic.ValidationError, TrestleError) as exc:
        return str(exc)
    return None


def bindings_problem(doc: Any) -> str | None:
    """oscal-bindings' verdict. Validated as a dict, not as JSON text: on pydantic 2.13+ its JSON
    path silently drops a key spelled with the Python field name (``back_matter``), while dict
    validation rejects it (the package's documented workaround, its issue #6)."""
    try:
        AssessmentResultsDocument.model_validate(doc)
    except pydantic.ValidationError as exc:
        return str(exc)
    return None


VALIDATORS: dict[str, Callable[[Any], str | None]] = {
    "compliance-trestle": trestle_problem, "oscal-bindings": bindings_problem}


def problems(doc: Any, names: tuple[str, ...] = tuple(VALIDATORS)) -> dict[str, str | None]:
    return {name: VALIDATORS[name](doc) for name in names}


# --- the exported bundle: built once per backend, read by every test ---------------------------

@dataclass(frozen=True)
class Exported:
    landscape: Landscape
    out: Path


def cli(*args: str) -> tuple[int, Any]:
    """The CLI in this process, under --json: (exit code, the one JSON document)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = run_cli([*args, "--json"])
    return code, json.loads(out.getvalue())


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
             pg_template: str | None) -> Iterator[Exported]:
    """A SOC 2 bundle of January 2026 (one policy-stopped run) written with --format oscal.
    Built once per module and backend: every test below only reads the bundle and the
    Landscape (a test that edits the document edits a copy)."""
    root = tmp_path_factory.mktemp(f"oscal-{request.param}")
    if request.param == "sqlite":
        db_url = f"sqlite:///{root / 'landscape.db'}"
        migrate.upgrade(create_landscape_engine(db_url))
    elif pg_template is None:
        pytest.skip(f"PostgreSQL not configured: set {PG_ENV} (scripts/test.sh does)")
    else:
        db_url = fresh_pg_url(pg_template)
    home = root / "home"
    with pytest.MonkeyPatch.context() as mp:
        for var in ("GOVERNANCE_LADDERS_FILE", "GOVERNANCE_ACTOR", "GOVERNANCE_APPROVAL_TOKEN"):
            mp.delenv(var, raising=False)
        mp.setenv("GOVERNANCE_HOME", str(home))
        mp.setenv("GOVERNANCE_DB_URL", db_url)
        landscape = Landscape.open(db_url, home / "keys", clock=ManualClock())
        try:
            assert pf.execute(landscape, pf.screening(root / "pipeline")).stopped is not None
            code, doc = cli("approvals", "request", "--export", "soc2", "--subject", "2026-01",
                            "--tenant", "default", "--actor", "rita")
            assert code == 0, doc
            for role, actor in (("compliance", "compliance-officer"),
                                ("security", "security-officer")):
                assert cli("approvals", "decide", doc["approval"]["approval_id"], "approve",
                           "--role", role, "--actor", actor)[0] == 0
            out = root / "soc2"
            code, written = cli("export", "soc2", "--period", "2026-01", "--format", "oscal",
                                "--out", str(out), "--approval-token", doc["token"])
            assert code == 0, written
            yield Exported(landscape, out)
        finally:
            landscape.dispose()
            if request.param == "postgres" and pg_template is not None:
                drop_pg_database(pg_template, db_url)


def load(out: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((out / OSCAL_FILE).read_bytes())
    return doc


# --- valid, and what it says ---------------------------------------------------------------------

def test_both_third_party_oscal_implementations_accept_the_document(exported: Exported) -> None:
    doc = load(exported.out)
    assert problems(doc) == {"compliance-trestle": None, "oscal-bindings": None}
    # trestle's own reader, the way a user would load the file (it unwraps the top-level key)
    read = AssessmentResults.oscal_read(exported.out / OSCAL_FILE)
    assert read is not None and read.metadata.oscal_version.root.root == OSCAL_VERSION == "1.2.2"
    assert len(read.results[0].observations) == len(doc["assessment-results"]["results"][0]
                                                    ["observations"])
    # the models are of OSCAL 1.2 (trestle 1.2.1, oscal-bindings 1.2.3): the same major and
    # minor version as the document, so "1.x is backward compatible" is what makes it valid
    assert trestle.oscal.OSCAL_VERSION.startswith("1.2.")
    assert oscal_bindings.__oscal_schema_version__.startswith("1.2.")


def test_it_sits_beside_the_json_and_pdf_and_the_bundle_verifies(exported: Exported) -> None:
    names = {p.name for p in exported.out.iterdir()}
    assert {"bundle.json", "bundle.pdf", OSCAL_FILE} <= names
    manifest = json.loads((exported.out / "manifest.json").read_bytes())
    assert OSCAL_FILE in manifest["files"]
    code, verified = cli("verify-bundle", str(exported.out))
    assert code == 0 and verified["ok"], verified
    # the attestation covers the OSCAL file too, and its predicate states the period and runs
    envelope = json.loads((exported.out / "attestation.intoto.json").read_bytes())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert OSCAL_FILE in {s["name"] for s in statement["subject"]}
    content = json.loads((exported.out / "bundle.json").read_bytes())
    predicate = statement["predicate"]
    assert (predicate["kind"], predicate["period"], predicate["run_ids"]) == \
        ("soc2", "2026-01", content["run_ids"]) and content["run_ids"]
    assert predicate["ledger_heads"] == content["ledger_heads"]


def file_digest(out: Path, href: str) -> str:
    path = out / href
    assert path.resolve().parent == out.resolve(), href  # a file of the bundle, nothing else
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_observations_map_the_controls_and_point_at_files_by_digest(exported: Exported) -> None:
    ar = load(exported.out)["assessment-results"]
    (result,) = ar["results"]
    selected = {c["control-id"] for c in
                result["reviewed-controls"]["control-selections"][0]["include-controls"]}
    assert {"cc6.1", "cc7.2", "cc8.1"} <= selected
    manifest = json.loads((exported.out / "manifest.json").read_bytes())
    assert result["observations"]
    for obs in result["observations"]:
        cited = {ev["href"] for ev in obs["relevant-evidence"]}
        assert cited == {"bundle.json", "bundle.pdf"}, obs["uuid"]
        for ev in obs["relevant-evidence"]:
            (digest,) = [p["value"] for p in ev["props"] if p["name"] == "sha256"]
            # the digest is the file's own, recomputed here, and the signed manifest's
            assert digest == file_digest(exported.out, ev["href"]), ev["href"]
            assert manifest["files"][ev["href"]]["sha256"] == digest
    resources = ar["back-matter"]["resources"]
    assert {r["rlinks"][0]["href"] for r in resources} == {"bundle.json", "bundle.pdf"}
    for res in resources:
        (link,) = res["rlinks"]
        (digest,) = link["hashes"]
        assert digest["algorithm"] == "SHA-256"
        assert digest["value"] == file_digest(exported.out, link["href"])
        assert manifest["files"][link["href"]]["sha256"] == digest["value"]
    # import-ap points at a back-matter resource of this document
    assert ar["import-ap"]["href"].removeprefix("#") in {r["uuid"] for r in resources}
    observed = {o["uuid"] for o in result["observations"]}
    assert result["findings"] and all(
        f["related-observations"][0]["observation-uuid"] in observed for f in result["findings"])
    bundle = SOC2Bundle.model_validate_json((exported.out / "bundle.json").read_bytes())
    assessed = [c for c in bundle.controls if c.status.value != "not_assessed"]
    assert len(result["findings"]) == len(assessed)


def test_a_changed_evidence_file_no_longer_matches_its_digest(exported: Exported,
                                                              tmp_path: Path) -> None:
    """The must-fail twin of the digest check: the same comparison on a copy whose PDF has one
    byte flipped finds the mismatch (so the check above can fail)."""
    copy_dir = tmp_path / "bundle"
    copy_dir.mkdir()
    for name in ("bundle.json", "bundle.pdf", OSCAL_FILE):
        (copy_dir / name).write_bytes((exported.out / name).read_bytes())
    data = bytearray((copy_dir / "bundle.pdf").read_bytes())
    data[len(data) // 2] ^= 0x01
    (copy_dir / "bundle.pdf").write_bytes(bytes(data))
    resources = load(copy_dir)["assessment-results"]["back-matter"]["resources"]
    stale = {r["rlinks"][0]["href"] for r in resources
             if r["rlinks"][0]["hashes"][0]["value"] != file_digest(copy_dir,
                                                                    r["rlinks"][0]["href"])}
    assert stale == {"bundle.pdf"}


def test_the_document_is_reproducible_from_the_bundle(exported: Exported) -> None:
    bundle = SOC2Bundle.model_validate_json((exported.out / "bundle.json").read_bytes())
    manifest = json.loads((exported.out / "manifest.json").read_bytes())
    evidence = {n: manifest["files"][n]["sha256"] for n in ("bundle.json", "bundle.pdf")}
    version = load(exported.out)["assessment-results"]["metadata"]["version"]
    again = assessment_results(bundle, evidence, content_digest=version.removeprefix("sha256:"))
    assert json_bytes(again) == (exported.out / OSCAL_FILE).read_bytes()


# --- must-reject twins ---------------------------------------------------------------------------

def _first_observation(ar: dict[str, Any]) -> dict[str, Any]:
    obs: dict[str, Any] = ar["results"][0]["observations"][0]
    return obs


def _set(path: Callable[[dict[str, Any]], dict[str, Any]], key: str, value: Any
         ) -> Callable[[dict[str, Any]], None]:
    return lambda ar: path(ar).__setitem__(key, value)


def _metadata(ar: dict[str, Any]) -> dict[str, Any]:
    md: dict[str, Any] = ar["metadata"]
    return md


def _status(ar: dict[str, Any]) -> dict[str, Any]:
    status: dict[str, Any] = ar["results"][0]["findings"][0]["target"]["status"]
    return status


BOTH = tuple(VALIDATORS)
# name → (how the assessment-results object is broken, the validators that must reject it)
BREAKAGES: dict[str, tuple[Callable[[dict[str, Any]], None], tuple[str, ...]]] = {
    # a required field removed
    "no-reviewed-controls": (lambda ar: ar["results"][0].pop("reviewed-controls"), BOTH),
    "no-oscal-version": (lambda ar: ar["metadata"].pop("oscal-version"), BOTH),
    "no-import-ap": (lambda ar: ar.pop("import-ap"), BOTH),
    "no-observation-uuid": (lambda ar: _first_observation(ar).pop("uuid"), BOTH),
    # an unknown field added, at the top and deep inside
    "unknown-field": (lambda ar: ar.__setitem__("auditor-opinion", "unqualified"), BOTH),
    "unknown-nested-field": (_set(_first_observation, "evidence-digest", "0" * 64), BOTH),
    # a wrong oscal-version: not a string, blank, padded (the schema's ^\S(.*\S)?$)
    "oscal-version-number": (_set(_metadata, "oscal-version", 1.2), BOTH),
    "oscal-version-blank": (_set(_metadata, "oscal-version", ""), BOTH),
    "oscal-version-padded": (_set(_metadata, "oscal-version", " 1.2.2"), BOTH),
    # a wrong uuid: not a UUID at all, or a real UUID of a version OSCAL forbids (v1)
    "uuid-not-a-uuid": (lambda ar: ar.__setitem__("uuid", "not-a-uuid"), BOTH),
    "uuid-version-1": (lambda ar: ar.__setitem__(
        "uuid", str(uuid.UUID("6ba7b810-9dad-11d1-80b4-00c04fd430c8"))), BOTH),
    "observation-uuid-version-1": (_set(_first_observation, "uuid",
                                        "6ba7b811-9dad-11d1-80b4-00c04fd430c8"), BOTH),
    # a timestamp without a time zone, an empty list where one item is required, a bad enum
    "naive-last-modified": (_set(_metadata, "last-modified", "2026-02-01T00:00:00"), BOTH),
    "no-observations": (lambda ar: ar["results"][0].__setitem__("observations", []), BOTH),
    "finding-state": (_set(_status, "state", "mostly-fine"), BOTH),
    # a key spelled with the Python field name: oscal-bindings rejects it; trestle's models
    # accept field names by design (populate_by_name), so it is not asked
    "field-name-key": (lambda ar: ar.__setitem__("back_matter", ar.pop("back-matter")),
                       ("oscal-bindings",)),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_a_broken_document_is_rejected_by_the_third_party_validators(exported: Exported,
                                                                    breakage: str) -> None:
    doc = load(exported.out)
    break_it, rejecting = BREAKAGES[breakage]
    assert problems(doc, rejecting) == dict.fromkeys(rejecting)  # the twin: untouched passes
    broken = copy.deepcopy(doc)
    break_it(broken["assessment-results"])
    assert broken != doc
    verdicts = problems(broken, rejecting)
    assert all(verdicts.values()), verdicts


def test_only_the_soc2_bundle_has_an_oscal_form(exported: Exported) -> None:
    with exported.landscape.engine.connect() as conn:
        run_id = conn.execute(text("SELECT run_id FROM runs")).scalar_one()
    with pytest.raises(ConfigError) as err:
        assessment_results(build_evidence(exported.landscape, run_id), {"bundle.json": "0" * 64},
                           content_digest="0" * 64)
    assert err.value.code.code == "GP-OSCAL-001"


# --- optional: NIST's schema file itself ---------------------------------------------------------

SCHEMA_ENV = "GOVERNANCE_OSCAL_SCHEMA"
SCHEMA_NAME = "oscal_complete_schema.json"


def _nist_schema_path() -> Path | None:
    candidates = [Path(os.environ[SCHEMA_ENV])] if os.environ.get(SCHEMA_ENV) else []
    candidates += [REPO.parent / "shared" / "oscal" / SCHEMA_NAME]
    return next((p for p in candidates if p.is_file()), None)


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    # The schema's patterns use \p{L}/\p{N}, which Python's re cannot compile.
    if validator.is_type(instance, "string") and not regex.search(pattern, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def test_the_document_is_valid_against_nists_schema_file(exported: Exported) -> None:
    """Optional, and the only test that may skip: NIST's release artefact
    ``oscal_complete_schema.json`` (public domain / CC0) validated with jsonschema. It is not in
    this repository (no file fetched from another repository is committed) nor in either
    validator's wheel; it runs where one is given in ``$GOVERNANCE_OSCAL_SCHEMA`` or laid in
    ``shared/oscal/`` beside the repository. The tests above do not depend on it."""
    path = _nist_schema_path()
    if path is None:
        pytest.skip(f"optional: NIST's {SCHEMA_NAME} is not provided (set {SCHEMA_ENV}); the "
                    "third-party model validation above ran regardless")
    schema = json.loads(path.read_bytes())
    assert "/1.2." in schema["$id"], schema["$id"]
    validator = validators.extend(Draft7Validator, {"pattern": _pattern})(
        schema, format_checker=Draft7Validator.FORMAT_CHECKER)
    doc = load(exported.out)
    assert [e.message for e in validator.iter_errors(doc)] == []
    for name, (break_it, _) in BREAKAGES.items():
        broken = copy.deepcopy(doc)
        break_it(broken["assessment-results"])
        assert list(validator.iter_errors(broken)), name
