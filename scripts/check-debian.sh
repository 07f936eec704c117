#!/usr/bin/env bash
# check-debian.sh -- build workerid's Debian package from debian/ with Debian
# 12's own toolchain and prove it works:
#
#   1. apt-get installs the build and test tools (build-essential, debhelper,
#      dh-python, pybuild-plugin-pyproject, python3-all, python3-setuptools,
#      python3-pytest, python3-hypothesis, lintian, autopkgtest) and the test
#      dependencies (apache2, libapache2-mod-wsgi-py3, curl) that are missing;
#   2. copies the work tree to a temporary directory (dpkg-buildpackage writes
#      ../*.deb next to the source directory: never into the repository) and
#      runs `dpkg-buildpackage -us -uc -b` there with a clean environment
#      (/usr/bin/python3, not a pyenv or venv on PATH);
#   3. runs lintian on the .changes (fails on errors; warnings are listed);
#   4. installs the built python3-workerid with apt-get and runs the
#      autopkgtest (debian/tests): with `autopkgtest --null` (the null runner
#      cannot provide isolation-container, so that restriction is ignored:
#      the test uses its own ServerRoot, port and lock directory and touches
#      no system service), or, if the runner is missing or does not work,
#      each test of debian/tests/control run directly as autopkgtest would
#      (as root, cwd the source tree, AUTOPKGTEST_TMP set).
#
# On exit, whatever happened, the machine is left as the project's other
# tests need it: python3-workerid is purged (no stale workerid in
# /usr/lib/python3/dist-packages), the wsgi module is disabled again if
# installing libapache2-mod-wsgi-py3 enabled it, a system apache2 that a
# postinst started is stopped by its PID file, and the temporary directory
# is removed (kept with WORKERID_DEB_KEEP=1).
#   WORKERID_DEB_REMOVE=1   also purge every package installed while it ran
#   WORKERID_DEB_RUNNER=direct   skip autopkgtest, run debian/tests directly
# Needs root and Debian's package archive. Exits non-zero on failure.
set -euo pipefail
umask 022
# shellcheck source=scripts/_lib.sh
. "$(dirname "$0")/_lib.sh" check-debian

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
[ "$(id -u)" -eq 0 ] || die "run as root (apt-get, and the autopkgtest needs root)"
[ -f "$ROOT/debian/control" ] || die "no $ROOT/debian/control"
export DEBIAN_FRONTEND=noninteractive
# Debian's own tools only: no pyenv/venv python3 on PATH, no user site.
CLEAN_ENV=(env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 LC_ALL=C.UTF-8
    DEBIAN_FRONTEND=noninteractive PYTHONNOUSERSITE=1)

