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

The search goes through pages of 64 (``_layout.PAGE``): the kernel checks a
lock request against every lock on the file, and ``slots.lock`` carries one
run range per worker, so probing 1,024 held IDs there cost about 3.8 µs
each. IDs above 64 are first looked for in a page file of at most 64 locks,
and taken in ``slots.lock`` only once found free there (:func:`_lowest_free`).
"""

from __future__ import annotations

import dataclasses
import os
import stat
import time

from . import _layout, _procfs, _reclock, _statefile

_POLL = 0.02
#: reads of /proc/locks before a worker's ID or run range is taken as not there
_READS = 5


class SlotsExhausted(OSError):
    """Every worker ID in 1..max_slots is held by a live process."""


@dataclasses.dataclass(frozen=True)
class Held:
    fd: int
    worker_id: int
    #: why the ID is above the worker count, if it is
    overflow: str | None = None
    #: the page file (``slots.<k>.lock``) holding the ID's byte in the search
    #: index, for IDs above ``_layout.PAGE``; kept open for the process's life
    page_fd: int | None = None
    #: page files refused during the election, and what that meant
    notes: tuple[str, ...] = ()


def open_slots(ns_dir: str) -> tuple[int, str | None]:
    """This process's one descriptor of ``slots.lock`` (kept for its life), and a note.

    If live processes of this user hold worker IDs in an *older*
    ``slots.lock`` that was unlinked under them (the lock directory was
    removed: systemd-tmpfiles, logind, ``rm -rf``), the new file is a second
    ID space in which their IDs look free. So before electing, look for such
    holders in ``/proc/locks`` and, if there are any, join their file through
    ``/proc/<pid>/fd``: the kernel keeps an unlinked inode, and its locks,
    for as long as one process has it open.

    Reading ``/proc/locks`` can cost milliseconds (measured here: 15-20 ms on
    a process's first read), so it is done only when the file is new (this
    call created it: a first start, or a removed directory) or while the
    ``slots.orphaned`` marker says earlier workers found orphans: then every
    later worker must join them too, not only the first after the removal.
    """
    fd, created = _statefile.open_lock_file_created(_layout.slots_file(ns_dir))
    marker = os.path.join(ns_dir, _layout.ORPHANED)
    if not created and not os.path.lexists(marker):
        return fd, None
    try:
        old = _orphaned(ns_dir, fd)
    except OSError:
        old = None
    if old is None:
        if not created:
            try:
                os.unlink(marker)  # the orphans are gone: back to the plain path
            except OSError:
                pass
        return fd, None
    os.close(fd)
    note = (
        f"{_layout.slots_file(ns_dir)} was removed under live workers (pid {old[1]}); "
        "joined their worker IDs instead of starting a second set"
    )
    try:
        os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))
    except OSError as exc:
        # Without the marker the next worker would not look for the orphans.
        note += f"; could not leave {marker} for the next worker ({exc.strerror})"
    return old[0], note


def _orphaned(ns_dir: str, fd: int) -> tuple[int, int] | None:
    st = os.fstat(fd)
    me, uid = os.getpid(), os.geteuid()
    # The union of _READS looks: /proc/locks comes a page per read, by position,
    # so a line can be skipped while other processes take and drop locks (new
    # workers electing in the new file, right now); an orphan missed here would
    # be a live worker whose ID looks free. This path runs only when slots.lock
    # is new or slots.orphaned says so, so the extra reads are rare.
    holders = {
        (pid, ino)
        for _look in range(_READS)
        for pid, kind, dev, ino, start, end in _procfs.posix_locks()
        if kind == "WRITE"
        and dev == st.st_dev
        and ino != st.st_ino
        and start == end
        and start < _layout.RUN_BASE
        and pid not in (me, 0)
    }
    gone = _layout.slots_file(ns_dir) + " (deleted)"
    for pid, ino in sorted(holders):
        if _procfs.uid(pid) != uid:
            continue
        for number, target in _procfs.open_fds(pid):
            if target != gone:
                continue
            old = _open_theirs(pid, number)
            if old is None:
                continue
            if os.fstat(old).st_ino == ino:
                return old, pid
            os.close(old)
    return None


def _open_theirs(pid: int, number: int, flags: int = os.O_RDWR) -> int | None:
    """Open the file behind another process's descriptor (same user), if it is ours."""
    try:
        fd = os.open(f"/proc/{pid}/fd/{number}", flags | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
        os.close(fd)
        return None
    return fd


@dataclasses.dataclass(frozen=True)
class Holding:
    """What another live process holds: its namespace, worker ID and run."""

    ns_dir: str
    worker_id: int | None
    #: first byte of its run's range (see ``_layout.run_offset``)
    run_offset: int | None
    start: int | None


def holding_of(pid: int) -> Holding | None:
    """What ``pid`` (a process of this user) holds in any lock directory, or ``None``.

    Found from outside: its descriptors name its ``slots.lock``, and
    ``/proc/locks`` lists its locks there (the byte of its worker ID, the
    range of its run, whose length is the run's start time).
    """
    for number, target in _procfs.open_fds(pid):
        path = target.removesuffix(" (deleted)")
        if os.path.basename(path) != _layout.SLOTS:
            continue
        fd = _open_theirs(pid, number, os.O_RDONLY)
        if fd is None:
            continue
        try:
            st = os.fstat(fd)
        finally:
            os.close(fd)
        for _attempt in range(_READS):
            worker_id = offset = start = None
            for holder, kind, dev, ino, first, last in _procfs.posix_locks(pid):
                if holder != pid or dev != st.st_dev or ino != st.st_ino:
                    continue
                if kind == "WRITE" and first == last and first < _layout.RUN_BASE:
                    worker_id = first + 1
                elif kind == "READ" and first >= _layout.RUN_BASE and last >= first:
                    offset, start = first, last - first + 1
            if worker_id is not None and offset is not None:
                break
            # /proc/locks comes a page (4 KiB) per read, each under the kernel's lock
            # anew, by position: when other processes' locks come and go between two
            # reads, a line is skipped (seen with 70 workers and their children). A
            # worker's own locks stay put once it is elected, so read again.
        if worker_id is not None:
            return Holding(os.path.dirname(path), worker_id, offset, start)
    return None


class _Pages:
    """The page files (``slots.<k>.lock``) one election opens, each once.

    A page that cannot be used safely (a symlink, a FIFO, another owner, a
    group-writable file: ``_statefile.open_lock_file``) is never opened
    again in this election; its IDs are searched in ``slots.lock`` alone,
    which is slower but exact, and :attr:`notes` says so.
    """

    def __init__(self, ns_dir: str) -> None:
        self.ns_dir = ns_dir
        self.fds: dict[int, int | None] = {}
        self.notes: list[str] = []
        # Once per election, not once per page (worker 1,025 opens 16): the uid
        # every page must have.
        self._euid = os.geteuid()

    def fd(self, page: int) -> int | None:
        if page in self.fds:
            return self.fds[page]
        path = _layout.page_file(self.ns_dir, page)
        fd: int | None
        try:
            fd = _statefile.open_lock_file_created(path, euid=self._euid)[0]
        except OSError as exc:
            fd = None
            why = str(exc) if type(exc) is _statefile.UnsafeStateError else exc.strerror or exc
            first = page * _layout.PAGE + 1
            self.notes.append(
                f"refused {path} ({why}): worker IDs {first}..{first + _layout.PAGE - 1} are "
                f"searched in {_layout.SLOTS} alone (slower, still exact)"
            )
        self.fds[page] = fd
        return fd

    def close(self, keep: int | None = None) -> None:
        for fd in self.fds.values():
            if fd is not None and fd != keep:
                os.close(fd)
        self.fds.clear()


def _lowest_free(fd: int, pages: _Pages, max_slots: int) -> tuple[int, int | None] | None:
    """Take the lowest free worker ID: ``(ID, descriptor of its page file or None)``.

    ID ``i`` is byte ``i-1`` of ``slots.lock``, always. IDs 1..PAGE are
    looked for there. Above, the byte in the ID's page file is taken first,
    and the one in ``slots.lock`` only then: a worker skipping held IDs
    probes a file of at most ``PAGE`` locks, and ``slots.lock`` decides (a
    worker of a release without pages holds only that byte; if it is held,
    the page's byte is given back and the search goes on).
    """
    page_size = _layout.PAGE
    stop = min(page_size, max_slots)
    byte = _reclock.first_free(fd, 0, stop)
    while byte is not None:
        if _reclock.try_lock(fd, byte):
            return byte + 1, None
        byte = _reclock.first_free(fd, byte + 1, stop)
    for first in range(page_size, max_slots, page_size):
        stop = min(page_size, max_slots - first)
        page_fd = pages.fd(first // page_size)
        if page_fd is None:  # refused: slots.lock alone, slower and as exact
            for index in range(first, first + stop):
                if _reclock.conflict(fd, index) is None and _reclock.try_lock(fd, index):
                    return index + 1, None
            continue
        byte = _reclock.first_free(page_fd, 0, stop)
        while byte is not None:
            if _reclock.try_lock(page_fd, byte):
                if _reclock.try_lock(fd, first + byte):
                    return first + byte + 1, page_fd
                _reclock.unlock(page_fd, byte, 1)
            byte = _reclock.first_free(page_fd, byte + 1, stop)
    return None


def _give_back(fd: int, worker_id: int, page_fd: int | None) -> None:
    _reclock.unlock(fd, worker_id - 1, 1)
    if page_fd is not None:
        _reclock.unlock(page_fd, (worker_id - 1) % _layout.PAGE, 1)


def elect(
    fd: int,
    *,
    ns_dir: str,
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
    pages = _Pages(ns_dir)
    keep: int | None = None
    try:
        while True:
            got = _lowest_free(fd, pages, max_slots)
            late = time.monotonic() >= deadline
            if got is not None and (worker_count is None or got[0] <= worker_count):
                keep = got[1]
                return Held(fd, got[0], page_fd=keep, notes=tuple(pages.notes))
            if got is not None and late:
                keep = got[1]
                return Held(
                    fd,
                    got[0],
                    overflow=(
                        f"worker IDs 1..{worker_count} were all held by live processes for "
                        f"{settle_timeout:g}s (old workers still running, or another server in "
                        f"this namespace?); took {got[0]}"
                    ),
                    page_fd=keep,
                    notes=tuple(pages.notes),
                )
            if got is None and late:
                raise SlotsExhausted(
                    f"all {max_slots} worker IDs are held by live processes; raise "
                    "WORKERID_MAX_SLOTS or give other servers their own WORKERID_NAMESPACE"
                )
            if got is not None:
                _give_back(fd, *got)
            time.sleep(_POLL)
    finally:
        pages.close(keep)


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
    """Give the ID back (closing a descriptor drops every lock on its file)."""
    for fd in (held.fd, held.page_fd):
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
