"""Processes, seen from the harness: children, liveness, signals, ports.

Read from ``/proc`` like the core does (and through it, where it has the
helper), so the harness needs nothing beyond the standard library.
"""

from __future__ import annotations

import os
import signal
import socket
import time

from workerid import _procfs


def alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    state = _procfs.state(pid)
    return state is not None and state != "Z"


def children(ppid: int) -> list[int]:
    """Live (non-zombie) children of ``ppid``."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and _procfs.parent_pid(int(name)) == ppid and alive(int(name)):
            found.append(int(name))
    return sorted(found)


def cmdline(pid: int) -> list[str]:
    return _procfs.cmdline(pid) or []


def wait_gone(pids: list[int], timeout: float, poll: float = 0.02) -> list[int]:
    """Wait until none of ``pids`` is alive (a zombie counts as gone); return those still alive."""
    deadline = time.monotonic() + timeout
    left = [p for p in pids if alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(poll)
        left = [p for p in left if alive(p)]
    return left


def signal_pid(pid: int, signo: int) -> bool:
    try:
        os.kill(pid, signo)
    except ProcessLookupError:
        return False
    return True


def kill9(pid: int, timeout: float = 10) -> None:
    signal_pid(pid, signal.SIGKILL)
    wait_gone([pid], timeout)


def reap(pids: list[int], timeout: float) -> list[int]:
    """Give ``pids`` ``timeout`` seconds to exit after a stop, then ``kill -9`` the stragglers.

    Returns the PIDs that had to be killed. Every server's ``stop()`` ends with this, so that a
    stuck worker never outlives its scenario and holds a slot lock into the next one.
    """
    left = wait_gone(pids, timeout)
    for pid in left:
        kill9(pid)
    return left


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_port(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port):
            return True
        time.sleep(0.05)
    return False


def read_pid(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def procfs_second_phase() -> float:
    """Where in a wall-clock second ``/proc``-derived start seconds tick over.

    A process's start second from ``/proc`` is ``btime + ticks // HZ``: it
    changes when the time since the (fractional) boot instant crosses a whole
    second, which is ``frac(now - uptime)`` past each wall-clock second.
    """
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    return (time.time() - uptime) % 1.0


def sleep_to_phase(phase: float, margin: float = 0.02) -> None:
    """Sleep until ``margin`` seconds after the next instant at ``phase`` in a second."""
    now = time.time()
    wait = (phase + margin - now) % 1.0
    time.sleep(wait if wait > 0.05 else wait + 1.0)
