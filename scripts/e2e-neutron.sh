#!/usr/bin/env bash
# Issue 4's end-to-end proof: real Neutron 28.0.0 + MariaDB + OVN under Apache mod_wsgi, with and
# without workerid (tests/e2e/test_neutron_mod_wsgi.py). On a fresh Debian 12 machine, as root,
# after `bash scripts/setup-system.sh`:
#
#   bash scripts/e2e-neutron.sh [pytest args...]
#
# Sets up MariaDB, OVN and Neutron's venv (tests/e2e/neutron_env.sh, idempotent), installs this
# repository (non-editable, from a temporary copy, so the work tree stays clean) into Neutron's
# venv, runs the tests, and stops MariaDB and OVN again whatever happens. Loopback only.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${WORKERID_VENV:-/opt/workerid/venv}"                 # the test runner (pytest)
NEUTRON_VENV="${NEUTRON_VENV:-/opt/workerid/neutron-venv}"  # Neutron, mod_wsgi, workerid
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

bash "$ROOT/tests/e2e/neutron_env.sh"

echo "[e2e-neutron] installing workerid from $ROOT into $NEUTRON_VENV"
TMP=$(mktemp -d)
tar -C "$ROOT" --exclude=.git --exclude=build --exclude='*.egg-info' --exclude=__pycache__ \
    -cf - . | tar -C "$TMP" -xf -
if ! "$NEUTRON_VENV/bin/pip" install -q --no-deps --force-reinstall "$TMP" >"$TMP.log" 2>&1; then
    grep -v "is ignored: it is neither a file nor a directory" "$TMP.log" | tail -30 >&2
    exit 1
fi
rm -rf "$TMP" "$TMP.log"
"$NEUTRON_VENV/bin/python" -c 'import workerid, workerid.neutron; print("[e2e-neutron] workerid at", workerid.__file__)'
chmod -R a+rX "$NEUTRON_VENV"

cd "$ROOT"
WORKERID_E2E=1 "$VENV/bin/python" -m pytest -p no:cacheprovider tests/e2e -v -s "$@"
