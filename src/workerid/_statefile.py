"""Safe directories and state files.

Everything workerid keeps on disk goes through here, so the rules live in one
place:

* directories are created ``0700``; one that is writable by group or others,
  or owned by another user, is refused (:class:`UnsafeStateError`), because
  whoever can write it can swap our files for their own;
* files are opened with ``O_NOFOLLOW`` (a planted symlink is an error, not a
  redirect), created ``0600``, and must be regular files owned by us;
* state is read with a size cap and parsed strictly by the caller; a file
  that fails any check is ignored and later replaced atomically
  (write a temporary file, then ``rename``), never patched in place.
"""

from __future__ import annotations

import json
import os
import stat
from typing import Any

MAX_STATE_BYTES = 64 * 1024

_OPEN_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafeStateError(OSError):
    """A directory or file exists but must not be trusted."""


def _check_owner_and_mode(
    st: os.stat_result, path: str, what: str, euid: int | None = None
) -> None:
    # Root too: a directory another user made (say /tmp/workerid-0, made by
    # someone before root's first call) is theirs to swap files in.
    if euid is None:
        euid = os.geteuid()
    if st.st_uid != euid:
        raise UnsafeStateError(
            f"{what} {path} is owned by uid {st.st_uid}, not by this process (uid {euid})"
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafeStateError(
            f"{what} {path} is writable by other users (mode {stat.S_IMODE(st.st_mode):04o})"
        )


def ensure_dir(path: str, *, create_parents: bool = True) -> None:
    """Make sure ``path`` is a directory only we can write; create it if missing.

    Raises :class:`OSError` (a :class:`UnsafeStateError` for a directory that
    exists but must not be used). The final component may not be a symlink;
    its parents may (``/var/run`` -> ``/run`` is common).
    """
    try:
        st = os.lstat(path)  # the common case: it exists; checked with this one lstat
    except FileNotFoundError:
        pass
    else:
        _check_dir_stat(st, path)
        return
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        if not create_parents:
            raise FileNotFoundError(2, "no such directory", parent)
        os.makedirs(parent, mode=0o700, exist_ok=True)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass  # another worker won the race; check what it made below
    check_dir(path)


def check_dir(path: str) -> None:
    """Raise unless ``path`` is a directory only this user can write, and can."""
    _check_dir_stat(os.lstat(path), path)


def _check_dir_stat(st: os.stat_result, path: str) -> None:
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeStateError(f"directory {path} is a symlink")
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeStateError(f"{path} is not a directory")
    _check_owner_and_mode(st, path, "directory")
    # Existence is not enough: an unwritable directory is the most common
    # misconfiguration (Apache's daemon user vs. the owner of the lock path).
    if not os.access(path, os.W_OK | os.X_OK):
        raise PermissionError(13, "not writable by this process", path)


def open_lock_file(path: str) -> int:
    """Open (creating ``0600`` if needed) a lock file; return its descriptor.

    Lock files are never unlinked: a process may have opened the old inode
    just before the unlink and would then lock a file nobody else can see,
    so two processes would both believe they hold the same lock.
    """
    return open_lock_file_created(path)[0]


#: the bits of ``st_mode`` that a usable lock file has exactly as ``S_IFREG``:
#: the file type (``S_IFMT``'s mask) and write for group and others, clear
_LOCK_FILE_BITS = 0o170000 | stat.S_IWGRP | stat.S_IWOTH


def open_lock_file_created(path: str, *, euid: int | None = None) -> tuple[int, bool]:
    """:func:`open_lock_file`, and whether this call created the file.

    ``euid``: this process's effective uid, when the caller opens many lock
    files in a row (an election's page files) and has read it once.
    """
    # O_NONBLOCK: a FIFO planted here must not block the open (and with it
    # every worker); it is then refused as not a regular file.
    flags = os.O_RDWR | os.O_NONBLOCK | _OPEN_FLAGS
    # The file exists for every worker but a namespace's first: open it
    # first, create it (O_EXCL, so "created" is ours alone) only if missing.
    try:
        fd, created = os.open(path, flags), False
    except FileNotFoundError:
        try:
            fd, created = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600), True
        except FileExistsError:  # another process created it between the two opens
            fd, created = os.open(path, flags), False
    try:
        st = os.fstat(fd)
        if euid is None:
            euid = os.geteuid()
        # One test for the three rules (regular, ours, not writable by group or
        # others); only a file that breaks one is looked at again, for the reason.
        if st.st_mode & _LOCK_FILE_BITS != stat.S_IFREG or st.st_uid != euid:
            if not stat.S_ISREG(st.st_mode):
                raise UnsafeStateError(f"lock file {path} is not a regular file")
            _check_owner_and_mode(st, path, "lock file", euid)
            raise UnsafeStateError(f"lock file {path} is not usable")  # not reached
    except BaseException:
        os.close(fd)
        raise
    return fd, created


def open_existing(path: str) -> int | None:
    """Open an existing regular file read-only without following links or blocking.

    ``None`` if it is missing. Used on files this process holds no lock in
    (another process's view of a lock file); raises :class:`OSError` for a
    FIFO, device or symlink planted there.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | _OPEN_FLAGS)
    except FileNotFoundError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafeStateError(f"{path} is not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_json(path: str, *, owner: int | None = None) -> Any | None:
    """Read a JSON state file; ``None`` if it is missing.

    Raises :class:`ValueError` for anything that is not a small, regular,
    well-formed JSON file of the right owner: the caller treats that as
    "no state", logs it, and rewrites the file.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | _OPEN_FLAGS)
    except FileNotFoundError:
        return None
    except OSError as exc:
        # ELOOP: a symlink was planted where our file should be.
        raise ValueError(f"cannot open {path} safely: {exc.strerror}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{path} is not a regular file")
        expected = os.geteuid() if owner is None else owner
        if st.st_uid != expected:
            raise ValueError(f"{path} is owned by uid {st.st_uid}, expected {expected}")
        if st.st_size > MAX_STATE_BYTES:
            raise ValueError(f"{path} is {st.st_size} bytes, over the {MAX_STATE_BYTES} cap")
        data = os.read(fd, MAX_STATE_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_STATE_BYTES:
        raise ValueError(f"{path} grew over the {MAX_STATE_BYTES} byte cap while read")
    try:
        return _DECODER.decode(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


#: one decoder for every read: ``json.loads(..., parse_constant=...)`` builds a
#: new decoder and scanner on each call (in a fresh worker's first call, too)
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def write_json_atomic(path: str, obj: Any) -> None:
    """Replace ``path`` with ``obj`` as JSON, atomically.

    Readers see the old file or the new one, never a torn write. ``rename``
    replaces a symlink at ``path`` rather than following it.
    """
    data = json.dumps(obj, separators=(",", ":"), sort_keys=True).encode("utf-8")
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        os.unlink(tmp)  # left over by a process of the same PID that died mid-write
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _OPEN_FLAGS, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        # A full disk (ENOSPC) or a quota fails the write: leave no
        # ledger.json.tmp.<pid> behind.
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
