"""A WSGI app with prometheus_client metrics in multiprocess mode, for real servers.

``PROM_KEYING=workerid`` (the default) calls ``workerid.prometheus.install()``
before the metrics exist; ``PROM_KEYING=pid`` leaves prometheus_client's own
PID files, the side-by-side baseline.

* ``/``          counts the request (``app_requests_total``) and says who answered
* ``/slow?s=N``  holds ``app_in_progress`` (a ``livesum`` gauge) up for N seconds
* ``/metrics``   the merged metrics of every process (``MultiProcessCollector``)

Served as a module (``gunicorn promapp:application``) or as a mod_wsgi
script file (``mod_wsgi-express start-server promapp.py``).
"""

from __future__ import annotations

import json
import os
import time
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any

if os.environ.get("PROM_KEYING", "workerid") == "workerid":
    import workerid.prometheus

    workerid.prometheus.install()

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

import workerid

REQUESTS = Counter("app_requests", "Requests to / answered")
IN_PROGRESS = Gauge("app_in_progress", "Slow requests in progress", multiprocess_mode="livesum")
LATENCY = Histogram("app_latency_seconds", "Time to answer /")

Start = Callable[[str, list[tuple[str, str]]], Any]


def application(environ: dict[str, Any], start_response: Start) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "/")
    if path == "/metrics":
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        body = generate_latest(registry)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]
    if path == "/slow":
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
        seconds = float(query.get("s", ["5"])[0])
        with IN_PROGRESS.track_inprogress():
            time.sleep(seconds)
    else:
        with LATENCY.time():
            REQUESTS.inc()
    key = None
    if os.environ.get("PROM_KEYING", "workerid") == "workerid":
        key = workerid.prometheus.process_key()
    body = json.dumps({"pid": os.getpid(), "worker_id": workerid.worker_id(), "key": key})
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body.encode()]
