#!/usr/bin/env bash
# setup-system.sh -- prepare a fresh Debian 12 machine (as root) for workerid
# development and integration tests:
#
#   1. Debian packages: Apache + apxs (apache2-dev), Python headers/venv,
#      a C toolchain and the libraries uWSGI / mod_wsgi build against, and
#      Debian's own packaged mod_wsgi (libapache2-mod-wsgi-py3, for
#      `workerid verify --server mod_wsgi-site --mod-wsgi-so debian`).
#      Apache is NOT left running afterwards, and the wsgi module is not left
#      enabled in the system Apache if installing the package enabled it.
#   2. A world-readable virtualenv built on Debian's /usr/bin/python3 at
#      ${WORKERID_VENV:-/opt/workerid/venv}, holding mod_wsgi (compiled from
#      source against that Python), gunicorn, uvicorn, uwsgi, pytest,
#      hypothesis, mypy and ruff.  The mod_wsgi module is checked with ldd to
#      link Debian's libpython3.X.so.
#   3. The project itself (non-editable) from the repository root, when
#      pyproject.toml exists there (built from a temporary copy so that no
#      build/ or *.egg-info is left in the work tree).
#
# Idempotent: pieces already present and correct are skipped, so a re-run is
# quick.  Environment knobs:
#   WORKERID_VENV        venv location (default /opt/workerid/venv)
#   WORKERID_SKIP_APT=1  skip step 1 entirely
#   WORKERID_FORCE=1     reinstall mod_wsgi / tools even if present
set -euo pipefail
umask 022
START=$(date +%s)

log() { printf '[setup-system] [%3ss] %s\n' "$(( $(date +%s) - START ))" "$*"; }
die() { printf '[setup-system] ERROR: %s\n' "$*" >&2; exit 1; }
run() { printf '[setup-system] + %s\n' "$*"; "$@"; }

[ "$(id -u)" -eq 0 ] || die "must run as root"

SCRIPT_DIR="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
VENV="${WORKERID_VENV:-/opt/workerid/venv}"
SYS_PY=/usr/bin/python3
FORCE="${WORKERID_FORCE:-0}"

export DEBIAN_FRONTEND=noninteractive
export PIP_DISABLE_PIP_VERSION_CHECK=1
export PIP_ROOT_USER_ACTION=ignore
# Never let a user/site PYTHONPATH or an active venv leak into the build.
unset PYTHONPATH PYTHONHOME VIRTUAL_ENV || true


# ---------------------------------------------------------------------------
# 1. Debian packages
# ---------------------------------------------------------------------------
APT_PACKAGES=(
    apache2 apache2-dev            # httpd + apxs (mod_wsgi build)
    python3 python3-dev python3-venv python3-pip libpython3-dev
    build-essential pkg-config     # gcc/make for mod_wsgi and uwsgi
    libpcre2-dev                   # uwsgi: PCRE (internal routing) support
    libssl-dev zlib1g-dev          # uwsgi: ssl / zlib support
    curl procps ca-certificates
    faketime util-linux            # tests: a clock stepped back (libfaketime), PID namespaces (unshare)
    postgresql etcd-server         # backend tests: real engines the tests start on free ports (issue 13)
    libapache2-mod-wsgi-py3        # Debian's packaged mod_wsgi (4.9.4 on Debian 12), loaded by path by the tests
)
# Debian's packaged module, as libapache2-mod-wsgi-py3 installs it; the tests
# and `verify --mod-wsgi-so debian` load it by this path, never through
# /etc/apache2.
DEBIAN_WSGI_SO=/usr/lib/apache2/modules/mod_wsgi.so

