"""gunicorn config hook: ``gunicorn -c python:workerid.gunicorn app:app``.

gunicorn does not tell its workers how many of them there are. This module's
hooks give workerid the arbiter's live count:

* ``nworkers_changed`` runs in the arbiter whenever ``num_workers`` changes
  (at start, on ``TTIN``/``TTOU``, on ``HUP``: ``arbiter.py``, the
  ``num_workers`` setter) and writes it to a page of shared memory made
  before the first worker is forked (an anonymous ``MAP_SHARED`` mapping is
  inherited by ``fork``);
* ``post_fork`` runs in each new worker right after the fork, before the app
  is loaded, and hands the count and that page to workerid,

so ``worker_count()`` in every live worker is the arbiter's current count,
also in workers forked before a ``TTIN``.

With :mod:`workerid.prometheus` installed, ``post_fork`` also takes the new
worker's metrics key at once (retiring what a dead predecessor's live gauges
left), and ``child_exit`` retires an exited worker's live gauges in the
arbiter, as ``prometheus_client.multiprocess.mark_process_dead`` does for PID
files.

Already have a config file? Import the hooks there::

    from workerid.gunicorn import child_exit, nworkers_changed, post_fork  # noqa: F401

or call :func:`post_fork` from your own ``post_fork`` (and :func:`nworkers_changed`
and :func:`child_exit` from yours). gunicorn reads every module-level name that matches a setting,
so this module defines nothing else at module level that gunicorn could
mistake for one.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from .loaders import gunicorn as _loader


def publish(server: Any) -> None:
    """Tell workerid in this worker the arbiter's current worker count."""
    count = getattr(server, "num_workers", None)
    if not isinstance(count, int) or count < 1:
        count = getattr(getattr(server, "cfg", None), "workers", None)
    if isinstance(count, int) and count > 0:
        _loader.published_count = count
    _loader.shared_count = _loader.arbiter_page


def post_fork(server: Any, worker: Any) -> None:
    """In each new worker, right after the fork: take the arbiter's count (:func:`publish`)."""
    publish(server)
    metrics = sys.modules.get("workerid.prometheus")  # installed in the arbiter (--preload)
    if metrics is not None:
        metrics.activate()


def child_exit(server: Any, worker: Any) -> None:
    """In the arbiter, after a worker exited: retire its live prometheus gauges."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from . import prometheus

        prometheus.mark_process_dead(worker.pid)


def nworkers_changed(server: Any, new_value: Any, old_value: Any) -> None:
    """In the arbiter: publish the new count to every live worker."""
    _loader.write_live_count(new_value)
