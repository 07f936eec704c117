"""A herd electing at once: ``python herd.py N`` (workerid imported in the master: ``--preload``).

The master imports workerid (it asks nothing), forks N children and waits
until every one is ready; then it closes the last write end of the "go"
pipe, and every child, blocked reading it, calls ``workerid.identity()`` at
the same moment. Each child prints ``<pid> <worker_id> <degraded count>`` on
stdout (one write, shorter than ``PIPE_BUF``: lines never interleave) and
holds its ID until this master's stdin closes; then the master SIGKILLs its
own children by PID, reaps them, and exits.
"""

from __future__ import annotations

import os
import signal
import sys

import workerid


def main() -> None:
    count = int(sys.argv[1])
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pids = []
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            try:
                os.close(ready_r)
                os.close(go_w)
                os.write(ready_w, b"r")
                os.read(go_r, 1)  # EOF once the master closes go_w
                ident = workerid.identity()
                line = f"{os.getpid()} {ident.worker_id} {len(ident.degraded)}\n"
                os.write(1, line.encode())
                while True:
                    signal.pause()
            finally:
                os._exit(1)
        pids.append(pid)
    os.close(ready_w)
    os.close(go_r)
    got = 0
    while got < count:
        chunk = os.read(ready_r, count - got)
        if not chunk:
            break
        got += len(chunk)
    os.close(go_w)  # go
    sys.stdin.read()
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pid in pids:
        os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
