"""A pre-fork master that changes something between two forks (issue 14's master-side work).

Usage: ``PREMASTER=SHAPE:CHANGE:WORKERS:OUT premaster.py`` (in the environment, so that both
shapes have one command line, hence one default namespace)

- SHAPE ``master``: workerid is imported here, before any fork (gunicorn ``--preload``,
  uWSGI without lazy-apps); ``after-fork``: only the workers import it (the control: no
  master-side state of workerid can exist).
- The master first forks one child that exits at once without asking workerid (so any
  before-fork work is done with the settings as they were), then makes CHANGE, then forks
  WORKERS workers. Each reports its ``identity()`` and holds its ID until all have reported.
- CHANGE: ``none``; ``configure`` (``configure(namespace=...)``, in the master or, for
  ``after-fork``, in each worker right after its import); ``env`` (``WORKERID_NAMESPACE``);
  ``count`` (``WEB_CONCURRENCY``); ``setuid`` (to 65534, root only); ``unshare`` (a new PID
  namespace for the children, root only); ``daemon`` (fork, the parent exits, the grandchild
  forks the workers); ``ledger-lost`` (the first child asks for its ID, which records the
  run's start time, and exits; then the master removes ``ledger.json``: the workers find no
  entry and no live worker of the run, and record a new one).

Writes ``{"master": pid, "first": the first child's start time or None, "workers": [identity +
pid/ppid, ...]}`` to OUT (atomically); exits
77 when the change is not possible here.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import time

CLONE_NEWPID = 0x20000000


def worker(shape: str, change: str, report_w: int, go_r: int) -> None:
    import workerid

    if shape == "after-fork" and change == "configure":
        workerid.configure(namespace="configured")
    ident = workerid.identity().as_dict()
    ident["real_pid"], ident["real_ppid"] = os.getpid(), os.getppid()
    os.write(report_w, (json.dumps(ident) + "\n").encode())
    os.read(go_r, 1)  # hold the ID until every sibling has reported


def main() -> int:
    shape, change, count, out = os.environ.pop("PREMASTER").split(":", 3)
    workers = int(count)
    if shape == "master":
        import workerid
    first_r, first_w = os.pipe()
    warm = os.fork()
    if warm == 0:
        if change == "ledger-lost":
            import workerid

            os.write(first_w, str(workerid.start_time()).encode())
        os._exit(0)
    os.close(first_w)
    first = os.read(first_r, 64).decode() or None
    os.close(first_r)
    os.waitpid(warm, 0)
    if change == "configure" and shape == "master":
        workerid.configure(namespace="configured")
    elif change == "env":
        os.environ["WORKERID_NAMESPACE"] = "changed-env"
    elif change == "count":
        os.environ["WEB_CONCURRENCY"] = str(workers)
    elif change == "setuid":
        if os.geteuid() != 0:
            return 77
        os.setgid(65534)
        os.setuid(65534)
    elif change == "unshare":
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(CLONE_NEWPID) != 0:
            return 77
    elif change == "ledger-lost":
        os.unlink(os.path.join(os.environ["WORKERID_DIR"], "ledger.json"))
    elif change == "daemon":
        if os.fork() > 0:
            os._exit(0)  # the parent exits; this grandchild of the caller is the master
        parent = os.getppid()
        deadline = time.monotonic() + 10
        while os.getppid() == parent and time.monotonic() < deadline:
            time.sleep(0.01)
    report_r, report_w = os.pipe()
    go_r, go_w = os.pipe()
    pids = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                os.close(report_r)
                os.close(go_w)
                worker(shape, change, report_w, go_r)
            except BaseException as exc:  # said, so that the master does not wait for it
                os.write(report_w, (json.dumps({"error": repr(exc)}) + "\n").encode())
                code = 1
            os._exit(code)
        pids.append(pid)
    os.close(report_w)
    os.close(go_r)
    lines: list[bytes] = []
    buf = b""
    while len(lines) < workers:
        chunk = os.read(report_r, 65536)
        if not chunk:
            break
        buf += chunk
        *done, buf = buf.split(b"\n")
        lines.extend(done)
    os.close(go_w)
    for _ in pids:  # any order: a PID namespace's init waits until its others are reaped
        os.wait()
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(
            {
                "master": os.getpid(),
                "first": None if first in (None, "None") else int(first),
                "workers": [json.loads(x) for x in lines],
            },
            f,
        )
    os.rename(tmp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
