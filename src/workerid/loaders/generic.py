"""Any other pre-fork server, and single-process servers.

A worker of a pre-fork server is a copy of its parent: same executable, same
command line (``fork`` without ``exec``), or a multiprocessing child. Then
the parent is the supervisor and its life is the server run. Otherwise this
process is the server: a single-process server is worker 1 of 1.
"""

from __future__ import annotations

import os

from .. import _procfs
from ._base import Detected
from ._cmdline import same_program, spawned_child, web_concurrency


def detect() -> Detected:
    ppid = os.getppid()
    me = os.getpid()
    forked_copy = ppid > 1 and same_program(ppid) and _procfs.cmdline(ppid) == _procfs.cmdline(me)
    if forked_copy or spawned_child():
        count = web_concurrency()
        return Detected(
            loader="generic",
            namespace="default",
            supervisor_pid=ppid,
            worker_count=count,
            worker_count_source="env" if count else None,
        )
    return Detected(
        loader="generic",
        namespace="default",
        supervisor_pid=None,
        worker_count=1,
        worker_count_source="procfs",
    )
