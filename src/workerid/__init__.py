"""workerid: uWSGI's worker ID, worker count and start time, under any loader.

::

    import workerid

    workerid.worker_id()        # 1..N, reused when a worker is replaced
    workerid.worker_count()     # N
    workerid.start_time()       # epoch seconds, shared by one server run
    workerid.identity()         # all of it, and where each value came from

    @workerid.once("seed-ranges")
    def seed(): ...             # runs in one worker per server run

None of these raise. See docs/design.md for how it works.
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
from ._once import once

__version__ = "0.1.0"

__all__ = [
    "Identity",
    "__version__",
    "configure",
    "identity",
    "is_first_worker",
    "once",
    "start_time",
    "worker_count",
    "worker_id",
]
