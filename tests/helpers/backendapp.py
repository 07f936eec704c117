"""A WSGI app for gunicorn whose workers keep reporting their backend identity.

``gunicorn -w 4 --chdir tests/helpers backendapp:app`` with ``BACKENDAPP_OUT``
set: at import (in each worker: no ``--preload``) a thread starts that
rewrites ``$BACKENDAPP_OUT/<hostname>-<pid>.json`` whenever what the worker
answers changes (checked every 10 ms). The PID is the worker's own, which in
a PID namespace is not the test's: the tests map it (``helpers.ns_pids``).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _report import write

import workerid

OUT = os.environ["BACKENDAPP_OUT"]


def _report() -> None:
    host = os.uname().nodename
    path = os.path.join(OUT, f"{host}-{os.getpid()}.json")
    last = None
    while True:
        ident = workerid.identity()
        now = (ident.worker_id, ident.fencing_token, ident.degraded)
        if now != last:
            data = ident.as_dict()
            data["host"], data["at"] = host, time.time()
            write(path, data)
            last = now
        time.sleep(0.01)


threading.Thread(target=_report, daemon=True).start()


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{workerid.worker_id()}\n".encode()]