stop_apache() {
    # The apache2 postinst may start the service (when no policy-rc.d forbids
    # it).  Stop it: this machine has no systemd, so do it by hand.
    local pidfile pid
    for pidfile in /var/run/apache2/apache2.pid /run/apache2/apache2.pid; do
        [ -s "$pidfile" ] || continue
        pid="$(cat "$pidfile")"
        if kill -0 "$pid" 2>/dev/null; then
            log "apache2 is running (pid $pid), stopping it"
            apachectl -k stop 2>/dev/null || apache2ctl stop 2>/dev/null || true
            for _ in $(seq 1 50); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.2
            done
            if kill -0 "$pid" 2>/dev/null; then
                log "apachectl did not stop pid $pid; sending SIGTERM"
                kill -TERM "$pid" 2>/dev/null || true
                sleep 2
                kill -KILL "$pid" 2>/dev/null || true
            fi
        fi
        rm -f "$pidfile"
    done
    # A packaged apache2 master started by the postinst without a pid file
    # (should not happen).  Only "/usr/sbin/apache2 -k start" exactly, so
    # servers started with their own -f config are never touched.
    local p
    for p in $(pgrep -x apache2 -u root 2>/dev/null || true); do
        if [ "$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)" = "/usr/sbin/apache2 -k start " ]; then
            log "stopping leftover packaged apache2 (pid $p)"
            kill -TERM "$p" 2>/dev/null || true
        fi
    done
}

if [ "${WORKERID_SKIP_APT:-0}" = 1 ]; then
    log "step 1: WORKERID_SKIP_APT=1, skipping Debian packages"
else
    missing=()
    for pkg in "${APT_PACKAGES[@]}"; do
        case "$pkg" in \#*) continue ;; esac
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
            missing+=("$pkg")
        fi
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        log "step 1: all Debian packages already installed"
    else
        log "step 1: installing Debian packages: ${missing[*]}"
        # libapache2-mod-wsgi-py3's postinst enables the module in the system
        # Apache (a2enmod wsgi) and, without a policy-rc.d forbidding it, may
        # (re)start the system apache2: nothing here uses either, so the module
        # is disabled again below if it was not enabled before.
        wsgi_was_enabled=0
        [ -e /etc/apache2/mods-enabled/wsgi.load ] && wsgi_was_enabled=1
        run apt-get update
        # Only the missing ones: naming installed packages would upgrade them.
        run apt-get install -y --no-install-recommends "${missing[@]}"
        if [ "$wsgi_was_enabled" = 0 ] && [ -e /etc/apache2/mods-enabled/wsgi.load ]; then
            log "the libapache2-mod-wsgi-py3 postinst enabled wsgi in the system Apache: disabling it again"
            run a2dismod -q wsgi >/dev/null
        fi
    fi
    stop_apache
    [ -f "$DEBIAN_WSGI_SO" ] || die "$DEBIAN_WSGI_SO missing after installing libapache2-mod-wsgi-py3"
    # The packaged PostgreSQL cluster is not used (the tests start their own
    # on free ports); if the postinst started it, stop it, as Apache above.
    if command -v pg_lsclusters >/dev/null 2>&1; then
        pg_lsclusters --no-header 2>/dev/null | awk '$4 == "online" {print $1, $2}' |
            while read -r ver cluster; do
                log "stopping packaged PostgreSQL cluster $ver/$cluster"
                pg_ctlcluster "$ver" "$cluster" stop || true
            done
    fi
    command -v apxs >/dev/null || die "apxs not found after installing apache2-dev"
fi

# ---------------------------------------------------------------------------
# 2. virtualenv on Debian's python
# ---------------------------------------------------------------------------
[ -x "$SYS_PY" ] || die "$SYS_PY missing"
PYVER="$("$SYS_PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
LIBPYTHON="$("$SYS_PY" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR") + "/" + sysconfig.get_config_var("INSTSONAME"))')"
log "step 2: venv $VENV on $SYS_PY (Python $PYVER, $LIBPYTHON)"
[ -e "$LIBPYTHON" ] || die "$LIBPYTHON missing (install libpython$PYVER / python3-dev)"
LIBPYTHON_REAL="$(readlink -f "$LIBPYTHON")"

venv_ok() {
    [ -x "$VENV/bin/python" ] || return 1
    [ -f "$VENV/pyvenv.cfg" ] || return 1
    grep -Eq '^home = /usr/bin/?$' "$VENV/pyvenv.cfg" || return 1
    [ "$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$PYVER" ] || return 1
    "$VENV/bin/python" -m pip --version >/dev/null 2>&1 || return 1
}

