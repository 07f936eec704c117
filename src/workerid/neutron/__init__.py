"""Unmodified OpenStack Neutron under Apache mod_wsgi (and any loader): ``install()``.

Neutron 2026.1 asks uWSGI for its worker ID, worker count and start time
(``neutron.common.wsgi_utils``). Under mod_wsgi there is no uWSGI: no worker
is worker 1, so ML2's default network segment ranges are never seeded
(``openstack network create`` fails with 503 NoNetworkAvailable), and the
workers' hash-ring rows carry different start times, so they delete each
other's rows (LP: #2150285). ``install()`` answers those questions with
workerid before Neutron loads::

    import workerid.neutron
    workerid.neutron.install()
    from neutron.wsgi.api import application

which is all ``workerid.neutron.wsgi`` does. Under uWSGI, uWSGI's own worker
ID and start time are kept (workerid passes them through) and two faults
Neutron has there too are fixed: 28.0.0 counts workers by ``api_workers`` or
the CPUs instead of ``uwsgi.numproc``, and a worker respawned after
``kill -9`` collides with its own dead hash-ring row.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

import workerid
from workerid import _config as _core_config

from . import _config, _importhook, _patches

__all__ = ["DEFAULT_SEED_TIMEOUT", "install", "installed"]

log = logging.getLogger("workerid.neutron")

#: how long a request that allocates a segment waits for another worker's
#: seeding of the default segment ranges before it goes on anyway (65,536
#: geneve allocations took 1-2 s on 2 cores here)
DEFAULT_SEED_TIMEOUT = 90.0

_lock = threading.Lock()
_installed = False


def installed() -> bool:
    """True once :func:`install` has put its patches in place (or queued them)."""
    return _installed


def install(
    *,
    lock_dir: str | None = None,
    namespace: str | None = None,
    seed_timeout: float = DEFAULT_SEED_TIMEOUT,
) -> bool:
    """Make Neutron's worker ID, count and start time come from workerid.

    Call it before ``neutron.wsgi.api`` is imported. The lock directory is,
    first match: ``lock_dir``, ``WORKERID_DIR``, ``<[oslo_concurrency]
    lock_path>/workerid`` from Neutron's own config files (Ubuntu:
    ``/var/lib/neutron/lock/workerid``). Returns whether patches were
    installed (``False`` on a second call). Never raises for a bad
    environment; a problem is logged and reported by
    ``workerid.identity().degraded``.

    The first worker of a run to load Neutron seeds the ML2 default segment
    ranges; the others go on loading and serving meanwhile, and a request of
    theirs that allocates a network segment (network create, segment create,
    a dynamic segment) waits for the seeding before its transaction opens
    (at most ``seed_timeout`` seconds), so it never meets the 503
    NoNetworkAvailable window.
    """
    global _installed
    with _lock:
        if _installed:
            return False
        if lock_dir is None and not os.environ.get(_core_config.ENV_DIR):
            base, origin = _config.lock_path()
            lock_dir = os.path.join(base, "workerid")
            log.debug("workerid: lock directory %s (lock_path from %s)", lock_dir, origin)
        if lock_dir is not None or namespace is not None:
            workerid.configure(lock_dir=lock_dir, namespace=namespace)
        if "neutron.wsgi.api" in sys.modules or "neutron.plugins.ml2.managers" in sys.modules:
            log.warning(
                "workerid: install() ran after Neutron was loaded; the segment range seeding "
                "may already have been skipped. Call it before importing neutron.wsgi.api"
            )
        _patches.seed_lock_timeout = seed_timeout
        _patches.seed_timeout = seed_timeout
        _importhook.when_imported("neutron.common.wsgi_utils", _patches.patch_wsgi_utils)
        _importhook.when_imported("neutron.service", _patches.patch_service)
        _importhook.when_imported("neutron.plugins.ml2.managers", _patches.patch_managers)
        _importhook.when_imported("neutron.plugins.ml2.plugin", _patches.patch_plugin)
        _importhook.when_imported("neutron.services.segments.db", _patches.patch_segments)
        _importhook.when_imported("neutron.wsgi.api", _patches.patch_wsgi_api)
        _importhook.when_imported("neutron.db.ovn_hash_ring_db", _patches.patch_hash_ring_db)
        _installed = True
    # Decide now, in this worker, before Neutron loads; the summary is logged
    # once Neutron has set up logging (see _patches.patch_wsgi_api).
    workerid.identity()
    return True
