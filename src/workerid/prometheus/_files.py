"""The multiprocess directory as workerid sees it: keys, their files, and who is alive.

prometheus_client names each process's files ``<type>_<id>.db``, and gauges
``gauge_<mode>_<id>.db`` (``values.py``, ``MmapedValue.__reset``); its
collector takes ``<id>`` as ``parts[2]`` of the name split on ``_``
(``multiprocess.py``, ``_read_metrics``), so a key must never contain ``_``.

Beside each key workerid keeps ``workerid-<key>.lock``: the process using the
key holds a write record lock on its first byte for its whole life, and its
PID is the file's content. A record lock, not ``flock``: record locks are not
inherited by ``fork`` (a helper forked by the worker would otherwise keep a
dead worker's key "alive") and the kernel drops them when the process dies,
``kill -9`` included. So "I could lock it" proves that no process uses the
key, which is what retiring live gauges and ``gc`` need. The collector globs
only ``*.db``, so these files are never read as metrics.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import os
import re
import stat
import struct
import time

#: prometheus_client's metric types with files of their own
TYPES = ("counter", "gauge", "histogram", "summary")
#: gauge modes that count only live processes (prometheus_client ``Gauge._MULTIPROC_MODES``;
#: ``mark_process_dead`` removes exactly the files of the modes starting with ``live``)
LIVE_MODES = ("liveall", "livemax", "livemin", "livesum", "livemostrecent")
LOCK_PREFIX = "workerid-"
LOCK_SUFFIX = ".lock"
#: how long a worker waits for its key's lock before it takes another key
#: (the lock is held by a retiring process for a few unlinks at most)
ACQUIRE_WAIT = 2.0

_KEY = re.compile(r"^[A-Za-z0-9.-]{1,64}$")


def valid_key(key: str) -> bool:
    """A key prometheus_client's file names can carry unambiguously."""
    return bool(_KEY.match(key))


@dataclasses.dataclass(frozen=True)
class DbFile:
    name: str
    typ: str
    mode: str | None
    key: str
    size: int

    @property
    def live(self) -> bool:
        """A live gauge: meaningful only while its process is alive."""
        return self.mode in LIVE_MODES


def parse_db(name: str) -> tuple[str, str | None, str] | None:
    """``(type, gauge mode or None, key)`` of a prometheus_client file name."""
    if not name.endswith(".db"):
        return None
    parts = name[:-3].split("_")
    if parts[0] not in TYPES:
        return None
    if parts[0] == "gauge":
        if len(parts) != 3:
            return None
        return parts[0], parts[1], parts[2]
    if len(parts) != 2:
        return None
    return parts[0], None, parts[1]


def lock_name(key: str) -> str:
    return f"{LOCK_PREFIX}{key}{LOCK_SUFFIX}"


def key_of_lock(name: str) -> str | None:
    if name.startswith(LOCK_PREFIX) and name.endswith(LOCK_SUFFIX):
        key = name[len(LOCK_PREFIX) : -len(LOCK_SUFFIX)]
        return key if valid_key(key) else None
    return None


@dataclasses.dataclass(frozen=True)
class Listing:
    """One read of a directory: what ``scan`` found."""

    #: the metric files (regular files only)
    files: list[DbFile]
    #: the keys with a lock file
    locks: set[str]
    #: (name, key) of metric names that are not regular files (a FIFO, a symlink)
    odd: list[tuple[str, str]]

    def odd_of(self, key: str) -> list[str]:
        """``key``'s metric names that are something else than a regular file."""
        return sorted(name for name, k in self.odd if k == key)


def scan(path: str) -> Listing:
    """Read ``path`` once: metric files, keys with a lock file, names that are not files."""
    files: list[DbFile] = []
    locks: set[str] = set()
    odd: list[tuple[str, str]] = []
    with os.scandir(path) as entries:
        for entry in entries:
            key = key_of_lock(entry.name)
            if key is not None:
                locks.add(key)
                continue
            parsed = parse_db(entry.name)
            if parsed is None:
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(st.st_mode):
                odd.append((entry.name, parsed[2]))
                continue
            files.append(DbFile(entry.name, *parsed, st.st_size))
    return Listing(files, locks, odd)


