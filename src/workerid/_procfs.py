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
        try:
            with open(f"{_PROC}/sys/kernel/random/boot_id", "rb") as f:
                _boot_id = f.read(64).strip().decode("ascii", "replace") or None
        except OSError:
            return None
    return _boot_id


#: the inode of the initial PID namespace: a constant of the kernel
#: (``PROC_PID_INIT_INO``, include/linux/proc_ns.h), whatever the host
INITIAL_PID_NS = 0xEFFFFFFC

_pid_ns: int | None = None


def pid_namespace() -> int | None:
    """Inode of this process's PID namespace (``/proc/self/ns/pid``).

    A PID only names a process inside one PID namespace: two containers'
    PID 1 are different processes, possibly started in the same clock tick,
    so the namespace is part of every run key and every "is it alive?" test.
    It cannot change while a process lives (``setns`` on a PID namespace
    only affects children), so it is read once.
    """
    global _pid_ns
    if _pid_ns is None:
        try:
            link = os.readlink(f"{_PROC}/self/ns/pid")  # "pid:[4026531836]"
            _pid_ns = int(link[link.index("[") + 1 : link.rindex("]")])
        except (OSError, ValueError):
            return None
    return _pid_ns


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
    try:
        with open(f"{_PROC}/{pid}/stat", "rb") as f:
            raw = f.read(4096)
    except OSError:
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
    try:
        with open(f"{_PROC}/stat", encoding="ascii") as f:
            for line in f:
                if line.startswith("btime "):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
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
    try:
        with open(f"{_PROC}/{pid}/cmdline", "rb") as f:
            raw = f.read(65536)
    except OSError:
        return None
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]


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


def posix_locks(pid: int | None = None) -> list[tuple[int, str, int, int, int, int]]:
    """POSIX record locks from ``/proc/locks``: ``(pid, READ|WRITE, dev, inode, start, end)``.

    ``end`` is inclusive (``EOF`` becomes -1). ``pid``: only that process's.
    Blocked waiters (``->`` lines), ``FLOCK`` and ``OFDLCK`` locks are left
    out. PIDs are those of the PID namespace of the ``/proc`` mount, and the
    locks of processes it cannot see are not listed (fs/locks.c).
    """
    try:
        with open(f"{_PROC}/locks", "rb") as f:
            raw = f.read()
    except OSError:
        return []
    found = []
    want = None if pid is None else str(pid).encode()
    for line in raw.splitlines():
        # b"1: POSIX  ADVISORY  WRITE 1234 fe:00:2147490 0 EOF"
        parts = line.split()
        if len(parts) != 8 or parts[1] != b"POSIX" or (want is not None and parts[4] != want):
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
