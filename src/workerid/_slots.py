"""The election: the lowest free slot, under a record lock held for life.

Slot ``i`` (worker ID ``i``) is byte ``i-1`` of the lane's slot file. A worker
holds an exclusive POSIX record lock on that byte until it exits; the kernel
drops the lock on any exit, ``SIGKILL`` included, so the server's replacement
for a dead worker finds the slot free and takes the same ID. Record locks are
not inherited by ``fork``, so a helper process forked by a worker never keeps
its slot alive (see ``_reclock`` for why not ``flock``).
"""

from __future__ import annotations

import dataclasses
import os
import time

from . import _layout, _reclock, _statefile

_POLL = 0.02


class SlotsExhausted(OSError):
    """Every slot in 1..max_slots is held by a live process."""


@dataclasses.dataclass(frozen=True)
class Held:
    fd: int
    lane: int
    worker_id: int
    #: why the ID is above the worker count, if it is
    overflow: str | None = None


def _lowest_free(fd: int, max_slots: int) -> int | None:
    for index in range(max_slots):
        if _reclock.try_lock(fd, index):
            return index + 1
    return None


def elect(
    ns_dir: str,
    lane: int,
    *,
    max_slots: int,
    worker_count: int | None,
    settle_timeout: float,
) -> Held:
    """Claim the lowest free worker ID in ``lane``.

    When the worker count is known and every ID in 1..count is held (old
    workers of the same run still draining after a reload), wait up to
    ``settle_timeout`` for one of them to exit rather than settle for count+1
    for good; after that, take the lowest free ID and say so.
    """
    fd = _statefile.open_lock_file(_layout.slots_file(ns_dir, lane))
    deadline = time.monotonic() + settle_timeout
    try:
        while True:
            got = _lowest_free(fd, max_slots)
            late = time.monotonic() >= deadline
            if got is not None and (worker_count is None or got <= worker_count):
                return Held(fd, lane, got)
            if got is not None and late:
                return Held(
                    fd,
                    lane,
                    got,
                    overflow=(
                        f"worker IDs 1..{worker_count} were all held by live processes for "
                        f"{settle_timeout:g}s (old workers still running?); took {got}"
                    ),
                )
            if got is None and late:
                raise SlotsExhausted(
                    f"all {max_slots} worker IDs are held by live processes; "
                    "raise WORKERID_MAX_SLOTS"
                )
            if got is not None:
                _reclock.unlock(fd, got - 1, 1)
            time.sleep(_POLL)
    except BaseException:
        os.close(fd)
        raise


def release(held: Held) -> None:
    """Give the slot back (closing the descriptor drops the lock)."""
    try:
        os.close(held.fd)
    except OSError:
        pass


def holders_elsewhere(ns_dir: str, worker_id: int, lane: int) -> list[int]:
    """PIDs holding ``worker_id`` in the namespace's *other* lanes.

    A worker ID is unique within a lane; the same number can be live in an
    older lane while that run's last workers drain. Callers that act on
    "my predecessor with this ID is dead" (Neutron's hash-ring takeover)
    must check here first. Opening and closing another lane's file is safe:
    this process holds no lock there.
    """
    pids = []
    for other in range(_layout.LANES):
        if other == lane:
            continue
        try:
            fd = os.open(
                _layout.slots_file(ns_dir, other), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
            )
        except OSError:
            continue
        try:
            pid = _reclock.holder(fd, worker_id - 1)
        finally:
            os.close(fd)
        if pid is not None:
            pids.append(pid)
    return pids
