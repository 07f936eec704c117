#!/usr/bin/env bash
# Bring up what an end-to-end test of Neutron (26.0.x to 29.0.x) under Apache mod_wsgi needs, on a fresh
# Debian 12 machine, as root, without systemd, with network only to apt and PyPI:
#
#   * apt: MariaDB, OVN central (ovsdb-server + schemas), crudini, Apache + apxs, Python headers
#   * MariaDB started by hand (no systemd), database `neutron`, user neutron/changeme
#   * OVN NB and SB ovsdb-servers started by hand on tcp:127.0.0.1:6641 / :6642, and ovn-northd
#     (Neutron's network create needs NB_Global options:max_tunid, which northd writes)
#   * a world-readable venv on /usr/bin/python3 with neutron==$NEUTRON_VERSION (default 28.0.0) and
#     PyMySQL, constrained by its OpenStack release's upper-constraints (vendored:
#     upper-constraints-2025.1.txt for 26.x ... upper-constraints-2026.2.txt for 29.x), and mod_wsgi
#     (compiled from source against Debian's libpython3.11, not constrained)
#   * /etc/neutron-e2e/{neutron.conf,plugins/ml2/ml2_conf.ini,api-paste.ini} as in the manual
#     verification of LP: #2150285, plus what running without RabbitMQ needs
#   * system user `neutron`, lock path /var/lib/neutron/lock, `neutron-db-manage upgrade head`
#
# Idempotent: a second run checks what is there, starts what is not running, and takes seconds.
# It does not start Neutron itself. `tests/e2e/neutron_stop.sh` stops MariaDB and OVN.
# Daemon state, pid files and logs: $NEUTRON_E2E_STATE (default /var/lib/neutron-e2e).
#
# Overridable: NEUTRON_VENV, NEUTRON_E2E_ETC, NEUTRON_E2E_STATE, NEUTRON_VERSION.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NEUTRON_VERSION="${NEUTRON_VERSION:-28.0.0}"
VENV="${NEUTRON_VENV:-/opt/workerid/neutron-venv}"
ETC="${NEUTRON_E2E_ETC:-/etc/neutron-e2e}"
STATE="${NEUTRON_E2E_STATE:-/var/lib/neutron-e2e}"   # OVN dbs, pid files, logs of what we start
SVC_USER=neutron
LOCK_PATH=/var/lib/neutron/lock
DB_NAME="${NEUTRON_E2E_DB:-neutron}"   # one database per Neutron release: their schemas differ
DB_URL="mysql+pymysql://neutron:changeme@localhost/$DB_NAME"
[[ "$DB_NAME" =~ ^[a-z][a-z0-9_]*$ ]] || { echo "[neutron_env] ERROR: NEUTRON_E2E_DB must be a plain name" >&2; exit 1; }
PY=/usr/bin/python3
LIBPYTHON=/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0

