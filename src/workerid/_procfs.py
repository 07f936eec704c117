"""Facts about processes, read from Linux ``/proc``, and nothing else.

Every function returns ``None`` (never raises) when ``/proc`` cannot tell: a
process that has exited, a kernel without procfs, another OS. Callers turn a
``None`` into a degraded value and say so.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

_PROC = "/proc"

_RDONLY = os.O_RDONLY | os.O_CLOEXEC


def _read(path: str, cap: int) -> bytes | None:
    """Up to ``cap`` bytes of a single-record ``/proc`` file; ``None`` if it cannot be read.

    ``os.open``/``os.read``/``os.close``: three syscalls, where ``open()``
    costs seven (fstat, the ``isatty`` ioctl, lseek, a second read to see
    EOF) and two file objects, in every freshly forked worker's first call.
    One read is the whole file up to ``cap``: ``stat``, ``cmdline``,
    ``boot_id`` and ``/proc/stat`` fill the caller's buffer until their data
    ends (one ``seq_file`` record; ``proc_pid_cmdline_read`` loops until the
    buffer is full). Many-record files (``/proc/locks``) use :func:`_read_all`.
    """
    try:
        fd = os.open(path, _RDONLY)
    except OSError:
        return None
    try:
        return os.read(fd, cap)
    except OSError:
        return None
    finally:
        os.close(fd)


def _read_all(path: str) -> bytes | None:
    """A many-record ``/proc`` file, read until EOF (``seq_file`` may stop a read
    short at a record boundary, so a short read is not the end)."""
    try:
        fd = os.open(path, _RDONLY)
    except OSError:
        return None
    try:
        parts = []
        while chunk := os.read(fd, 65536):
            parts.append(chunk)
        return b"".join(parts)
    except OSError:
        return None
    finally:
        os.close(fd)


_boot_id: str | None = None


def boot_id() -> str | None:
    """The kernel's random per-boot UUID.

    Part of every generation key: a PID and its start time only identify a
    process within one boot, and PIDs are reused after a reboot. It cannot
    change while a process lives, so it is read once and inherited by forked
    children. Read in binary: a text-mode open costs a fresh worker a codec
    lookup on its first call (measured: 650 µs of a 1.7 ms first call).
    """
    global _boot_id
    if _boot_id is None:
        raw = _read(f"{_PROC}/sys/kernel/random/boot_id", 64)
        if raw is None:
            return None
        _boot_id = raw.strip().decode("ascii", "replace") or None
    return _boot_id


#: the inode of the initial PID namespace: a constant of the kernel
#: (``PROC_PID_INIT_INO``, include/linux/proc_ns.h), whatever the host
INITIAL_PID_NS = 0xEFFFFFFC

_pid_ns: int | None = None
#: the PID namespace this process's children will be in, read before a fork
_children_pid_ns: int | None = None


def _ns_inode(link: str) -> int | None:
    try:
        target = os.readlink(link)  # "pid:[4026531836]"
        return int(target[target.index("[") + 1 : target.rindex("]")])
    except (OSError, ValueError):
        return None


def pid_namespace() -> int | None:
    """Inode of this process's PID namespace (``/proc/self/ns/pid``).

    A PID only names a process inside one PID namespace: two containers'
    PID 1 are different processes, possibly started in the same clock tick,
    so the namespace is part of every run key and every "is it alive?" test.
    It cannot change while a process lives (``setns``/``unshare`` on a PID
    namespace only affect its children), so it is read once; a forked child
    gets the one its parent read for it (:func:`_before_fork`).
    """
    global _pid_ns
    if _pid_ns is None:
        _pid_ns = _ns_inode(f"{_PROC}/self/ns/pid")
    return _pid_ns


def _before_fork() -> None:
    """Read, once in the parent, what every forked child would otherwise read itself.

    The boot id (the same for the whole boot) and the PID namespace the child
    will be in: ``pid_for_children``, which differs from the parent's own
    after an ``unshare``/``setns`` of a PID namespace (then the child must
    not inherit the parent's value; and until that namespace has its init
    the link cannot be read, so the child reads its own). A pre-fork master
    that imported workerid pays this once (the boot id) and one ``readlink``
    per fork; each of its workers is spared both on its first call. Facts
    only: nothing is claimed, created or decided here, so a fork that fails
    or a daemonising fork leaves nothing behind.
    """
    global _children_pid_ns
    boot_id()
    _children_pid_ns = _ns_inode(f"{_PROC}/self/ns/pid_for_children")


def _after_fork_child() -> None:
    global _pid_ns
    _pid_ns = _children_pid_ns


def _after_fork_parent() -> None:
    # Not left for a later fork made in C (mod_wsgi, uWSGI) that runs only
    # the child's handlers: that child reads its own.
    global _children_pid_ns
    _children_pid_ns = None


os.register_at_fork(
    before=_before_fork, after_in_parent=_after_fork_parent, after_in_child=_after_fork_child
)


#: per-call memo of /proc reads (see remembering)
_memo: dict[tuple[str, int], object] | None = None


class remembering:
    """Within one identity computation, read each ``/proc`` file of a process once.

    Detection asks about the parent and grandparent several times (their
    executable, command line, start ticks); none of it changes within a
    millisecond that matters here, and each read is a syscall triple in a
    freshly forked worker's first call.
    """

    def __enter__(self) -> None:
        global _memo
        _memo = {}

    def __exit__(self, *exc: object) -> None:
        global _memo
        _memo = None


def computing() -> bool:
    """Is an identity computation (:class:`remembering`) under way in this process?"""
    return _memo is not None


def _remembered(kind: str, pid: int, read: Callable[[int], T]) -> T:
    """``read(pid)``, or what it gave earlier in this identity computation."""
    memo = _memo
    if memo is None:
        return read(pid)
    key = (kind, pid)
    if key not in memo:
        memo[key] = read(pid)
    return memo[key]  # type: ignore[return-value]


def _stat_fields(pid: int) -> list[str] | None:
    return _remembered("stat", pid, _read_stat_fields)


def _read_stat_fields(pid: int) -> list[str] | None:
    raw = _read(f"{_PROC}/{pid}/stat", 4096)
    if raw is None:
        return None
    # The command name (field 2) is in parentheses and may itself contain
    # spaces and parentheses, so split after the *last* ')'.
    close = raw.rfind(b")")
    if close < 0:
        return None
    # fields[0] is field 3 of proc(5) ("state").
    return raw[close + 2 :].decode("ascii", "replace").split()


def state(pid: int) -> str | None:
    """The one-letter process state (``R``, ``S``, ``Z``...; proc(5) field 3)."""
    fields = _stat_fields(pid)
    return fields[0] if fields else None


def start_ticks(pid: int) -> int | None:
    """Process start time in clock ticks since boot (proc(5) field 22).

    Together with the boot id and the PID this names one process for good:
    a reused PID has a different start time.
    """
    fields = _stat_fields(pid)
    if fields is None or len(fields) < 20:
        return None
    try:
        return int(fields[19])
    except ValueError:
        return None


def parent_pid(pid: int) -> int | None:
    fields = _stat_fields(pid)
    if fields is None or len(fields) < 2:
        return None
    try:
        return int(fields[1])
    except ValueError:
        return None


def boot_time() -> int | None:
    """Wall-clock time of boot, in epoch seconds (``btime`` in /proc/stat)."""
    raw = _read(f"{_PROC}/stat", 1 << 20)  # per-CPU and interrupt lines come first
    if raw is None:
        return None
    at = raw.find(b"\nbtime ")
    if at < 0:
        return None
    end = raw.find(b"\n", at + 7)
    try:
        return int(raw[at + 7 : end if end >= 0 else len(raw)])
    except ValueError:
        return None


def start_time(pid: int) -> int | None:
    """Wall-clock start time of ``pid`` in whole epoch seconds.

    Every process that asks about the same ``pid`` computes the same value,
    which is what makes it a usable fallback start time when no state can be
    written: all workers of one parent agree without talking to each other.
    """
    ticks = start_ticks(pid)
    btime = boot_time()
    if ticks is None or btime is None:
        return None
    try:
        hz = os.sysconf("SC_CLK_TCK")
    except (ValueError, OSError):
        return None
    return btime + ticks // hz


def cmdline(pid: int) -> list[str] | None:
    return _remembered("cmdline", pid, _read_cmdline)


def _read_cmdline(pid: int) -> list[str] | None:
    raw = _read(f"{_PROC}/{pid}/cmdline", 65536)
    if raw is None:
        return None
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]


def raw_cmdline(pid: int | str) -> bytes | None:
    """``/proc/<pid>/cmdline`` as the kernel gives it (``"self"``: this process), read now.

    Not remembered: for comparing a command line with one read earlier.
    """
    return _read(f"{_PROC}/{pid}/cmdline", 65536)


def exe(pid: int) -> str | None:
    return _remembered("exe", pid, _read_exe)


def _read_exe(pid: int) -> str | None:
    try:
        return os.readlink(f"{_PROC}/{pid}/exe")
    except OSError:
        return None


def uid(pid: int) -> int | None:
    """The owner (real uid) of ``pid``'s ``/proc`` entry."""
    try:
        return os.stat(f"{_PROC}/{pid}").st_uid
    except OSError:
        return None


