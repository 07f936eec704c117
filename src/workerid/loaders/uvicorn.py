"""uvicorn and hypercorn with ``--workers N``.

Both start workers with multiprocessing's *spawn* method, so a worker is a
fresh interpreter whose parent is the supervisor. Neither tells the worker
its index or the count: the count is read from the supervisor's command line
(``--workers``/``-w``), else ``WEB_CONCURRENCY`` (uvicorn's default for
``--workers``).
"""

from __future__ import annotations

import sys

from ._base import Detected
from ._cmdline import (
    option_int,
    parent_pid,
    parent_runs,
    program_namespace,
    self_pid,
    spawned_child,
    web_concurrency,
)


def _detect(program: str, options: tuple[str, ...]) -> Detected | None:
    if program not in sys.modules:
        return None
    argv = parent_runs(program) if spawned_child() else None
    if argv is None:
        # Single-process server: this process is the whole server.
        return Detected(
            loader=program,
            namespace=program_namespace(program, self_pid()),
            supervisor_pid=None,
        )
    count, source = option_int(argv, *options), "procfs"
    if count is None:
        count, source = web_concurrency(), "env"
    return Detected(
        loader=program,
        namespace=program_namespace(program, parent_pid()),
        supervisor_pid=parent_pid(),
        worker_count=count,
        worker_count_source=source if count else None,
    )


def detect() -> Detected | None:
    return _detect("uvicorn", ("--workers",))


def detect_hypercorn() -> Detected | None:
    return _detect("hypercorn", ("-w", "--workers"))
