"""A process manager that starts workers by fork+exec: ``python execsupervisor.py OUT N``.

Like supervisord or a systemd template unit: it never imports workerid, starts
N ``python execworker.py OUT`` processes with ``subprocess.Popen``, respawns
any that dies, writes ``OUT/supervisor.json`` once all are started, and on
SIGTERM kills its workers and exits.
"""

from __future__ import annotations

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _master import serve
from _report import write

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "execworker.py")


def main() -> None:
    out, count = sys.argv[1], int(sys.argv[2])
    workers: dict[int, subprocess.Popen[bytes]] = {}

    def spawn() -> int:
        proc = subprocess.Popen([sys.executable, WORKER, out])
        # serve() reaps it with os.wait(); Popen must not try to later
        proc.returncode = 0
        workers[proc.pid] = proc
        return proc.pid

    def started(pids: list[int]) -> None:
        write(os.path.join(out, "supervisor.json"), {"pid": os.getpid(), "workers": pids})

    serve(count, spawn, started)


if __name__ == "__main__":
    main()