SYS_PIDFILE=/var/run/apache2/apache2.pid
pid_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
sys_apache_pid() {
    local pid
    pid="$(cat "$SYS_PIDFILE" 2>/dev/null || true)"
    pid_alive "$pid" && echo "$pid" || true
}
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
mods_enabled() { ls /etc/apache2/mods-enabled/ 2>/dev/null || true; }
installed_list() { dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' | awk '$1 == "ii" {print $2}' | sort; }

# --- the state to restore --------------------------------------------------
WSGI_WAS_ENABLED=0
[ -e /etc/apache2/mods-enabled/wsgi.load ] && WSGI_WAS_ENABLED=1
SYS_APACHE_BEFORE="$(sys_apache_pid)"
MODS_BEFORE="$(mods_enabled | tr '\n' ' ')"
# apache2ctl (run by libapache2-mod-wsgi-py3's postinst) creates the runtime
# directory /var/run/apache2/socks: removed again if it was not there and is empty
RUNDIR_EXISTED=0
[ -d /var/run/apache2 ] && RUNDIR_EXISTED=1
WORK="$(mktemp -d /tmp/workerid-deb.XXXXXX)"
chmod 755 "$WORK"
installed_list >"$WORK/packages.before"
log "work dir $WORK, source $ROOT"
log "before: wsgi module enabled: $WSGI_WAS_ENABLED; system apache2: ${SYS_APACHE_BEFORE:-not running}"

cleanup() {
    local rc=$? pid
    set +e
    log "cleanup"
    if installed python3-workerid; then
        run apt-get purge -y -q python3-workerid >"$WORK/purge.log" 2>&1 ||
            { tail -5 "$WORK/purge.log"; rc=1; }
    fi
    if [ -e /usr/lib/python3/dist-packages/workerid ]; then
        printf '[check-debian] FAIL: /usr/lib/python3/dist-packages/workerid is still there\n' >&2
        rc=1
    fi
    if [ "$WSGI_WAS_ENABLED" = 0 ] && [ -e /etc/apache2/mods-enabled/wsgi.load ]; then
        run a2dismod -q wsgi >/dev/null
    fi
    pid="$(sys_apache_pid)"
    if [ -z "$SYS_APACHE_BEFORE" ] && [ -n "$pid" ]; then
        log "a package's postinst started the system apache2 ($pid): stopping it by $SYS_PIDFILE"
        kill -TERM "$pid"
        for _ in $(seq 100); do pid_alive "$pid" || break; sleep 0.1; done
        pid_alive "$pid" && kill -KILL "$pid"
    fi
    if [ "${WORKERID_DEB_REMOVE:-0}" = 1 ]; then
        # every package that was not installed when this script started (the
        # tools, their dependencies, and what autopkgtest pulled in); no
        # autoremove, which could take packages that were orphaned before
        local added
        added="$(installed_list | comm -13 "$WORK/packages.before" -)"
        if [ -n "$added" ]; then
            log "removing the $(echo "$added" | wc -l) packages installed since the start"
            # shellcheck disable=SC2086  # a list of package names
            run apt-get purge -y -q $added >"$WORK/remove.log" 2>&1 ||
                { tail -5 "$WORK/remove.log"; rc=1; }
        fi
    fi
    if [ "$RUNDIR_EXISTED" = 0 ] && [ -d /var/run/apache2 ] && [ -z "$(sys_apache_pid)" ]; then
        rmdir /var/run/apache2/socks 2>/dev/null
        rmdir /var/run/apache2 2>/dev/null && log "removed the empty /var/run/apache2 a postinst created"
    fi
    local mods_after
    mods_after="$(mods_enabled | tr '\n' ' ')"
    if [ "$mods_after" = "$MODS_BEFORE" ]; then
        log "after: /etc/apache2/mods-enabled as before"
    else
        printf '[check-debian] FAIL: /etc/apache2/mods-enabled changed: %s -> %s\n' \
            "$MODS_BEFORE" "$mods_after" >&2
        rc=1
    fi
    log "after: system apache2: $(sys_apache_pid || true)${SYS_APACHE_BEFORE:+ (was $SYS_APACHE_BEFORE)}"
    if [ "${WORKERID_DEB_KEEP:-0}" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    if [ "$rc" = 0 ]; then
        log "OK: built, linted, installed and tested python3-workerid in $(($(date +%s) - START))s"
    else
        log "FAILED after $(($(date +%s) - START))s"
    fi
    exit "$rc"
}
trap cleanup EXIT

# ---------------------------------------------------------------------------
# 1. tools and test dependencies
# ---------------------------------------------------------------------------
PKGS=(build-essential debhelper dh-python pybuild-plugin-pyproject python3-all python3-setuptools
    python3-pytest python3-hypothesis lintian apache2 libapache2-mod-wsgi-py3 curl)
# autopkgtest if the archive has it (Debian 12 does: 5.28)
if apt-cache show autopkgtest >/dev/null 2>&1; then PKGS+=(autopkgtest); fi
missing=()
for pkg in "${PKGS[@]}"; do installed "$pkg" || missing+=("$pkg"); done
if [ "${#missing[@]}" -gt 0 ]; then
    log "step 1: apt-get install ${missing[*]}"
    t=$(date +%s)
    run apt-get install -y --no-install-recommends "${missing[@]}" >"$WORK/apt.log" 2>&1 ||
        { run apt-get update >>"$WORK/apt.log" 2>&1 &&
            run apt-get install -y --no-install-recommends "${missing[@]}" >>"$WORK/apt.log" 2>&1; } ||
        {
            tail -20 "$WORK/apt.log"
            die "apt-get install ${missing[*]} failed"
        }
    log "step 1: installed in $(($(date +%s) - t))s"
else
    log "step 1: all tools and test dependencies already installed"
fi
for pkg in debhelper dh-python python3 apache2 libapache2-mod-wsgi-py3 lintian autopkgtest; do
    printf '[check-debian]     %-26s %s\n' "$pkg" "$(dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null || echo -)"
done
# A package postinst may have started the system apache2 (not with a
# policy-rc.d that forbids it); the test does not need it.
pid="$(sys_apache_pid)"
if [ -z "$SYS_APACHE_BEFORE" ] && [ -n "$pid" ]; then
    log "the system apache2 was started by a postinst ($pid): stopping it by $SYS_PIDFILE"
    kill -TERM "$pid"
    for _ in $(seq 100); do pid_alive "$pid" || break; sleep 0.1; done
fi

# ---------------------------------------------------------------------------
# 2. dpkg-buildpackage in a copy of the tree
# ---------------------------------------------------------------------------
VERSION="$(cd "$ROOT" && dpkg-parsechangelog -S Version)"
UPSTREAM="${VERSION%-*}"
SRC="$WORK/workerid-$UPSTREAM"
mkdir -p "$SRC"
tar -C "$ROOT" --exclude=./.git --exclude=./build --exclude=./dist \
    --exclude='*.egg-info' --exclude=__pycache__ --exclude=./.venv \
    --exclude=./.mypy_cache --exclude=./.pytest_cache --exclude=./.ruff_cache \
    --exclude=./.hypothesis --exclude=./.pybuild --exclude=./debian/.debhelper \
    --exclude=./debian/python3-workerid --exclude=./debian/files \
    --exclude='./debian/*.substvars' --exclude='./debian/*.log' \
    --exclude=./debian/debhelper-build-stamp -cf - . | tar -C "$SRC" -xf -
log "step 2: dpkg-buildpackage -us -uc -b in $SRC (version $VERSION)"
t=$(date +%s)
(cd "$SRC" && run "${CLEAN_ENV[@]}" dpkg-buildpackage -us -uc -b) >"$WORK/build.log" 2>&1 || {
    tail -60 "$WORK/build.log"
    die "dpkg-buildpackage failed"
}
grep -E '^=+ .*(passed|failed).* =+$' "$WORK/build.log" | sed 's/^/[check-debian]     build-time tests: /'
DEB="$WORK/python3-workerid_${VERSION}_all.deb"
CHANGES="$(ls "$WORK"/workerid_"${VERSION}"_*.changes)"
[ -f "$DEB" ] || die "no $DEB ($(ls "$WORK"))"
log "step 2: built $(basename "$DEB") in $(($(date +%s) - t))s"
dpkg-deb -c "$DEB" | awk '{print $6}' >"$WORK/contents.txt"
for f in ./usr/bin/workerid ./usr/lib/python3/dist-packages/workerid/__init__.py \
    ./usr/lib/python3/dist-packages/workerid/py.typed \
    ./usr/lib/python3/dist-packages/workerid/neutron/neutron-api.wsgi \
    ./usr/lib/python3/dist-packages/workerid/neutron/neutron-api.conf \
    ./usr/share/man/man1/workerid.1.gz ./usr/share/doc/python3-workerid/copyright; do
    grep -qxF "$f" "$WORK/contents.txt" || die "$(basename "$DEB") lacks $f"
done
! grep -E '__pycache__|\.pyc$|/tests?/|\.pybuild' "$WORK/contents.txt" || die "the .deb holds bytecode or tests"
log "step 2: $(grep -vc '/$' "$WORK/contents.txt") files; Depends: $(dpkg-deb -f "$DEB" Depends)"

# ---------------------------------------------------------------------------
# 3. lintian
# ---------------------------------------------------------------------------
log "step 3: lintian $(basename "$CHANGES")"
t=$(date +%s)
lrc=0
"${CLEAN_ENV[@]}" lintian --fail-on error --display-info --pedantic "$CHANGES" >"$WORK/lintian.log" 2>&1 || lrc=$?
grep -v 'running with root privileges is not recommended' "$WORK/lintian.log" | sed 's/^/[check-debian]     /' || true
counts="$(for k in E W I P; do printf '%s:%s ' "$k" "$(grep -c "^$k: " "$WORK/lintian.log" || true)"; done)"
[ "$lrc" = 0 ] || die "lintian failed ($lrc): $counts"
log "step 3: lintian: $counts(no errors) in $(($(date +%s) - t))s"

# ---------------------------------------------------------------------------
# 4. install it and run the autopkgtest
# ---------------------------------------------------------------------------
log "step 4: apt-get install $(basename "$DEB")"
(cd "$WORK" && run apt-get install -y --no-install-recommends "./$(basename "$DEB")") \
    >"$WORK/install.log" 2>&1 || {
    tail -20 "$WORK/install.log"
    die "apt-get install of the built .deb failed"
}
where="$("${CLEAN_ENV[@]}" sh -c 'cd / && python3 -c "import workerid; print(workerid.__file__)"')"
[ "$where" = /usr/lib/python3/dist-packages/workerid/__init__.py ] || die "installed workerid imports from $where"
[ -x /usr/bin/workerid ] || die "no /usr/bin/workerid"
log "step 4: installed: $where, /usr/bin/workerid ($("${CLEAN_ENV[@]}" /usr/bin/workerid --version))"

# run the tests of debian/tests/control directly, as autopkgtest would
run_direct() {
    local tests t rc=0 tmp
    tests="$(sed -n 's/^Tests:[[:space:]]*//p' "$SRC/debian/tests/control" | tr ',' ' ')"
    for t in $tests; do
        tmp="$(mktemp -d "$WORK/autopkgtest-tmp.XXXXXX")"
        log "step 4: test $t (direct, as root)"
        if (cd "$SRC" && "${CLEAN_ENV[@]}" AUTOPKGTEST_TMP="$tmp" ADTTMP="$tmp" \
            "$SRC/debian/tests/$t"); then
            log "step 4: test $t: PASS"
        else
            log "step 4: test $t: FAIL"
            rc=1
        fi
        rm -rf "$tmp"
    done
    return "$rc"
}

t=$(date +%s)
if [ "${WORKERID_DEB_RUNNER:-autopkgtest}" != direct ] && command -v autopkgtest >/dev/null; then
    log "step 4: autopkgtest (null runner) on the installed package"
    arc=0
    (cd "$WORK" && run "${CLEAN_ENV[@]}" autopkgtest --ignore-restrictions=isolation-container \
        -B --output-dir "$WORK/autopkgtest-out" "$DEB" "$SRC/" -- null) \
        >"$WORK/autopkgtest.log" 2>&1 || arc=$?
    # every line the tests printed, then autopkgtest's summary
    grep -E '^\[apache-mod-wsgi\]|^cli: |^/usr/bin/|^workerid --version' "$WORK/autopkgtest.log" |
        sed 's/^/[check-debian]     /' || true
    if [ -f "$WORK/autopkgtest-out/summary" ]; then
        sed 's/^/[check-debian]     summary: /' "$WORK/autopkgtest-out/summary"
    fi
    if [ "$arc" = 0 ] && [ -s "$WORK/autopkgtest-out/summary" ] &&
        ! grep -qvE '[[:space:]]PASS$' "$WORK/autopkgtest-out/summary"; then
        log "step 4: autopkgtest passed in $(($(date +%s) - t))s"
    elif [ -s "$WORK/autopkgtest-out/summary" ]; then
        tail -40 "$WORK/autopkgtest.log"
        die "autopkgtest failed (exit $arc)"
    else
        # the runner itself did not work here: no summary at all
        tail -20 "$WORK/autopkgtest.log"
        log "step 4: autopkgtest --null did not run (exit $arc): running debian/tests directly"
        installed python3-workerid || die "autopkgtest left python3-workerid uninstalled"
        run_direct || die "debian/tests failed"
        log "step 4: debian/tests passed (direct) in $(($(date +%s) - t))s"
    fi
else
    run_direct || die "debian/tests failed"
    log "step 4: debian/tests passed (direct) in $(($(date +%s) - t))s"
fi
