"""prometheus_client multiprocess mode keyed by worker, not by PID.

::

    import workerid.prometheus
    workerid.prometheus.install()        # before any metric is created
    from prometheus_client import Counter
    REQUESTS = Counter("requests", "Requests served")

prometheus_client's multiprocess mode writes one set of files per PID, so a
server that recycles workers (``--max-requests``, ``maximum-requests``)
grows its directory without bound and every scrape reads every file
(prometheus/client_python#568). :func:`install` keys the files by worker
ID instead (``counter_w3-<tag>.db``): a replacement continues its
predecessor's counters in the same file, the directory holds about one set
of files per worker, and the live gauges (``livesum``, ``liveall``, ...) of
a dead worker are retired by its replacement, which holds the worker's
kernel lock and so proves the predecessor dead, on every server, ``kill -9``
included. Where workerid cannot prove a worker ID is this process's alone (a
degraded lock directory, a helper process, a master), the key is the PID, as
prometheus_client's own, and workerid says so in the log.

Requires the ``prometheus`` extra: ``pip install workerid[prometheus]``.
"""

from __future__ import annotations

import os
from typing import Any

from .. import _identity
from . import _files
from ._report import Key, collect_garbage, inspect

__all__ = [
    "Key",
    "activate",
    "collect_garbage",
    "inspect",
    "install",
    "installed",
    "mark_process_dead",
    "process_key",
]

_installed = False


def install(path: str | os.PathLike[str] | None = None) -> None:
    """Make prometheus_client write multiprocess files keyed by this worker.

    Call it once per process before any metric is created: at the top of the
    WSGI/ASGI module, or in Django's settings, before the modules that define
    metrics are imported (metrics created earlier keep prometheus_client's
    PID files, and :func:`install` warns about them). ``path`` is the
    directory; without it ``PROMETHEUS_MULTIPROC_DIR`` must name one. Given,
    it is exported as ``PROMETHEUS_MULTIPROC_DIR`` for the collector and for
    the processes this one starts.

    Raises ``ValueError`` if the directory is not set, does not exist, or
    cannot be written: a misconfiguration found at import, not at the first
    request.
    """
    global _installed
    from prometheus_client import values

    if path is not None:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.fspath(path)
    where = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not where:
        raise ValueError(
            "workerid.prometheus.install(): no directory: pass one or set PROMETHEUS_MULTIPROC_DIR"
        )
    if not os.path.isdir(where):
        raise ValueError(f"PROMETHEUS_MULTIPROC_DIR={where!r} is not a directory")
    if not os.access(where, os.W_OK | os.X_OK):
        raise ValueError(f"PROMETHEUS_MULTIPROC_DIR={where!r} is not writable by this user")
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", where)
    from . import _value
    from ._value import WorkerValue

    if values.ValueClass is not WorkerValue:
        early = _created_before()
        values.ValueClass = WorkerValue
        if early:
            _identity.warn(
                "workerid.prometheus.install() came after these metrics were created; they "
                f"keep prometheus_client's PID files: {', '.join(early[:5])}"
            )
    _installed = True
    _value.activate()


def installed() -> bool:
    """Has :func:`install` run in this process (or the one it was forked from)?"""
    return _installed


def activate() -> bool:
    """In a new worker (the ``workerid.gunicorn`` post_fork hook): take its key now.

    A worker's replacement then retires its dead predecessor's live gauges
    when it starts, not at its first write. Nothing happens in a master or a
    helper, or before :func:`install`. True if this process is keyed.
    """
    if not _installed:
        return False
    from ._value import activate as _activate

    return _activate()


def process_key() -> str:
    """The key this process's files carry (computed and locked on first use)."""
    from ._value import ensure_keyed

    return ensure_keyed()


def mark_process_dead(pid: int, path: str | os.PathLike[str] | None = None) -> list[str]:
    """Retire the live gauges of process ``pid``, which has exited: what was removed.

    For a server's "a worker exited" hook (gunicorn's ``child_exit``; the
    ``workerid.gunicorn`` hook module calls it). The files of the key the
    process last used go only if no live process holds that key now; the
    PID's own files (a worker that fell back to PID keys) go as
    ``prometheus_client.multiprocess.mark_process_dead`` removes them.
    """
    where = os.fspath(path) if path is not None else os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not where:
        return []
    removed: list[str] = []
    try:
        locks = _files.scan(where).locks
    except OSError:
        return removed
    for key in sorted(locks):
        if key == str(pid) or _files.holder_pid(where, key) == pid:
            removed += _files.retire_if_dead(where, key) or []
    if str(pid) not in locks:
        removed += _files.retire(where, str(pid))
    return removed


def _created_before() -> list[str]:
    """Names of registered metrics whose values are not ours (created before install)."""
    try:
        from prometheus_client import REGISTRY
        from prometheus_client.metrics import MetricWrapperBase

        from ._value import WorkerValue

        collectors: Any = getattr(REGISTRY, "_collector_to_names", {})
        names = []
        for collector in list(collectors):
            if isinstance(collector, MetricWrapperBase):
                value = getattr(collector, "_value", None)
                if value is not None and not isinstance(value, WorkerValue):
                    names.append(collector._name)
        return sorted(names)
    except Exception:  # a best-effort warning, never a failure
        return []
