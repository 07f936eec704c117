"""Small helpers for the real-process tests: reports, waiting, process trees.

Every helper script here writes what ``workerid.identity()`` answered to
``OUT/<name>.json`` (atomically) and idles until killed; the tests read those
reports and check who is alive. Nothing here kills by name: processes are
killed by PID or by the process group the test itself created.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
SRC = TESTS.parent / "src"
PREFORK = str(TESTS / "prefork.py")
EXECWORKER = str(HERE / "execworker.py")
EXECSUPERVISOR = str(HERE / "execsupervisor.py")
MPMASTER = str(HERE / "mpmaster.py")
HERD = str(HERE / "herd.py")

T = TypeVar("T")


def env_for(lock_dir: Path | str, **extra: str) -> dict[str, str]:
    """This environment without any ``WORKERID_*``, plus a lock dir and ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKERID_")}
    path = env.get("PYTHONPATH", "")
    if str(SRC) not in path.split(os.pathsep):
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), path) if p)
    env["WORKERID_DIR"] = str(lock_dir)
    env.update(extra)
    return env


def wait_for(check: Callable[[], T | None], what: str, timeout: float = 15) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def run_script(script: Path | str, env: dict[str, str], skip: str, timeout: float = 60) -> None:
    """Run a helper script to its end; it exits 77 when its setup is impossible here: then
    the test is skipped, saying ``skip``."""
    import pytest  # here, not at the top: helper scripts import this package too

    proc = subprocess.run(
        [sys.executable, str(script)], check=False, env=env, capture_output=True, timeout=timeout
    )
    if proc.returncode == 77:
        pytest.skip(skip)
    assert proc.returncode == 0, proc.stderr.decode()


def alive(pid: int) -> bool:
    """``pid`` (a PID of this test's namespace) is running and not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[-1][0] not in "ZX"
    except OSError:
        return False


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None


def reports(out: Path, pattern: str = "[0-9]*.json") -> list[dict[str, Any]]:
    found = []
    for path in sorted(out.glob(pattern)):
        data = read_json(path)
        if data is not None:
            found.append(data)
    return found


def live_ids(idents: Iterable[dict[str, Any]]) -> list[tuple[int | None, int]]:
    """(worker_id, pid) pairs, for assertion messages."""
    return sorted(((i["worker_id"], i["pid"]) for i in idents), key=lambda p: (p[0] or 0, p[1]))


def duplicates(idents: Iterable[dict[str, Any]]) -> dict[int, list[int]]:
    """worker ID -> PIDs, for every non-None ID held by more than one process."""
    by_id: dict[int, list[int]] = {}
    for ident in idents:
        if ident["worker_id"] is not None:
            by_id.setdefault(ident["worker_id"], []).append(ident["pid"])
    return {wid: pids for wid, pids in by_id.items() if len(pids) > 1}


def start(argv: list[str], env: dict[str, str], **kw: Any) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a new session, so its whole tree can be killed by group."""
    return subprocess.Popen(argv, env=env, start_new_session=True, **kw)


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group this test created for ``proc``, and reap it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)


def stop_master(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """SIGTERM a master this test started with ``start_new_session``; its group is
    SIGKILLed if it has not exited within ``timeout``."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc)


def kill_pids(pids: Iterable[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def wait_dead(pid: int, timeout: float = 10) -> None:
    wait_for(lambda: not alive(pid), f"pid {pid} to die", timeout)


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


# --- PID namespaces ------------------------------------------------------------


def _status(pid: int) -> dict[str, str]:
    fields = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
    except OSError:
        pass
    return fields


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _status(int(entry)).get("PPid") == str(pid):
            found.append(int(entry))
    return found


def ns_pids(init: int) -> dict[int, int]:
    """PID inside the namespace whose PID 1 is host PID ``init`` -> host PID.

    Only live (non-zombie) processes are listed.
    """
    try:
        ns = os.readlink(f"/proc/{init}/ns/pid")
    except OSError:
        return {}
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            if os.readlink(f"/proc/{pid}/ns/pid") != ns:
                continue
        except OSError:
            continue
        status = _status(pid)
        nspid = status.get("NSpid", "").split()
        if nspid and alive(pid):
            found[int(nspid[-1])] = pid
    return found