_WRLOCK = struct.pack("hhqqi", fcntl.F_WRLCK, os.SEEK_SET, 0, 1, 0)
_UNLOCK = struct.pack("hhqqi", fcntl.F_UNLCK, os.SEEK_SET, 0, 1, 0)


def _open_lock(path: str, key: str, *, create: bool) -> int:
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    if create:
        flags |= os.O_CREAT
    fd = os.open(os.path.join(path, lock_name(key)), flags, 0o600)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, f"{lock_name(key)} is not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _try_lock(fd: int) -> bool:
    try:
        fcntl.fcntl(fd, fcntl.F_SETLK, _WRLOCK)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EAGAIN):
            return False
        raise
    return True


def _same_file(fd: int, path: str) -> bool:
    """Is ``path`` still the inode ``fd`` locked? (``gc`` may have unlinked it.)"""
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    fst = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino)


def acquire(path: str, key: str, *, wait: float = ACQUIRE_WAIT) -> int | None:
    """Hold ``key``'s lock for this process's life: the descriptor, or ``None`` if it is in use.

    Raises ``OSError`` when the lock file cannot be made (then nothing can
    prove this key's liveness, and the caller must not use it).
    """
    deadline = time.monotonic() + wait
    while True:
        fd = _open_lock(path, key, create=True)
        locked = False
        try:
            locked = _try_lock(fd)
            if locked and _same_file(fd, os.path.join(path, lock_name(key))):
                body = f"{os.getpid()}\n".encode()
                os.ftruncate(fd, 0)
                os.pwrite(fd, body, 0)
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # releases a lock on an unlinked inode too
        if locked:
            continue  # the file was replaced under us: lock the new one
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.01)


def holder_pid(path: str, key: str) -> int | None:
    """The PID the key's lock file names (its last user), if readable."""
    try:
        fd = _open_lock(path, key, create=False)
    except OSError:
        return None
    try:
        data = os.pread(fd, 32, 0)
    finally:
        os.close(fd)
    text = data.decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


def probe(path: str, key: str) -> bool | None:
    """Is ``key`` in use by a live process? ``None``: no lock file (not workerid's key).

    Never call it for a key this process holds: closing any descriptor of a
    file drops this process's record locks on it.
    """
    try:
        fd = _open_lock(path, key, create=False)
    except FileNotFoundError:
        return None
    except OSError:
        return True  # unreadable or hostile: not provably dead
    try:
        got = struct.unpack("hhqqi", fcntl.fcntl(fd, fcntl.F_GETLK, _WRLOCK))
    finally:
        os.close(fd)
    return bool(got[0] != fcntl.F_UNLCK)


def retire_if_dead(path: str, key: str, *, remove_lock: bool = False) -> list[str] | None:
    """Remove a dead key's live gauges; ``None`` if the key is in use (or not workerid's).

    The key's lock is held while the files go, so no new user of the key can
    start writing a live gauge meanwhile (it waits in :func:`acquire`).
    """
    try:
        fd = _open_lock(path, key, create=False)
    except OSError:
        return None
    try:
        if not _try_lock(fd):
            return None
        removed = retire(path, key)
        if remove_lock and not any(
            (parsed := parse_db(n)) is not None and parsed[2] == key for n in os.listdir(path)
        ):
            try:
                os.unlink(os.path.join(path, lock_name(key)))
                removed.append(lock_name(key))
            except OSError as exc:
                _problems.append((lock_name(key), exc.strerror or str(exc)))
        return removed
    finally:
        os.close(fd)


#: files a retirement could not remove (another user's, in a shared sticky
#: directory, say), with why: reported by the caller, never raised into a request
_problems: list[tuple[str, str]] = []


def take_problems() -> list[tuple[str, str]]:
    got = _problems[:]
    del _problems[:]
    return got


def retire(path: str, key: str) -> list[str]:
    """Remove ``key``'s live-gauge files (the caller proved the key's process dead)."""
    removed = []
    for mode in LIVE_MODES:
        name = f"gauge_{mode}_{key}.db"
        try:
            os.unlink(os.path.join(path, name))
        except FileNotFoundError:
            continue
        except OSError as exc:
            _problems.append((name, exc.strerror or str(exc)))
            continue
        removed.append(name)
    return removed