if venv_ok; then
    log "venv already present and based on $SYS_PY"
else
    if [ -e "$VENV" ]; then
        log "existing $VENV is not a usable venv of $SYS_PY; recreating it"
        run rm -rf "$VENV"
    fi
    run mkdir -p "$(dirname "$VENV")"
    run "$SYS_PY" -m venv "$VENV"
    run "$VENV/bin/python" -m pip install --no-cache-dir --upgrade pip
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip)

# --- mod_wsgi, compiled from source against $SYS_PY -----------------------
# Location of the compiled Apache module.  `mod_wsgi-express module-location`
# works for mod_wsgi 4.x-6.x (mod_wsgi.server.where() is gone in 6.x).
modwsgi_so() {
    local so
    [ -x "$VENV/bin/mod_wsgi-express" ] || return 1
    so="$("$VENV/bin/mod_wsgi-express" module-location 2>/dev/null | tail -n 1)" || return 1
    [ -n "$so" ] && [ -f "$so" ] || return 1
    readlink -f "$so"
}
# ldd's output is captured before it is searched: with pipefail, `ldd | grep -q` (or an awk that
# exits at the first match) fails whenever the reader stops before ldd has written everything and
# ldd dies of SIGPIPE (it did, in CI, in tests/e2e/neutron_env.sh).
# Path (resolved) of the libpython the module loads, per ldd.
linked_libpython() {
    local out p
    out="$(ldd "$1" 2>/dev/null)" || return 1
    p="$(awk '$1 ~ /^libpython/ && $2 == "=>" {print $3; exit}' <<<"$out")"
    [ -n "$p" ] && [ "$p" != "not" ] && readlink -f "$p"
}
unresolved_libs() {  # true if ldd reports a library "not found"
    local out
    out="$(ldd "$1" 2>/dev/null)" || return 1
    grep -q 'not found' <<<"$out"
}
modwsgi_ok() {
    local so
    so="$(modwsgi_so)" || return 1
    [ -f "$so" ] || return 1
    [ "$(linked_libpython "$so")" = "$LIBPYTHON_REAL" ] || return 1
    ! unresolved_libs "$so" || return 1
    [ -x "$VENV/bin/mod_wsgi-express" ] || return 1
}

if [ "$FORCE" != 1 ] && modwsgi_ok; then
    log "mod_wsgi already built: $(modwsgi_so)"
else
    log "building mod_wsgi from source (no binary wheel)"
    run "${PIP[@]}" install --no-cache-dir --force-reinstall --no-deps --no-binary mod_wsgi mod_wsgi
fi
check_links_libpython() {  # check_links_libpython SO WHAT: it loads Debian's libpython, all libs resolve
    local got
    got="$(linked_libpython "$1" || true)"
    if [ "$got" != "$LIBPYTHON_REAL" ]; then
        die "$2 $1 links '${got:-no libpython}', not $LIBPYTHON (Debian's libpython): it cannot serve $VENV"
    fi
    if unresolved_libs "$1"; then
        die "$2 $1 has unresolved libraries"
    fi
}
SO="$(modwsgi_so)" || die "mod_wsgi is not importable from $PY"
log "ldd check of $SO:"
ldd "$SO" | sed 's/^/[setup-system]     /'
check_links_libpython "$SO" "mod_wsgi module"
log "mod_wsgi links $LIBPYTHON: OK"
# Debian's packaged module serves this venv (python-home=$VENV) only if it is
# built for the same Python: both must load Debian's libpython.
if [ -f "$DEBIAN_WSGI_SO" ]; then
    check_links_libpython "$DEBIAN_WSGI_SO" "Debian's"
    log "Debian's mod_wsgi $(dpkg-query -W -f='${Version}' libapache2-mod-wsgi-py3 2>/dev/null || echo '?') links $LIBPYTHON: OK"
fi