def _locks(kind: bytes, pid: int | None = None) -> list[tuple[int, str, int, int, int, int]]:
    """``/proc/locks`` lines of ``kind`` (``POSIX``, ``FLOCK``): ``(pid, READ|WRITE, dev,
    inode, start, end)``, ``end`` inclusive (``EOF`` becomes -1); ``pid``: only that
    process's. Blocked waiters (``->`` lines) are left out."""
    raw = _read_all(f"{_PROC}/locks")
    if raw is None:
        return []
    found = []
    want = None if pid is None else str(pid).encode()
    for line in raw.splitlines():
        # b"1: POSIX  ADVISORY  WRITE 1234 fe:00:2147490 0 EOF"
        parts = line.split()
        if len(parts) != 8 or parts[1] != kind or (want is not None and parts[4] != want):
            continue
        try:
            major, minor, inode = parts[5].split(b":")
            found.append(
                (
                    int(parts[4]),
                    parts[3].decode("ascii"),
                    os.makedev(int(major, 16), int(minor, 16)),
                    int(inode),
                    int(parts[6]),
                    -1 if parts[7] == b"EOF" else int(parts[7]),
                )
            )
        except ValueError:
            continue
    return found


def posix_locks(pid: int | None = None) -> list[tuple[int, str, int, int, int, int]]:
    """POSIX record locks from ``/proc/locks``: ``(pid, READ|WRITE, dev, inode, start, end)``.

    ``end`` is inclusive (``EOF`` becomes -1). ``pid``: only that process's.
    Blocked waiters (``->`` lines), ``FLOCK`` and ``OFDLCK`` locks are left
    out. PIDs are those of the PID namespace of the ``/proc`` mount, and the
    locks of processes it cannot see are not listed (fs/locks.c).
    """
    return _locks(b"POSIX", pid)


def flocks() -> list[tuple[int, str, int, int]]:
    """``flock`` locks from ``/proc/locks``: ``(pid, READ|WRITE, dev, inode)``.

    The PID is the process that took the lock (a child that inherited the
    descriptor is not listed). Blocked waiters are left out; PIDs are those of
    the ``/proc`` mount's PID namespace, as in :func:`posix_locks`.
    """
    return [(pid, mode, dev, inode) for pid, mode, dev, inode, _s, _e in _locks(b"FLOCK")]


def open_fds(pid: int) -> list[tuple[int, str]]:
    """``(fd, target)`` of every descriptor of ``pid`` we may look at (same user)."""
    base = f"{_PROC}/{pid}/fd"
    try:
        names = os.listdir(base)
    except OSError:
        return []
    found = []
    for name in names:
        try:
            found.append((int(name), os.readlink(f"{base}/{name}")))
        except (OSError, ValueError):
            continue
    return found
