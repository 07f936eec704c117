"""A real, minimal pre-fork server for the tests: ``python tests/prefork.py OUT N``.

The master forks N workers and respawns any that die, as gunicorn's arbiter
and Apache's parent do. Each worker asks workerid who it is and writes the
answer to ``OUT/<pid>.json``, then idles until killed. The master writes
``OUT/master.json`` once all workers are up, and on SIGTERM stops its workers
and exits.

Options (environment, so the command line stays identical in master and
workers, as after a real fork):

* ``PREFORK_HELPER=1``   each worker forks a helper child that sleeps forever
                         (it reports its inherited identity as ``helper-<pid>.json``)
* ``PREFORK_ONCE=FILE``  each worker calls a ``workerid.once("seed")`` function
                         that appends a line to FILE
* ``PREFORK_USER=name``  drop privileges to that user before anything else
* ``PREFORK_WORKER_USER=name``  the master stays root; each worker drops to that
                         user right after the fork (as gunicorn ``--user`` does)
* ``PREFORK_MASTER_FIRST=1``  the master calls ``workerid.worker_id()`` before it forks
"""

from __future__ import annotations

import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "helpers"))

from _master import serve
from _report import write


def _drop_to(user: str) -> None:
    import pwd

    entry = pwd.getpwnam(user)
    os.setgroups([])
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)


def _worker(out: str) -> None:
    if os.environ.get("PREFORK_WORKER_USER"):
        _drop_to(os.environ["PREFORK_WORKER_USER"])
    import workerid

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    seed_file = os.environ.get("PREFORK_ONCE")
    if seed_file:

        @workerid.once("seed")
        def seed() -> None:
            with open(seed_file, "a") as f:
                f.write(f"{os.getpid()}\n")

        seed()
    ident = workerid.identity().as_dict()
    if os.environ.get("PREFORK_HELPER") == "1":
        helper = os.fork()
        if helper == 0:
            write(os.path.join(out, f"helper-{os.getpid()}.json"), workerid.identity().as_dict())
            while True:
                time.sleep(60)
        ident["helper_pid"] = helper
    write(os.path.join(out, f"{os.getpid()}.json"), ident)
    while True:
        time.sleep(60)


def main() -> None:
    out, count = sys.argv[1], int(sys.argv[2])
    user = os.environ.get("PREFORK_USER")
    if user:
        _drop_to(user)
    if os.environ.get("PREFORK_MASTER_FIRST") == "1":
        import workerid

        write(os.path.join(out, "master-before.json"), workerid.identity().as_dict())

    def spawn() -> int:
        pid = os.fork()
        if pid == 0:
            try:
                _worker(out)
            finally:
                os._exit(1)
        return pid

    def started(pids: list[int]) -> None:
        master: dict[str, object] = {"pid": os.getpid(), "workers": pids}
        if os.environ.get("PREFORK_MASTER_FIRST") == "1":
            import workerid

            master["identity"] = workerid.identity().as_dict()
        write(os.path.join(out, "master.json"), master)

    serve(count, spawn, started)


if __name__ == "__main__":
    main()