# --- servers and test tools ----------------------------------------------
tool_present() {
    case "$1" in
        uvicorn | hypothesis | flask | fastapi | django | prometheus_client) "$PY" -c "import $1" ;;
        *) "$VENV/bin/$1" --version ;;
    esac
}
need=()
# flask, fastapi, django: the examples/ the tests serve with real servers;
# prometheus_client: workerid.prometheus against the real library
for name in gunicorn uvicorn uwsgi pytest hypothesis mypy ruff flask fastapi django prometheus_client; do
    if [ "$FORCE" != 1 ] && tool_present "$name" >/dev/null 2>&1; then
        log "$name already installed"
    else
        need+=("$name")
    fi
done
if [ "${#need[@]}" -gt 0 ]; then
    log "installing: ${need[*]} (uwsgi compiles from source: takes a minute)"
    run "${PIP[@]}" install --no-cache-dir "${need[@]}"
fi

# --- the backends' clients (the postgresql and etcd extras) -----------------
# Imported lazily by workerid.backends; the backend tests run real workers
# against the engines the tests start.
backend_need=()
"$PY" -c "import psycopg" >/dev/null 2>&1 || backend_need+=("psycopg[binary]>=3.1")
"$PY" -c "import etcd3gw" >/dev/null 2>&1 || backend_need+=("etcd3gw>=2.4")
if [ "$FORCE" = 1 ] || [ "${#backend_need[@]}" -gt 0 ]; then
    [ "${#backend_need[@]}" -gt 0 ] || backend_need=("psycopg[binary]>=3.1" "etcd3gw>=2.4")
    log "installing the backends' clients: ${backend_need[*]}"
    run "${PIP[@]}" install --no-cache-dir "${backend_need[@]}"
else
    log "psycopg and etcd3gw already installed"
fi

# Make the whole venv readable/executable by everyone (www-data runs
# mod_wsgi / uwsgi daemon processes from it).
run chmod -R a+rX "$VENV"
d="$VENV"
while [ "$d" != / ]; do
    chmod a+rx "$d"
    d="$(dirname "$d")"
done
if id www-data >/dev/null 2>&1; then
    if (cd / && su -s /bin/sh www-data -c "'$PY' -c 'import mod_wsgi, gunicorn, uvicorn'") >/dev/null 2>&1; then
        log "www-data can use the venv: OK"
    else
        die "user www-data cannot import from $VENV"
    fi
fi

# ---------------------------------------------------------------------------
# 3. the project itself, non-editable
# ---------------------------------------------------------------------------
if [ -f "$ROOT/pyproject.toml" ]; then
    log "step 3: installing the project from $ROOT (non-editable)"
    # Build from a throw-away copy: setuptools would otherwise leave build/
    # and src/*.egg-info inside the work tree.
    SRC_COPY="$(mktemp -d /tmp/workerid-src.XXXXXX)"
    trap 'rm -rf "$SRC_COPY"' EXIT
    tar -C "$ROOT" --exclude=./.git --exclude=./build --exclude=./dist \
        --exclude='*.egg-info' --exclude=__pycache__ --exclude=./.venv \
        --exclude=./.mypy_cache --exclude=./.pytest_cache --exclude=./.ruff_cache \
        -cf - . | tar -C "$SRC_COPY" -xf -
    run "${PIP[@]}" install --no-cache-dir --force-reinstall --no-deps "$SRC_COPY"
    chmod -R a+rX "$VENV"
else
    log "step 3: $ROOT/pyproject.toml not found; skipping project install"
fi

log "versions:"
"$PY" - <<'EOF' | sed 's/^/[setup-system]     /'
import importlib.metadata as md, sys
print("python", sys.version.split()[0], sys.executable)
for name in ("pip", "mod_wsgi", "gunicorn", "uvicorn", "uWSGI", "pytest",
             "hypothesis", "mypy", "ruff", "psycopg", "etcd3gw", "workerid"):
    try:
        print(name, md.version(name))
    except md.PackageNotFoundError:
        print(name, "(not installed)")
EOF
log "apxs: $(command -v apxs || echo none); apache2: $(/usr/sbin/apache2 -v 2>/dev/null | head -1 || echo none)"
log "done in $(( $(date +%s) - START ))s"
