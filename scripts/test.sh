#!/usr/bin/env bash
# The whole test suite, on a fresh machine or a developer's: creates .venv, installs the project
# with its dev extra, starts a throwaway PostgreSQL server (installing it from Debian packages if
# its binaries are missing), validates the Dagster code location, then runs pytest against both
# SQLite and PostgreSQL. CI runs exactly this (.ci/run). Re-running on the same machine works:
# every run gets a new server in a new temporary directory, removed on exit.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO_ROOT="$(pwd)"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'test.sh: %s\n' "$*" >&2; exit 1; }

if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi

apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "cannot install $* automatically: no apt-get; install it and re-run"
    log "installing $* from Debian packages"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

# --- Python ≥ 3.11 and the virtualenv -------------------------------------------------------------
find_python() {
    local candidate
    for candidate in python3.13 python3.12 python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
           "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

if [ ! -x .venv/bin/python ]; then
    PYTHON="$(find_python)" || { apt_install python3 python3-venv; PYTHON="$(find_python)"; } ||
        die "Python >= 3.11 is required"
    log "creating .venv with $PYTHON"
    if ! "$PYTHON" -m venv .venv 2>/dev/null; then
        rm -rf .venv
        apt_install python3-venv
        "$PYTHON" -m venv .venv
    fi
fi
log "installing the project and its dev extra into .venv"
.venv/bin/python -m pip install --disable-pip-version-check -q -e '.[dev]'

# --- PostgreSQL: a dedicated throwaway server --------------------------------------------------------
pg_bindir() {
    local dir
    # Debian keeps the server binaries out of PATH, one directory per major version; newest wins.
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then echo "$dir"; return 0; fi
    done
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v pg_ctl)"
        return 0
    fi
    return 1
}

PG_BIN="$(pg_bindir)" || { apt_install postgresql; PG_BIN="$(pg_bindir)"; } ||
    die "PostgreSQL server binaries not found after installing postgresql"

PG_USER=gp_test
PG_PASSWORD=gp_test
PG_TMP="$(mktemp -d "${TMPDIR:-/tmp}/gp-test-pg.XXXXXX")"
PG_DATA="$PG_TMP/data"
PG_PORT="$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
RUN_TMP="$(mktemp -d "${TMPDIR:-/tmp}/gp-test-run.XXXXXX")"  # Dagster home, test report

# PostgreSQL refuses to run as root: as root, the server runs as the postgres system user.
if [ "$(id -u)" -eq 0 ]; then
    if ! id postgres >/dev/null 2>&1; then
        useradd --system --no-create-home --shell /usr/sbin/nologin postgres
    fi
    chown postgres: "$PG_TMP"
    chmod 0700 "$PG_TMP"
    # From a directory the postgres user can enter: the repository may be private to root.
    as_pg() { (cd "$PG_TMP" && runuser -u postgres -- "$@"); }
else
    as_pg() { "$@"; }
fi

cleanup() {
    local status=$?
    if [ -f "$PG_DATA/postmaster.pid" ]; then
        as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$PG_TMP" "$RUN_TMP"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "starting a throwaway PostgreSQL ($PG_BIN) on 127.0.0.1:$PG_PORT"
printf '%s\n' "$PG_PASSWORD" > "$PG_TMP/pwfile"
if [ "$(id -u)" -eq 0 ]; then chown postgres: "$PG_TMP/pwfile"; fi
as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U "$PG_USER" --pwfile="$PG_TMP/pwfile" \
    --auth=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >"$PG_TMP/initdb.log" 2>&1 ||
    as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U "$PG_USER" --pwfile="$PG_TMP/pwfile" \
        --auth=scram-sha-256 --encoding=UTF8 --locale=C >"$PG_TMP/initdb.log" 2>&1 ||
    { cat "$PG_TMP/initdb.log" >&2; die "initdb failed"; }
# fsync off: a test server that is thrown away need not survive a power cut.
as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_TMP/server.log" -w -t 60 \
    -o "-p $PG_PORT -k $PG_TMP -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" \
    start >/dev/null || { cat "$PG_TMP/server.log" >&2; die "PostgreSQL did not start"; }

ready=0
for _ in $(seq 1 60); do
    if "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER"; then ready=1; break; fi
    sleep 0.5
done
[ "$ready" -eq 1 ] || { cat "$PG_TMP/server.log" >&2; die "PostgreSQL not accepting connections after 30 s"; }

export GOVERNANCE_TEST_PG_URL="postgresql://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/postgres"
log "GOVERNANCE_TEST_PG_URL=$GOVERNANCE_TEST_PG_URL"

# --- Dagster code location ----------------------------------------------------------------------------
log "validating the Dagster code location (workspace.yaml)"
mkdir -p "$RUN_TMP/dagster"
cp dagster.yaml "$RUN_TMP/dagster/dagster.yaml"
DAGSTER_HOME="$RUN_TMP/dagster" GOVERNANCE_HOME="$RUN_TMP/governance" \
    .venv/bin/dagster definitions validate -w workspace.yaml

# --- the suite ---------------------------------------------------------------------------------------
log "running pytest (SQLite and PostgreSQL)"
set +e
# One worker per core (pytest-xdist): most suites wait on fsync and subprocesses, so two
# workers on two cores roughly halve the wall time. GP_TEST_WORKERS=0 runs in one process.
.venv/bin/python -m pytest -p no:cacheprovider -n "${GP_TEST_WORKERS:-auto}" \
    --junitxml="$RUN_TMP/junit.xml" "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
    die "pytest collected no tests"
fi
# Say how many PostgreSQL cases ran; over the whole suite (no arguments) none is a failure: they
# must never silently skip.
.venv/bin/python - "$RUN_TMP/junit.xml" "$#" <<'PY' || status=1
import re
import sys
import xml.etree.ElementTree as ET

cases = list(ET.parse(sys.argv[1]).getroot().iter("testcase"))
on_pg = [c for c in cases if re.search(r"\[(.*-)?(postgres|pg)(-.*)?\]", c.get("name", ""))]
ran = [c for c in on_pg if c.find("skipped") is None]
print(f"==> PostgreSQL: {len(ran)} test cases executed ({len(on_pg) - len(ran)} skipped) "
      f"of {len(cases)} in total", file=sys.stderr)
whole_suite = sys.argv[2] == "0"
sys.exit(1 if whole_suite and not ran else 0)
PY
exit "$status"
