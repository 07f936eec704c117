"""The master loop of the tests' servers (shared by the helper scripts; no workerid import).

Start ``count`` workers, respawn any that dies, and on SIGTERM kill them all
with SIGKILL, reap them and return: what gunicorn's arbiter and Apache's
parent do, in a dozen lines.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable


def serve(count: int, spawn: Callable[[], int], started: Callable[[list[int]], None]) -> None:
    """``spawn()`` starts one worker and returns its PID; ``started(pids)`` runs once all are up."""
    children: set[int] = set()
    stopping = False

    def stop(_signo: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, stop)
    for _ in range(count):
        children.add(spawn())
    started(sorted(children))
    while children:
        try:
            pid, _status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if pid in children:
            children.discard(pid)
            if not stopping:
                children.add(spawn())
