"""Reading a server's settings off its master's command line."""

from __future__ import annotations

import os
import sys

from .. import _procfs

#: (pid, ppid) to detect as, instead of this process's own (see acting_as)
_acting: tuple[int, int] | None = None


def self_pid() -> int:
    return _acting[0] if _acting is not None else os.getpid()


def parent_pid() -> int:
    return _acting[1] if _acting is not None else os.getppid()


def acting() -> bool:
    """Is a detection "as another process" (:class:`acting_as`) under way?"""
    return _acting is not None


class acting_as:
    """Detect as if this process were ``pid`` with parent ``ppid``.

    A child forked before its parent asked workerid anything has the
    parent's memory (``sys.modules``, multiprocessing state, configuration):
    detecting "as the parent" tells whether the parent is a worker (then the
    child is its helper) or a master (then the child is a worker). Callers
    hold ``_identity``'s lock, so no other thread detects meanwhile.
    """

    def __init__(self, pid: int, ppid: int) -> None:
        self.pid, self.ppid = pid, ppid

    def __enter__(self) -> None:
        global _acting
        _acting = (self.pid, self.ppid)

    def __exit__(self, *exc: object) -> None:
        global _acting
        _acting = None


def option_int(argv: list[str], *names: str) -> int | None:
    """The last value of an integer option: ``-w 4``, ``-w4``, ``--workers=4``."""
    found: int | None = None
    for i, arg in enumerate(argv):
        for name in names:
            raw: str | None = None
            if arg == name and i + 1 < len(argv):
                raw = argv[i + 1]
            elif name.startswith("--") and arg.startswith(name + "="):
                raw = arg[len(name) + 1 :]
            elif not name.startswith("--") and arg.startswith(name) and len(arg) > len(name):
                raw = arg[len(name) :]
            if raw is not None:
                try:
                    found = int(raw)
                except ValueError:
                    pass
    return found if found is not None and found > 0 else None


def same_program(pid: int) -> bool:
    """Does ``pid`` run our executable (a fork of us, or our spawning parent)?

    ``/proc/<pid>/exe`` of a process owned by another user cannot be read:
    a gunicorn arbiter or uWSGI master started as root whose workers dropped
    to ``www-data``. Then the executable is not known and does not count
    against; the command line (readable by all) has to decide.
    """
    theirs = _procfs.exe(pid)
    return theirs is None or theirs == _procfs.exe(self_pid())


def is_copy(child: int, parent: int) -> bool:
    """Is ``child`` a fork of ``parent`` without exec (same executable, same command line)?"""
    if parent <= 0:
        return False
    exe_parent, exe_child = _procfs.exe(parent), _procfs.exe(child)
    if exe_parent is not None and exe_child is not None and exe_parent != exe_child:
        return False
    argv = _procfs.cmdline(parent)
    return bool(argv) and argv == _procfs.cmdline(child)


def parent_runs(program: str) -> list[str] | None:
    """The parent's argv if the parent is ``program`` run by our own executable.

    Same executable, and the program's name among its first arguments: that is
    a pre-fork master (``python .../gunicorn``, ``python -m uvicorn``), not a
    shell or a process manager that happens to be written in Python.
    """
    ppid = parent_pid()
    argv = _procfs.cmdline(ppid)
    if not argv or not same_program(ppid):
        return None
    head = argv[:4]
    if any(program in os.path.basename(a) or a == program for a in head):
        return argv
    return None


def web_concurrency() -> int | None:
    """``WEB_CONCURRENCY``, the variable gunicorn and uvicorn read as their default."""
    raw = os.environ.get("WEB_CONCURRENCY", "").strip()
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if value > 0 else None


def spawned_child() -> bool:
    """True in a process started by multiprocessing (uvicorn's and hypercorn's *spawn*).

    Looks without importing: a spawned child has multiprocessing loaded
    already (``spawn_main`` runs it), and a process that never loaded it
    cannot be one.
    """
    mp = sys.modules.get("multiprocessing")
    return mp is not None and mp.parent_process() is not None


def program_namespace(base: str, pid: int) -> str:
    """``<base>.<digest of pid's command line>``: one namespace per program.

    Two different programs of one user (two gunicorn apps on two ports, two
    scripts) must not compete for one ID space, and every worker of one
    program must share it: the supervisor's command line (the same in all
    its workers, and across its restarts) tells them apart. A CRC, not a
    cryptographic hash: it names, it does not guard.
    """
    import zlib

    argv = _procfs.cmdline(pid)
    if not argv:
        return base
    data = "\0".join(argv).encode("utf-8", "surrogatepass")
    return f"{base}.{zlib.crc32(data):08x}"
