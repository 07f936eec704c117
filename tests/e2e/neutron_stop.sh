#!/usr/bin/env bash
# Stop what tests/e2e/neutron_env.sh started: ovn-northd, the OVN NB/SB ovsdb-servers and
# MariaDB, each by the PID in its pid file (never by name). Leaves data in place, so a later
# neutron_env.sh run starts them again in seconds. Apache/Neutron are not started by
# neutron_env.sh and are not stopped here.
set -euo pipefail

STATE="${NEUTRON_E2E_STATE:-/var/lib/neutron-e2e}"

alive() {  # alive PID: running and not a zombie (daemons here are reparented to PID 1, which
           # may reap late; kill -0 succeeds on a zombie)
    local st
    st=$(awk '{sub(/.*\) /, ""); print $1}' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$st" ] && [ "$st" != Z ]
}

stop_pidfile() {  # stop_pidfile NAME PIDFILE [TIMEOUT_S]
    local name=$1 pidfile=$2 timeout=${3:-30} pid
    if [ ! -f "$pidfile" ]; then
        echo "[neutron_stop] $name: no pid file ($pidfile), nothing to stop"
        return 0
    fi
    pid=$(cat "$pidfile")
    if ! [[ "$pid" =~ ^[0-9]+$ ]] || ! alive "$pid"; then
        echo "[neutron_stop] $name: pid ${pid:-?} not running"
        rm -f "$pidfile"
        return 0
    fi
    local t0; t0=$(date +%s%N)
    kill -TERM "$pid"
    for _ in $(seq 1 $((timeout * 10))); do
        alive "$pid" || break
        sleep 0.1
    done
    if alive "$pid"; then
        echo "[neutron_stop] $name: pid $pid ignored SIGTERM for ${timeout}s, sending SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
    echo "[neutron_stop] $name: stopped pid $pid ($(( ($(date +%s%N) - t0) / 1000000 )) ms)"
}

stop_pidfile ovn-northd "$STATE/run/ovn-northd.pid" 10
stop_pidfile "ovsdb-server nb" "$STATE/run/ovsdb-server-nb.pid" 10
stop_pidfile "ovsdb-server sb" "$STATE/run/ovsdb-server-sb.pid" 10
# MariaDB flushes InnoDB on SIGTERM; give it longer.
stop_pidfile mariadb "$STATE/mariadb/mariadbd.pid" 60
