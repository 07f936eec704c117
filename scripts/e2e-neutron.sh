#!/usr/bin/env bash
# The Neutron end-to-end proof (issues 4 and 6): real Neutron + MariaDB + OVN under Apache mod_wsgi
# and uWSGI, with and without workerid (tests/e2e), once per supported release: 26.0.6 (2025.1),
# 27.0.4 (2025.2), 28.0.0 (2026.1) and 29.0.0 (2026.2); each in its own venv, config dir and
# database. On a fresh Debian 12
# machine, as root, after `bash scripts/setup-system.sh`:
#
#   bash scripts/e2e-neutron.sh [pytest args...]
#   NEUTRON_RELEASES=29 bash scripts/e2e-neutron.sh -k uwsgi     # one release, some tests
#   DEPTH=full NEUTRON_RELEASES=26 bash scripts/e2e-neutron.sh   # 26 with the deep checks
#
# Per release: sets up MariaDB, OVN and Neutron's venv (tests/e2e/neutron_env.sh, idempotent),
# installs this repository (non-editable, from a temporary copy, so the work tree stays clean)
# into Neutron's venv and runs the tests. Stops MariaDB and OVN again whatever happens.
# Loopback only. About 7 minutes per release on 2 CPUs.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${WORKERID_VENV:-/opt/workerid/venv}"                 # the test runner (pytest)
# 28.0.0's venv (Neutron, mod_wsgi, workerid); each round exports NEUTRON_VENV for its own release,
# so 28's is kept apart: rounds before it must not hand it theirs
VENV28="${NEUTRON_VENV:-/opt/workerid/neutron-venv}"
T0=$(date +%s)

[ "$(id -u)" = 0 ] || { echo "e2e-neutron: run as root" >&2; exit 1; }
[ -x "$VENV/bin/python" ] || { echo "e2e-neutron: no $VENV; run scripts/setup-system.sh" >&2; exit 1; }

cleanup() {
    local rc=$? pidfile pid
    # An Apache the tests could not stop (pytest killed): stop it by its pid file, never by name.
    # The same for a uWSGI master (SIGINT stops it; SIGTERM would only reload it).
    local state="${NEUTRON_E2E_STATE:-/var/lib/neutron-e2e}" kind sig
    for pidfile in "$state"/e2e/*/httpd.pid "$state"/e2e/uwsgi-*/uwsgi.pid; do
        [ -f "$pidfile" ] || continue
        pid=$(cat "$pidfile")
        case "$pidfile" in *uwsgi.pid) kind=uwsgi sig=INT ;; *) kind=apache2 sig=TERM ;; esac
        if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null \
            && grep -q "$kind" "/proc/$pid/cmdline" 2>/dev/null; then
            echo "[e2e-neutron] stopping leftover $kind $pid ($pidfile)"
            kill -"$sig" "$pid" || true
            sleep 5
        fi
    done
    bash "$ROOT/tests/e2e/neutron_stop.sh" || true
    echo "[e2e-neutron] exit $rc after $(( $(date +%s) - T0 ))s"
    exit $rc
}
trap cleanup EXIT

# One round per supported Neutron release: the same tests against each release's real code,
# each in its own venv, config dir and database (their schemas differ). NEUTRON_RELEASES picks
# (default: all); extra arguments go to pytest.
release_round() {  # release_round VERSION VENV ETC DB DEPTH [pytest args...]
    local version=$1 venv=$2 etc=$3 db=$4 depth=$5 tmp t0
    shift 5
    t0=$(date +%s)
    export NEUTRON_VERSION=$version NEUTRON_VENV=$venv NEUTRON_E2E_ETC=$etc NEUTRON_E2E_DB=$db
    export NEUTRON_E2E_DEPTH=${DEPTH:-$depth}
    echo "[e2e-neutron] === neutron $version ($venv, $etc, database $db, $NEUTRON_E2E_DEPTH checks)"
    bash "$ROOT/tests/e2e/neutron_env.sh"

    echo "[e2e-neutron] installing workerid from $ROOT into $venv"
    tmp=$(mktemp -d)
    tar -C "$ROOT" --exclude=.git --exclude=build --exclude='*.egg-info' --exclude=__pycache__ \
        -cf - . | tar -C "$tmp" -xf -
    if ! "$venv/bin/pip" install -q --no-deps --force-reinstall "$tmp" >"$tmp.log" 2>&1; then
        grep -v "is ignored: it is neither a file nor a directory" "$tmp.log" | tail -30 >&2
        exit 1
    fi
    rm -rf "$tmp" "$tmp.log"
    "$venv/bin/python" -c 'import workerid, workerid.neutron; print("[e2e-neutron] workerid at", workerid.__file__)'
    chmod -R a+rX "$venv"

    # src/ first: the test runner imports this tree (tests/conftest.py checks)
    (cd "$ROOT" && WORKERID_E2E=1 PYTHONPATH="$ROOT/src" \
        "$VENV/bin/python" -m pytest -p no:cacheprovider tests/e2e -v -s "$@")
    echo "[e2e-neutron] === neutron $version: round passed in $(( $(date +%s) - t0 ))s"
}

# Depth: "full" runs every check; "quick" runs three restarts in a row instead of ten, judges
# plain uWSGI's dead row frozen without waiting out Neutron's 120 s stale rule, and shows 26's
# plain fault by its cause (every worker seeding) without waiting out the contention (3 min).
# 29 runs full; 26, 27 and 28 quick: those checks run the same workerid and `neutron check` code
# on every release (docs/design.md, "Neutron releases"), and so the whole run stays inside CI's
# budget (README). DEPTH=full forces the deep checks everywhere.
for release in ${NEUTRON_RELEASES:-26 27 28 29}; do
    case "$release" in
        26) release_round 26.0.6 /opt/workerid/neutron26-venv /etc/neutron-e2e-26 neutron26 quick "$@" ;;
        27) release_round 27.0.4 /opt/workerid/neutron27-venv /etc/neutron-e2e-27 neutron27 quick "$@" ;;
        28) release_round 28.0.0 "$VENV28" /etc/neutron-e2e neutron quick "$@" ;;
        29) release_round 29.0.0 /opt/workerid/neutron29-venv /etc/neutron-e2e-29 neutron29 full "$@" ;;
        *) echo "e2e-neutron: unknown release $release (26, 27, 28, 29)" >&2; exit 1 ;;
    esac
done
