"""gunicorn config hook: ``gunicorn -c python:workerid.gunicorn app:app``.

gunicorn does not tell its workers how many of them there are. This module's
``post_fork`` runs in each new worker (gunicorn calls it right after the
fork, before the app is loaded in that worker) and hands the arbiter's
worker count to workerid, so ``worker_count()`` is the server's real setting,
``TTIN``/``TTOU`` changes included.

Already have a config file? Import the hook there::

    from workerid.gunicorn import post_fork  # noqa: F401

or call :func:`publish` from your own ``post_fork``. gunicorn reads every
module-level name that matches a setting, so this module defines nothing
else at module level that gunicorn could mistake for one.
"""

from __future__ import annotations

from typing import Any

from .loaders import gunicorn as _loader


def publish(server: Any) -> None:
    """Tell workerid in this worker the arbiter's current worker count."""
    count = getattr(server, "num_workers", None)
    if not isinstance(count, int) or count < 1:
        count = getattr(getattr(server, "cfg", None), "workers", None)
    if isinstance(count, int) and count > 0:
        _loader.published_count = count


def post_fork(server: Any, worker: Any) -> None:
    publish(server)
