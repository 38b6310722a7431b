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

.venv/bin/governance-pipeline demo "$@"
echo "==> running the shipped example pipeline examples/pipelines/claims_triage.yaml" >&2
exec .venv/bin/governance-pipeline run examples/pipelines/claims_triage.yaml
