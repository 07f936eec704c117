"""workerid: uWSGI's worker ID, worker count and start time, under any loader.

::

    import workerid

    workerid.worker_id()        # 1..N, reused when a worker is replaced
    workerid.worker_count()     # N
    workerid.start_time()       # epoch seconds, shared by one server run
    workerid.identity()         # all of it, and where each value came from

    @workerid.once("seed-ranges")
    def seed(): ...             # runs in one worker per server run

    workerid.run_once("seed", fn)   # the same, returning an OnceResult

    @workerid.once("migrate", scope="deploy")
    def migrate(): ...          # once per deploy (WORKERID_DEPLOY), across hosts
                                # with a backend (WORKERID_BACKEND)

``worker_id()`` and the other getters never raise (a missing value is
``None`` and ``identity().degraded`` says why); ``configure()`` raises on
invalid arguments, and ``once`` raises ``OnceTimeout``/``OnceFailed`` when it
could not make sure the function ran. See docs/design.md for how it works.
"""

from __future__ import annotations

from ._identity import (
    Identity,
    configure,
    identity,
    is_first_worker,
    start_time,
    worker_count,
    worker_id,
)
from ._once import (
    Degraded,
    OnceError,
    OnceFailed,
    OnceResult,
    OnceTimeout,
    OnceUnavailable,
    Outcome,
    Scope,
    once,
    run_once,
    try_once,
    wait_done,
)

__version__ = "0.1.0"

__all__ = [
    "Degraded",
    "Identity",
    "OnceError",
    "OnceFailed",
    "OnceResult",
    "OnceTimeout",
    "OnceUnavailable",
    "Outcome",
    "Scope",
    "__version__",
    "configure",
    "identity",
    "is_first_worker",
    "once",
    "run_once",
    "start_time",
    "try_once",
    "wait_done",
    "worker_count",
    "worker_id",
]
