"""What every loader module answers, in one shape."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Detected:
    """One server's answer to "who runs me, and what does it tell me?".

    A loader fills in only what its server really publishes; the pipeline in
    ``_identity`` does the rest (election, ledger, fallbacks) the same way
    for every server.
    """

    #: "uwsgi", "mod_wsgi", "gunicorn", "uvicorn", "hypercorn" or "generic"
    loader: str
    #: default namespace (what keeps two servers' slots apart on one host)
    namespace: str
    #: the process whose life is one server run, ``None``: this process is
    #: the server itself (no supervising parent: a single-process server)
    supervisor_pid: int | None
    #: the server's own worker ID, when it has one (uWSGI only)
    native_worker_id: int | None = None
    #: False where the server numbers its workers itself (uWSGI: a master,
    #: mule or spooler has no ID, and must not take one of the workers')
    elects: bool = True
    #: the server's own start time, when it has one (uWSGI only)
    native_start_time: int | None = None
    worker_count: int | None = None
    #: where ``worker_count`` came from ("uwsgi", "mod_wsgi", "env", "procfs")
    worker_count_source: str | None = None
    #: extra material that changes when the server starts a new run without a
    #: new supervisor process (Apache's restart_time on ``-k restart``)
    run_extra: str = ""
    #: candidate start time for a new run, epoch seconds (Apache restart_time)
    start_hint: float | None = None
    #: what the loader could not learn and what the user can do about it
    notes: tuple[str, ...] = ()
    #: False where this process may be forked without Python's at-fork
    #: handlers running (a uWSGI master: see loaders/uwsgi.py), so an answer
    #: cached here could leak into the workers
    cacheable: bool = True
