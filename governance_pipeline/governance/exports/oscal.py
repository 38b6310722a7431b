"""The SOC 2 bundle as a NIST OSCAL 1.2 ``assessment-results`` document (``bundle.oscal.json``).

One result covers the period; each tested control becomes an observation (what was tested, on
how large a population, with how many exceptions) whose ``relevant-evidence`` points at the
bundle's own files by name and SHA-256 digest, and — when it was assessed — a finding whose
target is the control's Trust Services Criteria objective, ``satisfied`` or ``not-satisfied``.
A control the product cannot test stays an observation without a finding. The back matter lists
the evidence files again as resources with ``hashes``.

Every UUID is a UUID v5 derived from the bundle's content digest and the object's name, and the
only time used is the bundle's own ``generated_at``, so the same bundle gives the same bytes.
There is no OSCAL assessment plan: ``import-ap`` points at the bundle JSON, whose control
descriptions are the plan, and says so.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from governance_pipeline.contracts.errors import ConfigError, ExitCode, register
from governance_pipeline.governance.exports.models import (
    Bundle,
    ControlResult,
    ControlStatus,
    SOC2Bundle,
)

OSCAL_FILE = "bundle.oscal.json"
OSCAL_VERSION = "1.2.2"  # 1.x is backward compatible: the tests use 1.2.1 and 1.2.3 models
NS = "https://governance-pipeline.dev/ns/oscal"
_UUID_NS = uuid.uuid5(uuid.NAMESPACE_URL, NS)
_MEDIA = {".json": "application/json", ".pdf": "application/pdf"}

OSCAL_KIND_UNSUPPORTED = register(
    "GP-OSCAL-001", "Only the SOC 2 bundle has an OSCAL form",
    "Use `export soc2 --period YYYY-MM --format oscal`; evidence bundles and debriefs are "
    "written as JSON + PDF only.", ExitCode.INVALID_INPUT)


def _uuid(digest: str, name: str) -> str:
    return str(uuid.uuid5(_UUID_NS, f"{digest}/{name}"))


def _prop(name: str, value: object) -> dict[str, str]:
    return {"name": name, "ns": NS, "value": str(value)}


def _token(criterion: str) -> str:
    return criterion.lower()  # "CC6.1" → "cc6.1": OSCAL control ids are lower-case tokens


def assessment_results(bundle: Bundle, evidence: Mapping[str, str], *,
                       content_digest: str) -> dict[str, Any]:
    """The document for ``bundle``; ``evidence`` maps the bundle files it cites to their
    SHA-256; ``content_digest`` (the bundle's content digest) seeds every UUID."""
    if not isinstance(bundle, SOC2Bundle):
        raise ConfigError("an OSCAL document is made of a SOC 2 bundle only",
                          code=OSCAL_KIND_UNSUPPORTED)
    resources = {name: _uuid(content_digest, f"resource/{name}") for name in sorted(evidence)}
    observations, findings = [], []
    for control in bundle.controls:
        obs = _observation(control, bundle, evidence, content_digest)
        observations.append(obs)
        if control.status is not ControlStatus.NOT_ASSESSED:
            findings.append(_finding(control, obs["uuid"], content_digest))
    criteria = sorted({_token(c) for control in bundle.controls for c in control.criteria})
    who = f", tenant {bundle.tenant_id}" if bundle.tenant_id else ""
    result = {
        "uuid": _uuid(content_digest, "result"),
        "title": f"SOC 2 control tests, {bundle.subject}{who}",
        "description": bundle.statement.text,
        "start": bundle.period_start, "end": bundle.period_end,
        "props": [_prop("period", bundle.subject), _prop("seed", bundle.seed)],
        "reviewed-controls": {"control-selections": [{
            "description": "2017 Trust Services Criteria the product's controls map to.",
            "include-controls": [{"control-id": c} for c in criteria]}]},
        "observations": observations,
    }
    if findings:
        result["findings"] = findings
    return {"assessment-results": {
        "uuid": _uuid(content_digest, "assessment-results"),
        "metadata": {
            "title": bundle.title, "last-modified": bundle.generated_at,
            "version": f"sha256:{content_digest}", "oscal-version": OSCAL_VERSION,
            "props": [_prop("bundle-kind", "soc2"), _prop("tenant", bundle.tenant_id or "all")],
            "remarks": "Prepared by management from the audit trail; not an auditor's opinion."},
        "import-ap": {"href": f"#{resources[min(evidence)]}", "remarks": (
            "No OSCAL assessment plan exists: the plan is the control tests described, with "
            "their population queries, in the bundle JSON this reference points at.")},
        "results": [result],
        "back-matter": {"resources": [
            {"uuid": resources[name], "title": name,
             "rlinks": [{"href": name, "media-type": _media(name),
                         "hashes": [{"algorithm": "SHA-256", "value": evidence[name]}]}]}
            for name in sorted(evidence)]},
    }}


def _media(name: str) -> str:
    return next((m for ext, m in _MEDIA.items() if name.endswith(ext)),
                "application/octet-stream")


def _observation(control: ControlResult, bundle: SOC2Bundle, evidence: Mapping[str, str],
                 digest: str) -> dict[str, Any]:
    props = [_prop("control-id", control.control_id), _prop("status", control.status.value)]
    if control.population is not None:
        props += [_prop("population-count", control.population.count),
                  _prop("population-digest", control.population.digest),
                  _prop("sampled", len(control.results)),
                  _prop("exceptions", len(control.exceptions))]
    description = control.description
    if control.not_assessed_reason:
        description += f" {control.not_assessed_reason}"
    return {
        "uuid": _uuid(digest, f"observation/{control.control_id}"),
        "title": f"{control.control_id}: {control.title}",
        "description": description,
        "methods": ["TEST"] if control.population is not None else ["EXAMINE"],
        "types": ["control-objective"],
        "props": props,
        "relevant-evidence": [
            {"href": name, "description": f"{name}: control {control.control_id} in the "
                                          "signed bundle, checked by its SHA-256",
             "props": [_prop("sha256", evidence[name])]} for name in sorted(evidence)],
        "collected": bundle.generated_at,
    }


def _finding(control: ControlResult, observation_uuid: str, digest: str) -> dict[str, Any]:
    satisfied = control.status is ControlStatus.EFFECTIVE
    objective = _token(control.criteria[0]) + "_obj"
    return {
        "uuid": _uuid(digest, f"finding/{control.control_id}"),
        "title": f"{control.control_id} ({', '.join(control.criteria)})",
        "description": (f"{len(control.exceptions)} exception(s) in a sample of "
                        f"{len(control.results)}" + ("." if satisfied else
                                                      ": see the observation's evidence.")),
        "target": {"type": "objective-id", "target-id": objective,
                   "status": {"state": "satisfied" if satisfied else "not-satisfied",
                              "reason": "pass" if satisfied else "fail"}},
        "related-observations": [{"observation-uuid": observation_uuid}],
    }
