"""A process manager that starts workers by fork+exec: ``python execsupervisor.py OUT N``.

Like supervisord or a systemd template unit: it never imports workerid, starts
N ``python execworker.py OUT`` processes with ``subprocess.Popen``, respawns
any that dies, writes ``OUT/supervisor.json`` once all are started, and on
SIGTERM kills its workers and exits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _report import write

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "execworker.py")


def main() -> None:
    out, count = sys.argv[1], int(sys.argv[2])
    children: dict[int, subprocess.Popen[bytes]] = {}
    stopping = False

    def spawn() -> None:
        proc = subprocess.Popen([sys.executable, WORKER, out])
        children[proc.pid] = proc

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
        spawn()
    write(os.path.join(out, "supervisor.json"), {"pid": os.getpid(), "workers": sorted(children)})
    while children:
        try:
            pid, _status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        proc = children.pop(pid, None)
        if proc is not None:
            proc.returncode = _status
        if not stopping:
            spawn()


if __name__ == "__main__":
    main()
