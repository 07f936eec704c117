"""A master that imported workerid forks two workers with one change made after each fork.

Usage: ``PREMADE=CHANGE:OUT premade.py`` (in the environment, so that every run has one
command line). The work the master does before each fork (``_identity._premake``) must
be used by its child only if nothing it was made from changed; whatever changed, the child
must answer exactly what it answers without it. So the master forks, one after the other:

- a first child that asks and exits (it records the run's ledger entry);
- child ``A``, which keeps what the master made for it, and child ``B``, which drops it
  (``_identity._inherited = None``: the whole pipeline, the control). Each makes CHANGE
  (or the master makes it after the fork), then asks, reports and exits before the next.

CHANGE (after the fork, before the child's first call): ``none``; ``namespace``
(``WORKERID_NAMESPACE`` in the child); ``count`` (``WEB_CONCURRENCY``); ``tmpdir``
(``TMPDIR``, without ``WORKERID_DIR``; as ``PREMADE_AS``'s uid when run as root);
``configure`` (``configure(namespace=...)``);
``setuid`` (to 65534, root only; the lock directory is 65534's); ``modules`` (a
``gunicorn`` module appears); ``published`` (a gunicorn ``post_fork`` publishes a count);
``title`` (the child rewrites its own command line); ``master-title`` (the master rewrites
its own); ``ledger`` (the master removes ``ledger.json``); ``orphan`` (the master exits:
its children are reparented); ``master-env`` (the master sets ``WEB_CONCURRENCY`` before
forking A and B: made anew, used); ``named`` (``WORKERID_NAMESPACE`` from the
start, a master exec'd by the test: nothing is made, see ``_helpers.find``).

Writes one JSON line per child to OUT: ``{"name", "premade", "identity", "pid", "ppid"}``;
exits 77 when the change is not possible here.
"""

from __future__ import annotations

import json
import os
import sys
import time
import types


def retitle() -> bool:
    """Change this process's command line as ``setproctitle`` would (same length: the
    last byte of the last argument flips case), through ``/proc/self/mem``."""
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        end = int(fields[49 - 3])  # arg_end, proc(5) field 49
        with open("/proc/self/mem", "r+b", buffering=0) as mem:
            mem.seek(end - 2)
            byte = mem.read(1)
            mem.seek(end - 2)
            mem.write(bytes([byte[0] ^ 0x20]))
    except (OSError, IndexError, ValueError):
        return False
    return True


def child(name: str, change: str, out: str, go_r: int) -> None:
    import workerid
    from workerid import _identity

    if name == "B":
        _identity._inherited = None  # the control: the whole pipeline
    if change == "namespace":
        os.environ["WORKERID_NAMESPACE"] = "changed-in-child"
    elif change == "count":
        os.environ["WEB_CONCURRENCY"] = "3"
    elif change == "tmpdir":
        os.environ["TMPDIR"] = os.environ["PREMADE_TMP2"]
    elif change == "configure":
        workerid.configure(namespace="configured-in-child")
    elif change == "setuid":
        os.setgid(65534)
        os.setuid(65534)
    elif change == "modules":
        sys.modules["gunicorn"] = types.ModuleType("gunicorn")
    elif change == "published":
        from workerid.loaders import gunicorn

        gunicorn.published_count = 7
    elif change == "title" and not retitle():
        os._exit(77)
    os.read(go_r, 1)  # the master's change after the fork is made (or it has exited)
    if change == "orphan":
        master = int(os.environ["PREMADE_MASTER"])
        deadline = time.monotonic() + 10
        while os.getppid() == master and time.monotonic() < deadline:
            time.sleep(0.01)
    ident = workerid.identity().as_dict()
    line = {
        "name": name,
        "premade": _identity._proc.premade,
        "identity": ident,
        "pid": os.getpid(),
        "ppid": os.getppid(),
    }
    fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, (json.dumps(line) + "\n").encode())
    os.close(fd)


def main() -> int:
    change, out = os.environ.pop("PREMADE").split(":", 1)
    if change == "setuid" and os.geteuid() != 0:
        return 77
    if os.environ.get("PREMADE_AS") and os.geteuid() == 0:
        # root's lock directory is /run/workerid whatever TMPDIR says: be another user
        uid = int(os.environ["PREMADE_AS"])
        os.setgid(uid)
        os.setuid(uid)
    os.environ["PREMADE_MASTER"] = str(os.getpid())
    import workerid

    first = os.fork()
    if first == 0:
        workerid.worker_id()
        os._exit(0)
    os.waitpid(first, 0)
    if change == "master-env":
        os.environ["WEB_CONCURRENCY"] = "5"
    pids = []
    done_r = -1  # B waits until A has exited (A holds the write end)
    for name in ("A", "B"):
        go_r, go_w = os.pipe()
        a_done_r, a_done_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                os.close(go_w)
                os.close(a_done_r)
                for _pid, earlier in pids:  # A's go (orphan): only the master holds it
                    if earlier >= 0:
                        os.close(earlier)
                if name == "B":
                    os.close(a_done_w)
                    os.read(done_r, 1)  # EOF once A has exited
                child(name, change, out, go_r)
            except BaseException as exc:
                print(f"child {name}: {exc!r}", file=sys.stderr)
                code = 1
            os._exit(code)
        os.close(go_r)
        os.close(a_done_w)
        if name == "A":
            done_r = a_done_r
        else:
            os.close(a_done_r)
        if change == "master-title" and not retitle():
            return 77
        elif change == "ledger":
            os.unlink(os.path.join(os.environ["WORKERID_DIR"], "ledger.json"))
        if change == "orphan":
            pids.append((pid, go_w))
            continue
        os.close(go_w)
        pids.append((pid, -1))
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            return os.waitstatus_to_exitcode(status)
        if change == "master-title":
            retitle()  # back, so that B's fork is made with the title A's was
    if change == "orphan":
        for _pid, go_w in pids:
            os.close(go_w)
        os._exit(0)  # the children find their parent gone
    return 0


if __name__ == "__main__":
    sys.exit(main())
