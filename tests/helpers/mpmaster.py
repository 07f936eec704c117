"""A fork pre-fork master whose workers start children: ``python mpmaster.py OUT N MODE ONCE``.

The master forks N workers and respawns any that dies (as ``tests/prefork.py``).
Each worker starts one child, then calls ``workerid.once("x")``, whose body
appends a line to the file ONCE, and writes ``OUT/worker-<pid>.json``. The
child reports ``OUT/child-<pid>.json`` after its own ``once("x")`` call, and
the worker waits for that report first (so the child calls ``once`` first).

MODE:

* ``spawn``, ``forkserver``, ``fork``: the worker gets its ID, then starts a
  ``multiprocessing`` child with that start method;
* ``helper-worker-first``: the worker forks a helper *before* its own first
  workerid call; the worker asks first, then the helper;
* ``helper-helper-first``: the same fork, but the helper asks first and the
  worker only after the helper has its answer.
"""

from __future__ import annotations

import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _master import serve
from _report import write


def _once_body(once_file: str) -> None:
    import workerid

    @workerid.once("x")
    def seed() -> None:
        with open(once_file, "a") as f:
            f.write(f"{os.getpid()}\n")

    seed()


def child_main(out: str, once_file: str, go_fd: int = -1) -> None:
    """What every child does; runs in the child, whatever its start method."""
    if go_fd >= 0:
        os.read(go_fd, 1)  # the worker has its answer: now it is our turn
    import workerid

    ident = workerid.identity().as_dict()
    _once_body(once_file)
    ident["ppid"] = os.getppid()
    ident["after_once"] = workerid.identity().as_dict()
    write(os.path.join(out, f"child-{os.getpid()}.json"), ident)
    while True:
        time.sleep(60)


def _wait_report(out: str, pid: int) -> None:
    path = os.path.join(out, f"child-{pid}.json")
    deadline = time.monotonic() + 15
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)


def worker(out: str, mode: str, once_file: str) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if mode.startswith("helper-"):
        go_r, go_w = os.pipe()
        helper_first = mode == "helper-helper-first"
        pid = os.fork()  # before this worker's first workerid call
        if pid == 0:
            try:
                child_main(out, once_file, -1 if helper_first else go_r)
            finally:
                os._exit(1)
        import workerid

        if helper_first:
            _wait_report(out, pid)
        ident = workerid.identity().as_dict()
        os.write(go_w, b"g")
    else:
        import multiprocessing

        import workerid

        ident = workerid.identity().as_dict()
        proc = multiprocessing.get_context(mode).Process(target=child_main, args=(out, once_file))
        proc.start()
        pid = proc.pid or 0
        _wait_report(out, pid)
    _once_body(once_file)
    ident["child_pid"] = pid
    ident["ppid"] = os.getppid()
    write(os.path.join(out, f"worker-{os.getpid()}.json"), ident)
    while True:
        time.sleep(60)


def main() -> None:
    out, count, mode, once_file = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]

    def spawn() -> int:
        pid = os.fork()
        if pid == 0:
            try:
                worker(out, mode, once_file)
            finally:
                os._exit(1)
        return pid

    def started(pids: list[int]) -> None:
        write(os.path.join(out, "master.json"), {"pid": os.getpid(), "workers": pids})

    serve(count, spawn, started)


if __name__ == "__main__":
    main()
