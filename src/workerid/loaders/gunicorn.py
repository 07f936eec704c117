"""gunicorn: workers forked by the arbiter; no ordinal, no count, no start time.

The count comes, best first, from the arbiter itself through the
``workerid.gunicorn`` config hook (``-c python:workerid.gunicorn``), from the
arbiter's command line (``-w``/``--workers``), from ``GUNICORN_CMD_ARGS``
(which gunicorn applies after the config file and before the command line,
``app/base.py`` ``load_config``), or from ``WEB_CONCURRENCY``, which gunicorn
reads as the default of ``workers`` (``config.py``). A ``workers = ...`` in a
config file is Python that only the arbiter runs: without the hook it cannot
be known, and ``degraded`` says so. The hook publishes the count when each
worker is forked, so after ``TTIN``/``TTOU`` the workers forked since see the
new count and older ones keep theirs until they are replaced.
"""

from __future__ import annotations

import mmap
import os
import struct
import sys

from ._base import Detected
from ._cmdline import (
    option_int,
    parent_pid,
    parent_runs,
    program_namespace,
    self_pid,
    web_concurrency,
)

#: set in each worker by the workerid.gunicorn hook (post_fork)
published_count: int | None = None
#: the arbiter's shared page with its live count (made by nworkers_changed in
#: the arbiter, inherited by fork; post_fork hands it to the worker)
arbiter_page: mmap.mmap | None = None
shared_count: mmap.mmap | None = None
_COUNT = struct.Struct("=q")


def write_live_count(value: object) -> None:
    """In the arbiter: record ``num_workers`` where its workers can read it."""
    global arbiter_page
    if not isinstance(value, int) or value < 1:
        return  # 0 while the arbiter halts
    if arbiter_page is None:
        arbiter_page = mmap.mmap(-1, _COUNT.size)  # anonymous, MAP_SHARED
    _COUNT.pack_into(arbiter_page, 0, value)


def live_count() -> int | None:
    """The arbiter's current count, from the page this worker inherited; else ``None``."""
    page = shared_count
    if page is None:
        return None
    value: int = _COUNT.unpack_from(page, 0)[0]
    return value if value > 0 else None


def arbiter_count() -> int | None:
    """In the arbiter: the count its ``nworkers_changed`` hook last wrote, which is what
    ``post_fork`` publishes in a worker forked now (both are ``server.num_workers``)."""
    page = arbiter_page
    if page is None:
        return None
    value: int = _COUNT.unpack_from(page, 0)[0]
    return value if value > 0 else None


CONFIG_HINT = (
    "gunicorn: worker count not published by the arbiter; load the hook with "
    "'-c python:workerid.gunicorn' or set WORKERID_COUNT"
)


def _cmd_args() -> list[str]:
    import shlex

    try:
        return shlex.split(os.environ.get("GUNICORN_CMD_ARGS", ""))
    except ValueError:
        return []


def detect() -> Detected | None:
    if "gunicorn" not in sys.modules:
        return None
    argv = parent_runs("gunicorn")
    if argv is None:
        # We are the arbiter (preload_app imports the app in the master) or
        # gunicorn is merely imported: this process is not a worker.
        return Detected(
            loader="gunicorn",
            namespace=program_namespace("gunicorn", self_pid()),
            supervisor_pid=None,
        )
    count, source = published_count, "gunicorn"
    if count is None:
        count, source = option_int(argv, "-w", "--workers"), "procfs"
    if count is None:
        count, source = option_int(_cmd_args(), "-w", "--workers"), "env"
    if count is None:
        count, source = web_concurrency(), "env"
    return Detected(
        loader="gunicorn",
        namespace=program_namespace("gunicorn", parent_pid()),
        supervisor_pid=parent_pid(),
        worker_count=count,
        worker_count_source=source if count else None,
        notes=() if count else (CONFIG_HINT,),
    )
