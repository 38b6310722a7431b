#!/usr/bin/env bash
# Set up and run the demo on the embedded default (SQLite under $GOVERNANCE_HOME, default
# ./.governance): creates .venv if missing, installs the project, runs `governance-pipeline demo`.
# Extra arguments go to the demo command (e.g. --json, --rows 50).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ ! -x .venv/bin/python ]; then
    PYTHON=""
    for candidate in python3.13 python3.12 python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
           "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
            PYTHON="$(command -v "$candidate")"
            break
        fi
    done
    [ -n "$PYTHON" ] || { echo "demo.sh: Python >= 3.11 is required" >&2; exit 1; }
    echo "==> creating .venv with $PYTHON" >&2
    "$PYTHON" -m venv .venv || {
        rm -rf .venv
        echo "demo.sh: 'python3 -m venv' failed; on Debian/Ubuntu: apt-get install python3-venv" >&2
        exit 1
    }
fi
echo "==> installing governance-pipeline into .venv" >&2
.venv/bin/python -m pip install --disable-pip-version-check -q -e .

# The Dagster instance of this home keeps its storage local and telemetry off (dagster.yaml).
GOVERNANCE_HOME="${GOVERNANCE_HOME:-$PWD/.governance}"
DAGSTER_HOME="${DAGSTER_HOME:-$GOVERNANCE_HOME/dagster}"
export GOVERNANCE_HOME DAGSTER_HOME
mkdir -p "$DAGSTER_HOME"
[ -f "$DAGSTER_HOME/dagster.yaml" ] || cp dagster.yaml "$DAGSTER_HOME/dagster.yaml"

GP=.venv/bin/governance-pipeline
$GP demo "$@"
echo "==> running the shipped example pipeline examples/pipelines/claims_triage.yaml" >&2
$GP run examples/pipelines/claims_triage.yaml

echo "==> runtime governance: the enforced note_privacy policy stops claims_screening at its" >&2
echo "    first note with personal data (exit 3 is the expected outcome here)" >&2
status=0
$GP run examples/pipelines/claims_screening.yaml || status=$?
[ "$status" -eq 3 ] || { echo "demo.sh: expected exit 3 from the policy stop, got $status" >&2; exit 1; }
$GP incidents

echo "==> approvals: partner_export is risk tier 2; a run needs a two-stage approval" >&2
PARTNER=examples/pipelines/partner_export.yaml
request="$($GP approvals request "$PARTNER" --actor analyst --json)"
approval_id="$(printf '%s' "$request" | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["approval"]["approval_id"])')"
token="$(printf '%s' "$request" | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["token"])')"
# The demo plays both approvers of the built-in ladder; in real use they are other people.
$GP approvals decide "$approval_id" approve --role data_owner --actor data-owner --reason "demo"
$GP approvals decide "$approval_id" approve --role compliance --actor compliance-officer --reason "demo"
$GP run "$PARTNER" --approval-token "$token"

echo "==> your own code: claims_pandas runs a row-wise Python check and pandas functions from" >&2
echo "    examples/pipelines/claims_code; row 200's malformed customer id goes to its errors sink" >&2
$GP run examples/pipelines/claims_pandas.yaml

period="$(date -u +%Y-%m)"
cat >&2 <<NEXT

==> next steps
  governance-pipeline incidents INCIDENT_ID          # the inflection point and what was written
  governance-pipeline explain RUN_ID --row 37        # the violating note's lineage and decisions
  governance-pipeline explain PANDAS_RUN_ID --row 200  # the exception, the function, its source sha256
  governance-pipeline events                         # the event stream (run.*, ir.*, policy.*)
  governance-pipeline approvals request --export soc2 --subject $period --actor analyst
  governance-pipeline approvals decide APPROVAL_ID approve --role compliance --actor compliance-officer
  governance-pipeline approvals decide APPROVAL_ID approve --role security --actor security-officer
  governance-pipeline export soc2 --period $period --approval-token TOKEN
  governance-pipeline verify-bundle .governance/exports/soc2/$period
  dagster dev            # jobs, sensors, and the evidence / SOC 2 / debrief assets
NEXT
