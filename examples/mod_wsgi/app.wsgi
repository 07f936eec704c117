"""A plain WSGI application under Apache mod_wsgi (no framework).

Serve with::

    mod_wsgi-express start-server app.wsgi --processes 4 --server-metrics

(as root add ``--user www-data --group www-data``, with this file somewhere
www-data can read). ``--server-metrics`` lets workerid tell an Apache hard
restart from a graceful one, so a restart is a new start time.
"""

import json
import os

import workerid


def record(event):
    """Append ``event`` to the file named by ``EXAMPLE_EVENTS``, if set (the tests count them)."""
    path = os.environ.get("EXAMPLE_EVENTS")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"{event} {os.getpid()} {workerid.worker_id()}\n")


@workerid.once("seed", timeout=60)
def seed():
    """Runs in one daemon process per server run; the others wait, then skip."""
    record("seed")


# mod_wsgi loads this file in each daemon process (on its first request, or at
# start with WSGIImportScript), so this runs once per process and the seeding
# once per server run.
seed()


def application(environ, start_response):
    body = json.dumps(
        {
            "pid": os.getpid(),
            "worker_id": workerid.worker_id(),  # 1..4, reused by a replacement process
            "worker_count": workerid.worker_count(),  # 4, mod_wsgi's processes
            "start_time": workerid.start_time(),  # one value per server run
        }
    ).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]
