"""Loader detection: one module per server, asked in order.

Adding a server is one module answering :func:`detect` with a
:class:`Detected`, plus one line in :data:`_DETECTORS`. Each detector looks
only at what is already in this process (``sys.modules``, ``/proc``,
environment) and never imports a server.
"""

from __future__ import annotations

from collections.abc import Callable

from . import generic, gunicorn, mod_wsgi, uvicorn, uwsgi
from ._base import Detected

__all__ = ["SPAWNING_SERVERS", "Detected", "detect", "live_count", "spawns_its_workers"]

_DETECTORS: tuple[Callable[[], Detected | None], ...] = (
    uwsgi.detect,
    mod_wsgi.detect,
    gunicorn.detect,
    uvicorn.detect,
    uvicorn.detect_hypercorn,
)


def detect(*, explicit_namespace: bool = False) -> Detected:
    """Who runs this process. ``explicit_namespace``: the user named the
    namespace, so processes exec'd by one parent are one server's workers."""
    for detector in _DETECTORS:
        found = detector()
        if found is not None:
            return found
    return generic.detect(explicit_namespace=explicit_namespace)


#: servers that start their workers with multiprocessing's *spawn*
#: (uvicorn ``_subprocess.py``, hypercorn ``run.py``)
SPAWNING_SERVERS = ("uvicorn", "hypercorn")


def spawns_its_workers(det: Detected) -> bool:
    """A worker of a server that starts its workers with multiprocessing *spawn*."""
    return det.loader in SPAWNING_SERVERS and det.supervisor_pid is not None


def live_count(loader: str) -> Callable[[], int | None] | None:
    """A reader of the server's live worker count, if it publishes one to this process."""
    if loader == "gunicorn" and gunicorn.shared_count is not None:
        return gunicorn.live_count
    return None