ms() { echo $(( $(date +%s%N) / 1000000 )); }
fmt() { printf '%d.%01ds' $(( $1 / 1000 )) $(( $1 % 1000 / 100 )); }
T0=$(ms)
STEP_T=$T0
STEP_NAME=""
step() {  # step NAME: print how long the previous step took, then start timing this one
    local now; now=$(ms)
    [ -n "$STEP_NAME" ] && printf '[neutron_env] %-26s %8s  (total %s)\n' "$STEP_NAME" \
        "$(fmt $(( now - STEP_T )))" "$(fmt $(( now - T0 )))"
    STEP_NAME=$1
    STEP_T=$now
}
die() { echo "[neutron_env] ERROR: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root"
umask 022

# --------------------------------------------------------------------------------------------
step "apt packages"
PKGS=(mariadb-server mariadb-client ovn-central openvswitch-common crudini
      apache2 apache2-dev python3-dev python3-venv gcc make curl procps)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    # Without systemd, package scripts must not try to start daemons: we start them by hand.
    # Keep an existing policy-rc.d; install a temporary "deny all" one otherwise.
    tmp_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        tmp_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if [ -n "$tmp_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
fi

# --------------------------------------------------------------------------------------------
step "service user + dirs"
if ! id "$SVC_USER" >/dev/null 2>&1; then
    useradd --system --user-group --home-dir /var/lib/neutron --no-create-home \
        --shell /usr/sbin/nologin "$SVC_USER"
fi
install -d -m 0755 -o "$SVC_USER" -g "$SVC_USER" /var/lib/neutron /var/log/neutron
# oslo_concurrency lock_path; also where workerid.neutron puts its lock dir by default.
install -d -m 0700 -o "$SVC_USER" -g "$SVC_USER" "$LOCK_PATH"
install -d -m 0755 "$STATE" "$STATE/ovn" "$STATE/log" "$STATE/run"

# --------------------------------------------------------------------------------------------
step "mariadb start"
MYSQL_SOCK=/run/mysqld/mysqld.sock
MYSQL_DIR=$STATE/mariadb   # pid file and error log: must be writable by the mysql user
MYSQL_PID=$MYSQL_DIR/mariadbd.pid
install -d -m 0755 -o mysql -g mysql /run/mysqld "$MYSQL_DIR"
if [ ! -d /var/lib/mysql/mysql ]; then
    mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
fi
if mariadb-admin --connect-timeout=2 --socket="$MYSQL_SOCK" ping >/dev/null 2>&1; then
    echo "[neutron_env] mariadb already running"
else
    # setsid + nohup: detach from our session so the server outlives this script.
    setsid nohup /usr/sbin/mariadbd --user=mysql --pid-file="$MYSQL_PID" \
        --socket="$MYSQL_SOCK" --bind-address=127.0.0.1 --port=3306 \
        --log-error="$MYSQL_DIR/error.log" </dev/null >/dev/null 2>&1 &
    for _ in $(seq 1 300); do
        mariadb-admin --connect-timeout=2 --socket="$MYSQL_SOCK" ping >/dev/null 2>&1 && break
        sleep 0.1
    done
    mariadb-admin --socket="$MYSQL_SOCK" ping >/dev/null 2>&1 \
        || { tail -20 "$MYSQL_DIR/error.log" >&2; die "mariadb did not start"; }
fi
mariadb --socket="$MYSQL_SOCK" -u root <<EOF
CREATE DATABASE IF NOT EXISTS \`$DB_NAME\`;
CREATE USER IF NOT EXISTS 'neutron'@'localhost' IDENTIFIED BY 'changeme';
GRANT ALL PRIVILEGES ON \`$DB_NAME\`.* TO 'neutron'@'localhost';
FLUSH PRIVILEGES;
EOF

# --------------------------------------------------------------------------------------------
step "ovn nb/sb ovsdb-servers"
start_ovsdb() {  # start_ovsdb nb|sb PORT
    local which=$1 port=$2
    local db=$STATE/ovn/ovn${which}_db.db
    local schema=/usr/share/ovn/ovn-${which}.ovsschema
    local pid=$STATE/run/ovsdb-server-${which}.pid
    local ctl=$STATE/run/ovsdb-server-${which}.ctl
    local sock=$STATE/run/ovn${which}_db.sock
    [ -f "$schema" ] || die "no schema $schema"
    if [ ! -f "$db" ]; then
        ovsdb-tool create "$db" "$schema"
    elif [ "$(ovsdb-tool needs-conversion "$db" "$schema")" = yes ]; then
        ovsdb-tool convert "$db" "$schema"
    fi
    if [ -f "$pid" ] && kill -0 "$(cat "$pid")" 2>/dev/null; then
        echo "[neutron_env] ovsdb-server $which already running (pid $(cat "$pid"))"
        return
    fi
    ovsdb-server "$db" --detach --no-chdir --pidfile="$pid" --unixctl="$ctl" \
        --remote="punix:$sock" --remote="ptcp:${port}:127.0.0.1" \
        --log-file="$STATE/log/ovsdb-server-${which}.log"
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return
        sleep 0.1
    done
    die "ovsdb-server $which not listening on 127.0.0.1:$port"
}
start_ovsdb nb 6641
start_ovsdb sb 6642

step "ovn-northd"
# Needed: Neutron's OVN driver reads NB_Global.options:max_tunid on every network create
# (mech_driver._get_max_tunid); ovn-northd creates that option. Without it network create
# fails with 500 MechanismDriverError (StopIteration: no NB_Global row).
NORTHD_PID=$STATE/run/ovn-northd.pid
if [ -f "$NORTHD_PID" ] && kill -0 "$(cat "$NORTHD_PID")" 2>/dev/null; then
    echo "[neutron_env] ovn-northd already running (pid $(cat "$NORTHD_PID"))"
else
    ovn-northd --ovnnb-db="unix:$STATE/run/ovnnb_db.sock" --ovnsb-db="unix:$STATE/run/ovnsb_db.sock" \
        --pidfile="$NORTHD_PID" --unixctl="$STATE/run/ovn-northd.ctl" \
        --log-file="$STATE/log/ovn-northd.log" --detach --no-chdir
fi
for _ in $(seq 1 100); do
    ovn-nbctl --db="unix:$STATE/run/ovnnb_db.sock" --timeout=2 \
        get NB_Global . options:max_tunid >/dev/null 2>&1 && break
    sleep 0.1
done
ovn-nbctl --db="unix:$STATE/run/ovnnb_db.sock" --timeout=2 get NB_Global . options:max_tunid \
    >/dev/null || die "ovn-northd did not set NB_Global options:max_tunid"

# --------------------------------------------------------------------------------------------
step "venv"
pip_q() {  # pip, quiet; on failure show the tail of its output (minus find-links noise)
    local log rc=0
    log=$(mktemp)
    "$VENV/bin/pip" "$@" >"$log" 2>&1 || rc=$?
    if [ $rc -ne 0 ]; then
        grep -v "is ignored: it is neither a file nor a directory" "$log" | tail -30 >&2
    fi
    rm -f "$log"
    return $rc
}
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
    pip_q install -q --upgrade pip
fi
# Unconstrained, pip picks the newest neutron-lib (5.x), with which neutron 28.0.0 answers
# GET /v2.0/networks with 500 ("'Context' object has no attribute 'tenant_id'"). Install with
# the release's OpenStack upper constraints (vendored beside this script) as upstream CI does.
case "$NEUTRON_VERSION" in
    26.*) CONSTRAINTS=$HERE/upper-constraints-2025.1.txt ;;
    27.*) CONSTRAINTS=$HERE/upper-constraints-2025.2.txt ;;
    28.*) CONSTRAINTS=$HERE/upper-constraints-2026.1.txt ;;
    29.*) CONSTRAINTS=$HERE/upper-constraints-2026.2.txt ;;
    *) die "no upper constraints for neutron $NEUTRON_VERSION (26.x to 29.x are supported)" ;;
esac
[ -f "$CONSTRAINTS" ] || die "missing $CONSTRAINTS"
STAMP="$VENV/.neutron-e2e.stamp"
# pyroute2: the neutron 29.0.0 wheel no longer lists it, yet neutron-db-manage imports it
# (neutron/privileged/agent/linux/__init__.py); 28.0.x lists it, so naming it changes nothing there.
# python-openstackclient: the proof drives Neutron with the real `openstack` client, as the
# reference fix's manual check does (OS_AUTH_TYPE=none); the release's own, from its constraints.
want_stamp="neutron==$NEUTRON_VERSION pymysql pyroute2 python-openstackclient $(sha256sum "$CONSTRAINTS" | cut -c1-16)"
had_stamp=$(cat "$STAMP" 2>/dev/null || true)
# One venv per release: installing a release over another's venv would leave a mix of two
# constraint sets (and the other release's round would test the wrong Neutron).
case "$had_stamp" in
    ""|"neutron==$NEUTRON_VERSION "*) ;;
    *) die "$VENV holds ${had_stamp%% *}, not neutron==$NEUTRON_VERSION: one venv per release (NEUTRON_VENV)" ;;
esac
if [ "$had_stamp" != "$want_stamp" ]; then
    pip_q install -q -c "$CONSTRAINTS" "neutron==$NEUTRON_VERSION" pymysql pyroute2 \
        python-openstackclient
    echo "$want_stamp" > "$STAMP"
fi

step "uWSGI (from source)"
# Neutron's own supported loader, for the uWSGI before/after (tests/e2e/test_neutron_uwsgi.py)
# and bench/neutron_startup.py. Not in OpenStack's upper constraints; pinned to what was measured.
if [ ! -x "$VENV/bin/uwsgi" ]; then
    pip_q install -q --no-cache-dir "uWSGI==2.0.31"
fi

step "mod_wsgi (from source)"
if ! "$VENV/bin/python" -c 'import mod_wsgi.server' 2>/dev/null; then
    pip_q install -q --no-cache-dir --no-binary mod_wsgi mod_wsgi
fi
MODSO=$("$VENV/bin/mod_wsgi-express" module-location)
# Capture first: with pipefail, `ldd | grep -q` fails whenever grep exits before
# ldd has written everything (ldd gets SIGPIPE), which happened in CI.
LDD_OUT=$(ldd "$MODSO")
grep -q "libpython3.11.so.1.0 => .*$(basename "$LIBPYTHON")" <<<"$LDD_OUT" \
    || { echo "$LDD_OUT" >&2; die "$MODSO does not link $LIBPYTHON"; }
[ "$(readlink -f "$(ldd "$MODSO" | awk '/libpython3.11/ {print $3}')")" = "$(readlink -f "$LIBPYTHON")" ] \
    || die "$MODSO links another libpython"
chmod -R a+rX "$VENV"

# --------------------------------------------------------------------------------------------
step "neutron config"
install -d -m 0755 "$ETC" "$ETC/plugins/ml2"
CONF=$ETC/neutron.conf
ML2=$ETC/plugins/ml2/ml2_conf.ini
# The PyPI wheel ships api-paste.ini under <venv>/etc/neutron/.
cp "$VENV/etc/neutron/api-paste.ini" "$ETC/api-paste.ini"
touch "$CONF" "$ML2"
# As in the manual verification of LP: #2150285 (Ubuntu's packaged neutron.conf already has
# core_plugin = ml2; the PyPI package ships no neutron.conf, so it is set here).
crudini --set "$CONF" DEFAULT core_plugin ml2
crudini --set "$CONF" DEFAULT service_plugins network_segment_range
crudini --set "$CONF" DEFAULT auth_strategy noauth
crudini --set "$CONF" DEFAULT api_paste_config "$ETC/api-paste.ini"
crudini --set "$CONF" database connection "$DB_URL"
# Without a RabbitMQ server: network create hangs after commit unless these are set.
crudini --set "$CONF" DEFAULT dhcp_agent_notification False
crudini --set "$CONF" DEFAULT transport_url fake://
crudini --set "$CONF" oslo_messaging_notifications driver noop
crudini --set "$CONF" oslo_concurrency lock_path "$LOCK_PATH"
crudini --set "$ML2" ml2 type_drivers local,geneve
crudini --set "$ML2" ml2 tenant_network_types geneve
crudini --set "$ML2" ml2 mechanism_drivers ovn
crudini --set "$ML2" ml2_type_geneve vni_ranges 1:65536
crudini --set "$ML2" ml2_type_geneve max_header_size 38
crudini --set "$ML2" ovn ovn_nb_connection tcp:127.0.0.1:6641
crudini --set "$ML2" ovn ovn_sb_connection tcp:127.0.0.1:6642
# Readable by the service user only (the file holds the DB password).
chown -R root:"$SVC_USER" "$ETC"
chmod 0640 "$CONF" "$ML2" "$ETC/api-paste.ini"

# --------------------------------------------------------------------------------------------
step "neutron-db-manage upgrade"
"$VENV/bin/neutron-db-manage" --config-file "$CONF" --config-file "$ML2" upgrade head \
    >"$STATE/log/db-manage.log" 2>&1 \
    || { tail -30 "$STATE/log/db-manage.log" >&2; die "neutron-db-manage failed"; }
echo "[neutron_env] neutron-db-manage: $(tail -1 "$STATE/log/db-manage.log") ($(grep -c 'Running upgrade .* -> ' "$STATE/log/db-manage.log") migrations this run)"

step "done"
echo "[neutron_env] total $(fmt $(( $(ms) - T0 )))"
cat <<EOF
[neutron_env] venv:    $VENV ($("$VENV/bin/pip" show neutron | awk '/^Version/ {print "neutron " $2}'))
[neutron_env] config:  OS_NEUTRON_CONFIG_DIR=$ETC (neutron.conf, plugins/ml2/ml2_conf.ini)
[neutron_env] mariadb: pid $(cat "$MYSQL_PID" 2>/dev/null || echo '?'), $DB_URL
[neutron_env] ovn:     nb tcp:127.0.0.1:6641 (pid $(cat "$STATE/run/ovsdb-server-nb.pid")), sb tcp:127.0.0.1:6642 (pid $(cat "$STATE/run/ovsdb-server-sb.pid")), northd pid $(cat "$NORTHD_PID")
EOF
