"""POSIX record locks (``fcntl(F_SETLK)``), one byte per slot.

Why record locks and not ``flock``: the two differ exactly where a worker ID
lives or dies.

* ``flock`` locks belong to the *open file description*. A child forked by a
  worker (multiprocessing, a helper, a subprocess before exec) shares that
  description, so the lock survives the worker's death for as long as the
  child lives, and the worker's replacement is elected to a new ID. Measured
  here with one flock'ed file per slot, and it is the failure the reference
  Neutron shim has.
* POSIX record locks belong to the *process*: they are not inherited by
  ``fork`` and the kernel drops them when the process exits, however it
  exits (``SIGKILL`` included). That is exactly the lifetime of a worker ID.

The price of record locks: closing *any* descriptor of the file in the
owning process drops all of that process's locks on it. So each lock file is
opened once per process and that descriptor is kept; nothing else in the
process may open and close the same file (``status`` runs in another process,
and :func:`holder` is only used on files the caller does not hold).
Linux "open file description" locks (``F_OFD_SETLK``) would avoid that trap,
but they are inherited across ``fork`` like ``flock``, which is the one thing
we cannot have.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import sys

# struct flock on Linux: short l_type, short l_whence, off_t l_start,
# off_t l_len, pid_t l_pid (native alignment adds the padding).
_FLOCK = struct.Struct("@hhqqi4x")
_BUSY = (errno.EACCES, errno.EAGAIN)


def try_lock(fd: int, start: int, length: int = 1) -> bool:
    """Take an exclusive lock on ``[start, start+length)`` without waiting."""
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, length, start, os.SEEK_SET)
    except OSError as exc:
        if exc.errno in _BUSY:
            return False
        raise
    return True


def lock(fd: int, start: int = 0, length: int = 0) -> None:
    """Take an exclusive lock, waiting for it (``length=0``: to end of file)."""
    fcntl.lockf(fd, fcntl.LOCK_EX, length, start, os.SEEK_SET)


def unlock(fd: int, start: int = 0, length: int = 0) -> None:
    fcntl.lockf(fd, fcntl.LOCK_UN, length, start, os.SEEK_SET)


def share(fd: int, start: int, length: int) -> None:
    """Take a shared (read) lock on ``[start, start+length)`` without waiting."""
    fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB, length, start, os.SEEK_SET)


def conflict(fd: int, start: int, length: int = 1) -> tuple[int, int, int] | None:
    """``(l_start, l_len, l_pid)`` of another process's lock overlapping the range."""
    query = _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, start, length, 0)
    answer = fcntl.fcntl(fd, fcntl.F_GETLK, query)
    l_type, _whence, l_start, l_len, l_pid = _FLOCK.unpack(answer)
    if l_type == fcntl.F_UNLCK:
        return None
    return int(l_start), int(l_len), int(l_pid)


#: ``F_GETLK`` queries for bytes 0..63, packed once: an election asks them of
#: ``slots.lock`` and of every page file (whose bytes are 0..63 too)
_BYTE_QUERIES = tuple(_FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, i, 1, 0) for i in range(64))
#: the byte of an answer that holds ``l_type``'s low byte (``F_UNLCK`` is 2)
_TYPE = 0 if sys.byteorder == "little" else 1


def first_free(fd: int, start: int, stop: int) -> int | None:
    """The first byte of ``[start, stop)`` (``stop <= 64``) no other process holds, else ``None``.

    The election's inner loop, one ``F_GETLK`` per byte and nothing else: a
    failing :func:`try_lock` raises inside ``fcntl`` and costs 2.5 times as
    much (1.2 against 0.45 µs here), and an election asks about every held
    ID below the one it takes. The answer may be stale by the time the
    caller locks the byte: it must use :func:`try_lock` and go on if that
    fails.
    """
    getlk, query, queries, unlocked, at = (
        fcntl.fcntl,
        fcntl.F_GETLK,
        _BYTE_QUERIES,
        fcntl.F_UNLCK,
        _TYPE,
    )
    for byte in range(start, stop):
        if getlk(fd, query, queries[byte])[at] == unlocked:
            return byte
    return None


def holder(fd: int, start: int, length: int = 1) -> int | None:
    """PID of a process holding a lock that overlaps the range, else ``None``.

    Locks held by the calling process itself are never reported (that is how
    ``F_GETLK`` works), which is why ``status`` is a separate process.
    """
    query = _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, start, length, 0)
    answer = fcntl.fcntl(fd, fcntl.F_GETLK, query)
    l_type, _whence, _start, _len, l_pid = _FLOCK.unpack(answer)
    if l_type == fcntl.F_UNLCK:
        return None
    return int(l_pid)
