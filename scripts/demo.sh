#!/usr/bin/env bash
# Main job until `workerid verify` lands: a real gunicorn with 4 workers,
# each answering with its workerid identity; then kill -9 of worker 2.
set -euo pipefail
VENV="${WORKERID_VENV:-/opt/workerid/venv}"
WORK="$(mktemp -d /tmp/workerid-demo.XXXXXX)"
chmod 755 "$WORK"
trap '[ -f "$WORK/pid" ] && kill "$(cat "$WORK/pid")" 2>/dev/null; sleep 1; rm -rf "$WORK"' EXIT
cat > "$WORK/app.py" <<'PY'
import json, os, workerid
def application(environ, start_response):
    body = json.dumps({"pid": os.getpid(), **{k: v for k, v in workerid.identity().as_dict().items()
                       if k in ("worker_id", "worker_count", "start_time", "loader")}}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Connection", "close")])
    return [body]
PY
PORT=$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
WORKERID_DIR="$WORK/locks" "$VENV/bin/gunicorn" -c python:workerid.gunicorn -w 4 \
    --chdir "$WORK" -b "127.0.0.1:$PORT" -p "$WORK/pid" app:application 2>"$WORK/log" &
poll() {  # ask until 4 distinct PIDs have answered
    "$VENV/bin/python" - "$PORT" <<'PY'
import json, sys, time, urllib.request
seen, deadline = {}, time.time() + 30
while len(seen) < 4 and time.time() < deadline:
    try:
        d = json.load(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/", timeout=2))
        seen[d["pid"]] = d
    except OSError:
        time.sleep(0.1)
for d in sorted(seen.values(), key=lambda d: d["worker_id"] or 0):
    print("  ", d)
PY
}
echo "gunicorn -w 4, cold start:"; poll
VICTIM=$(WORKERID_DIR="$WORK/locks" "$VENV/bin/workerid" status --json | "$VENV/bin/python" -c \
    'import json,sys; r=json.load(sys.stdin); print([s["pid"] for s in r["namespaces"][0]["runs"][0]["slots"] if s["worker_id"]==2][0])')
echo "kill -9 $VICTIM (worker 2); gunicorn respawns it:"; kill -9 "$VICTIM"; sleep 1; poll
WORKERID_DIR="$WORK/locks" "$VENV/bin/workerid" status
