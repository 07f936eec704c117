"""The election: the lowest free worker ID of the namespace, under a record lock held for life.

Worker ID ``i`` is byte ``i-1`` of the namespace's one ``slots.lock``. A
worker holds an exclusive POSIX record lock on that byte until it exits; the
kernel drops the lock on any exit, ``SIGKILL`` included, so the server's
replacement for a dead worker finds the byte free and takes the same ID.
Record locks are not inherited by ``fork``, so a helper process forked by a
worker never keeps its ID alive (see ``_reclock`` for why not ``flock``).

There is one ID space per namespace, whatever the run: two live processes of
one namespace can never hold the same ID, even when workerid mistakes their
supervisor (an exec'ing process manager, PID 1) and puts them in different
runs. A new run's workers that find 1..N still held by an old run's draining
workers wait for them (``settle_timeout``) rather than share a number.

Every worker also holds a shared lock on its run's range (``_layout``): a
run is alive while any of its workers is, and the range's length is its
start time, readable by any process with ``F_GETLK``.
"""

from __future__ import annotations

import dataclasses
import os
import time

from . import _layout, _reclock, _statefile

_POLL = 0.02


class SlotsExhausted(OSError):
    """Every worker ID in 1..max_slots is held by a live process."""


@dataclasses.dataclass(frozen=True)
class Held:
    fd: int
    worker_id: int
    #: why the ID is above the worker count, if it is
    overflow: str | None = None


def open_slots(ns_dir: str) -> int:
    """This process's one descriptor of ``slots.lock`` (kept for its life)."""
    return _statefile.open_lock_file(_layout.slots_file(ns_dir))


def _lowest_free(fd: int, max_slots: int) -> int | None:
    for index in range(max_slots):
        if _reclock.try_lock(fd, index):
            return index + 1
    return None


def elect(
    fd: int,
    *,
    max_slots: int,
    worker_count: int | None,
    settle_timeout: float,
) -> Held:
    """Claim the lowest free worker ID on ``fd`` (from :func:`open_slots`).

    When the worker count is known and every ID in 1..count is held (old
    workers still draining after a reload or a restart), wait up to
    ``settle_timeout`` for one of them to exit rather than settle for count+1
    for good; after that, take the lowest free ID and say so. Raises
    :class:`SlotsExhausted` when all ``max_slots`` stay held that long.
    """
    deadline = time.monotonic() + settle_timeout
    while True:
        got = _lowest_free(fd, max_slots)
        late = time.monotonic() >= deadline
        if got is not None and (worker_count is None or got <= worker_count):
            return Held(fd, got)
        if got is not None and late:
            return Held(
                fd,
                got,
                overflow=(
                    f"worker IDs 1..{worker_count} were all held by live processes for "
                    f"{settle_timeout:g}s (old workers still running, or another server in "
                    f"this namespace?); took {got}"
                ),
            )
        if got is None and late:
            raise SlotsExhausted(
                f"all {max_slots} worker IDs are held by live processes; raise "
                "WORKERID_MAX_SLOTS or give other servers their own WORKERID_NAMESPACE"
            )
        if got is not None:
            _reclock.unlock(fd, got - 1, 1)
        time.sleep(_POLL)


def lowest_unheld(fd: int, max_slots: int) -> int | None:
    """The ID :func:`elect` would take now, found without locking (``F_GETLK``)."""
    for index in range(max_slots):
        if _reclock.holder(fd, index) is None:
            return index + 1
    return None


def hold_run(fd: int, run: str, start: int) -> None:
    """Mark this process a live worker of ``run`` (shared lock; length = start time)."""
    _reclock.share(fd, _layout.run_offset(run), start)


def run_start(fd: int, run: str) -> int | None:
    """The start time a live worker of ``run`` holds, else ``None``.

    Only other processes' locks are seen (``F_GETLK``); the caller holds none
    on this range.
    """
    found = _reclock.conflict(fd, _layout.run_offset(run), 1)
    if found is None:
        return None
    start, length, _pid = found
    return length if start == _layout.run_offset(run) and length > 0 else None


def release(held: Held) -> None:
    """Give the ID back (closing the descriptor drops every lock on the file)."""
    try:
        os.close(held.fd)
    except OSError:
        pass
