"""The probe application that ``workerid verify`` serves under each server.

Per request it answers JSON: ``workerid.identity().as_dict()`` plus ``pid``,
``ppid`` and ``module`` (the ``workerid`` file it imported), and records the
worker in the SQLite file named by ``WORKERID_VERIFY_DB`` (see
:mod:`.records`), so the harness can check workers it no longer reaches. Its
``seed`` initializer runs under ``workerid.once("seed")`` and inserts one row
per run, so the harness can count how often it ran per generation.

Nothing happens at import: uWSGI imports the app in its master before it
forks, and a probe that asked workerid there would be asking in the master.

``?hold=SECONDS`` keeps the worker busy (blocking, in the ASGI twin too), so
concurrent requests spread over all workers.

Served as ``workerid.verify.probe:application`` (gunicorn, uWSGI),
``workerid.verify.probe:asgi_application`` (uvicorn), and through a small
generated ``.wsgi`` script under mod_wsgi (which sets ``os.environ`` first:
mod_wsgi's ``SetEnv``/``--setenv`` reach the WSGI environ, not ``os.environ``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

import workerid
from workerid import _procfs

from . import records

_MAX_HOLD = 5.0
_local: dict[str, Any] = {}
_guard = threading.Lock()


@workerid.once("seed")
def _seed(ident: dict[str, Any]) -> None:
    records.record_seed(_conn(), ident)


def _conn() -> sqlite3.Connection:
    # One connection per process: a worker forked after the master opened
    # one must not share its file descriptor.
    pid = os.getpid()
    with _guard:
        if _local.get("pid") != pid:
            _local.clear()
            _local["pid"] = pid
            _local["conn"] = records.connect(os.environ[records.ENV_DB])
            _local["ticks"] = _procfs.start_ticks(pid) or 0
        conn: sqlite3.Connection = _local["conn"]
        return conn


def server_started() -> int | None:
    """The server's own idea of when this run began, in whole seconds (for the report).

    Apache's ``restart_time`` (server metrics), uWSGI's ``started_on``, else
    the supervising parent's start time: what a naive start time would be.
    """
    mod: Any = sys.modules.get("mod_wsgi")
    if mod is not None and hasattr(mod, "server_metrics"):
        metrics = mod.server_metrics()
        if isinstance(metrics, dict) and "restart_time" in metrics:
            return int(metrics["restart_time"])
    mod = sys.modules.get("uwsgi")
    if mod is not None and hasattr(mod, "started_on"):
        return int(mod.started_on)
    return _procfs.start_time(os.getppid())


def answer(query: str) -> dict[str, Any]:
    """Everything one request does, shared by the WSGI and ASGI faces."""
    ident = workerid.identity().as_dict()
    body: dict[str, Any] = {**ident, "pid": os.getpid(), "ppid": os.getppid()}
    # which workerid the server imported: the tests check it is their tree's
    body["module"] = workerid.__file__
    try:
        body["server_started"] = server_started()
    except Exception as exc:
        body["server_started"] = None
        body["server_started_error"] = repr(exc)
    try:
        _seed(ident)
        conn = _conn()
        with _guard:
            records.record_worker(conn, ident, int(_local["ticks"]))
    except Exception as exc:  # the probe must answer even when recording fails
        body["record_error"] = f"{type(exc).__name__}: {exc}"
    hold = parse_qs(query).get("hold", ["0"])[0]
    try:
        seconds = min(max(float(hold), 0.0), _MAX_HOLD)
    except ValueError:
        seconds = 0.0
    if seconds:
        time.sleep(seconds)
    return body


def _encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, default=str).encode()


StartResponse = Callable[..., Any]


def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    data = _encode(answer(str(environ.get("QUERY_STRING", ""))))
    start_response(
        "200 OK",
        [("Content-Type", "application/json"), ("Content-Length", str(len(data)))],
    )
    return [data]


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


async def asgi_application(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    # Blocking on purpose: a busy worker must not accept more connections.
    data = _encode(answer(scope.get("query_string", b"").decode("latin-1")))
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": data})
