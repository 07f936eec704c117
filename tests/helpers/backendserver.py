"""A pre-fork server whose workers keep reporting their backend identity.

``python tests/helpers/backendserver.py OUT N``: the master forks N workers
(respawning any that dies); each worker asks workerid (``WORKERID_BACKEND``
etc. come from the environment) and rewrites ``OUT/<pid>.json`` every time
what it answers changes (worker ID, fencing token, degraded), checking every
10 ms, so a test can sample "who answers which ID" while it partitions,
restarts and kills. ``on_change`` calls are appended to ``OUT/<pid>.changes``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _master import serve
from _report import write


def _worker(out: str) -> None:
    import workerid

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    changes = os.path.join(out, f"{os.getpid()}.changes")

    def on_change(ident: workerid.Identity) -> None:
        with open(changes, "a") as f:
            f.write(json.dumps([time.time(), ident.worker_id, ident.fencing_token]) + "\n")

    workerid.configure(on_change=on_change)
    last = None
    while True:
        ident = workerid.identity()
        now = (ident.worker_id, ident.fencing_token, ident.degraded, ident.worker_count)
        if now != last:
            data = ident.as_dict()
            data["at"] = time.time()
            write(os.path.join(out, f"{os.getpid()}.json"), data)
            last = now
        time.sleep(0.01)


def main() -> None:
    out, count = sys.argv[1], int(sys.argv[2])

    def spawn() -> int:
        pid = os.fork()
        if pid == 0:
            try:
                _worker(out)
            finally:
                os._exit(1)
        return pid

    def started(pids: list[int]) -> None:
        write(os.path.join(out, "master.json"), {"pid": os.getpid(), "workers": pids})

    serve(count, spawn, started)


if __name__ == "__main__":
    main()
