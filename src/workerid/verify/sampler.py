"""Liveness sampling: who holds which worker ID, while a scenario runs.

Every ``interval`` seconds a sample pairs each live worker PID of the server
with its worker ID, taken from the kernel's record locks in the lock
directory (``workerid.status.scan``, what ``workerid status --json`` prints)
or, where the server hands out IDs itself (uWSGI) or the lock directory is
unusable, from what the worker told the probe. A worker counts only if it is
alive, with the same start time, both before and after the lookup, so two
PIDs with one ID in a sample really were alive at the same time.

The scan runs in this (harness) process: that is safe because the harness
never calls workerid itself and so holds no record lock of its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from workerid import _procfs, status

from . import checks
from .report import Verdict

Sample = dict[int, int | None]


def lock_holders(lock_dir: Path) -> dict[int, int]:
    """pid -> worker ID for every slot held in any namespace of ``lock_dir``."""
    held: dict[int, int] = {}
    for ns in status.scan(str(lock_dir))["namespaces"]:
        for slot in ns["slots"]:
            held[int(slot["pid"])] = int(slot["worker_id"])
    return held


class Sampler:
    def __init__(
        self,
        workers: Callable[[], list[int]],
        lock_dir: Callable[[], Path],
        said: Callable[[], dict[tuple[int, int], int | None]],
        interval: float = 0.1,
    ) -> None:
        self._workers = workers
        self._lock_dir = lock_dir
        self._said = said
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.samples = 0
        self.duplicates: list[str] = []
        self.mismatches: list[str] = []
        self.ids_seen: set[int] = set()
        self.errors: list[str] = []

    def sample(self) -> Sample:
        before = {pid: _procfs.start_ticks(pid) for pid in self._workers()}
        try:
            holders = lock_holders(self._lock_dir())
        except OSError as exc:
            holders = {}
            self.errors.append(str(exc))
        said = self._said()
        result: Sample = {}
        for pid, ticks in before.items():
            if ticks is None or _procfs.start_ticks(pid) != ticks:
                continue
            own = said.get((pid, ticks))
            locked = holders.get(pid)
            if locked is not None and own is not None and locked != own:
                self.mismatches.append(f"pid {pid} holds slot {locked} but said {own}")
            result[pid] = locked if locked is not None else own
        return result

    def record(self, sample: Sample) -> None:
        self.samples += 1
        self.ids_seen.update(v for v in sample.values() if v is not None)
        for wid, pids in checks.duplicates(sample).items():
            self.duplicates.append(f"ID {wid} held by pids {pids}")

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.record(self.sample())
            except Exception as exc:  # keep sampling; report it at the end
                self.errors.append(f"{type(exc).__name__}: {exc}")
            self._stop.wait(self._interval)

    def __enter__(self) -> Sampler:
        self._thread = threading.Thread(target=self._loop, name="workerid-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            self.record(self.sample())
        except Exception as exc:
            self.errors.append(f"{type(exc).__name__}: {exc}")

    def verdict(self) -> Verdict:
        problems = self.duplicates + self.mismatches
        return checks.unique_at_every_sample(self.samples, problems, self.ids_seen, self.errors)
