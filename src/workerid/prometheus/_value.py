"""prometheus_client's multiprocess value, keyed by worker and opened lazily.

This is ``prometheus_client.values.MultiProcessValue`` (``values.py``) with
three changes, each for a failure measured under real servers:

* The file key is workerid's per-process key (:func:`compute_key`), not the
  PID, so recycled workers reuse their predecessor's files and the directory
  stays bounded. Upstream calls ``process_identifier()`` on every ``inc``/
  ``set``/``get`` (``__check_for_pid_change``); here a fork counter is
  compared instead, and the key is computed once per process.
* Files are opened on a value's first use in a process, not when the metric
  is created: a pre-fork master that imports the app (gunicorn ``--preload``)
  creates metrics but never serves, and must leave no files.
* Taking a key retires the live gauges its dead predecessor left
  (:func:`_files.retire`), and those of any other dead key in the directory.

The storage itself is prometheus_client's ``MmapedDict`` and ``mmap_key``,
so the files are exactly the ones its ``MultiProcessCollector`` reads.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import os
import threading
import zlib
from typing import Any

from prometheus_client import mmap_dict

from .. import _identity
from . import _files

#: prometheus_client's storage, untyped upstream
MmapedDict: Any = mmap_dict.MmapedDict
mmap_key = mmap_dict.mmap_key
#: entries carry a timestamp since prometheus_client 0.18 (the ``mostrecent``
#: gauges); 0.16 and 0.17 (Debian 12 ships 0.16) store the value alone
TIMESTAMPS = "timestamp" in inspect.signature(MmapedDict.write_value).parameters


def _read(f: Any, key: str) -> tuple[float, float]:
    got = f.read_value(key)
    return (got[0], got[1]) if TIMESTAMPS else (got, 0.0)


def _write(f: Any, key: str, value: float, timestamp: float) -> None:
    if TIMESTAMPS:
        f.write_value(key, value, timestamp)
    else:
        f.write_value(key, value)


@dataclasses.dataclass
class _State:
    """One per process (reset by fork): the key and the files open under it."""

    #: bumped in every forked child and whenever the key is given up: values
    #: compare it with the epoch they opened their file in
    epoch: int = 0
    #: the epoch the key below was computed in (-1: none yet)
    keyed_in: int = -1
    key: str | None = None
    #: the process this state belongs to: a fork that ran no Python at-fork
    #: handler (uWSGI forks its workers in C unless --py-call-osafterfork)
    #: shows as a different PID, and the state is dropped then
    pid: int = dataclasses.field(default_factory=os.getpid)
    #: why the key is a PID, when it is one
    reason: str | None = None
    lock_fd: int | None = None
    files: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: what this process's key took over or swept (for tests and the log)
    retired: list[str] = dataclasses.field(default_factory=list)


_state = _State()
_getpid = os.getpid
#: every value made in this process or inherited from its master (upstream keeps
#: them alike, ``values`` in ``MultiProcessValue``): metrics live as long as it
_values: list[WorkerValue] = []
# One lock for every value, as upstream: prometheus_client's multiprocess
# values share it too, and MmapedDict is not thread-safe.
_lock = threading.Lock()


def _forget() -> None:
    for f in _state.files.values():
        with contextlib.suppress(Exception):
            f.close()
    if _state.lock_fd is not None:
        os.close(_state.lock_fd)
    _state.files.clear()
    _state.lock_fd, _state.key, _state.reason = None, None, None
    _state.retired = []
    _state.epoch += 1
    _state.pid = os.getpid()


def _after_fork_child() -> None:
    global _lock
    _lock = threading.Lock()
    # The parent's mappings and descriptor are leftovers here; the parent's
    # record lock is not this process's (record locks are not inherited).
    _forget()


def _after_fork_parent() -> None:
    """A worker that forked and is a master now (workerid's own fork handler, which
    ran first, took its worker ID away) gives the worker's key back: the child
    that takes the ID next takes the key too, and this process writes under its
    PID from now on."""
    if _state.key is None or _state.reason is not None:
        return
    if _identity.identity().worker_id is None:
        with _lock:
            _forget()


os.register_at_fork(after_in_parent=_after_fork_parent, after_in_child=_after_fork_child)


def namespace_tag(lock_dir: str | None, namespace: str) -> str:
    """8 hex digits naming one ID space: two servers sharing a metrics directory never clash."""
    name = f"{lock_dir}\0{namespace}".encode()
    return f"{zlib.crc32(name):08x}"


def compute_key() -> tuple[str, str | None]:
    """This process's key and, when it is the PID, why.

    ``w<id>-<tag>`` when workerid proves the ID is this process's alone: it
    holds the ID's kernel lock, or uWSGI assigned it. Otherwise the PID, as
    prometheus_client would: a helper forked by a worker reports the
    worker's ID but must not write the worker's files, and a master or a
    degraded worker has no ID.
    """
    ident = _identity.identity()
    wid = ident.worker_id
    if (
        wid is not None
        and not ident.inherited
        and (_identity.holds_slot() or ident.worker_id_source == "uwsgi")
    ):
        return f"w{wid}-{namespace_tag(ident.lock_dir, ident.namespace)}", None
    if ident.inherited:
        why = f"a helper of worker {wid}" if wid is not None else "a helper of a worker"
    elif wid is None:
        why = "; ".join(ident.degraded) or "no worker ID"
    else:
        why = f"worker ID {wid} came from {ident.worker_id_source}, not from a lock it holds"
    return str(os.getpid()), why


def _directory() -> str:
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        raise RuntimeError("PROMETHEUS_MULTIPROC_DIR is not set (workerid.prometheus.install())")
    return path


def _take_key(found: tuple[str, str | None] | None = None) -> None:
    """Compute and lock this process's key; retire what dead keys left. Lock held."""
    path = _directory()
    key, reason = found or compute_key()
    fd: int | None = None
    listing: _files.Listing | None = None
    try:
        fd = _files.acquire(path, key)
        # one read of the directory: the check of this key's names, then the sweep
        listing = _files.scan(path) if fd is not None else None
        odd = listing.odd_of(key) if listing is not None else []
        if fd is None or odd:  # never share files, never open a FIFO or a symlink
            if fd is None:
                reason = f"key {key} is in use by another live process (a second server "
                reason += "with the same lock directory and namespace?)"
            else:
                os.close(fd)
                reason = f"{', '.join(odd)} in {path} not a regular file: key {key} not used"
            key = f"{os.getpid()}-{os.urandom(4).hex()}"
            fd = _files.acquire(path, key)
    except OSError as exc:
        # Nothing can prove this key's liveness: PID files, as upstream.
        reason = f"cannot lock keys in {path} ({exc.strerror or exc})"
        key, fd = str(os.getpid()), None
    retired: list[str] = []
    if fd is not None:
        retired += _files.retire(path, key)  # its predecessor, provably dead
        retired += sweep(path, own=key, listing=listing)
    for name, problem in _files.take_problems():
        _identity.warn(f"prometheus: cannot retire {name} in {path}: {problem}")
    _state.key, _state.reason, _state.lock_fd = key, reason, fd
    _state.keyed_in, _state.retired = _state.epoch, retired
    # Every metric made so far gets its file now, at 0 or where its
    # predecessor left it, as upstream's values do at creation: a series is
    # scraped from the worker's start, not from its first change.
    for value in _values:
        value._open()
    if reason is not None:
        _identity.warn(f"prometheus_client files keyed by {key}: {reason}")


def sweep(path: str, *, own: str | None, listing: _files.Listing | None = None) -> list[str]:
    """Retire the live gauges of every dead key in ``path`` (but ``own``)."""
    removed: list[str] = []
    if listing is None:
        try:
            listing = _files.scan(path)
        except OSError:
            return removed
    with_live = {f.key for f in listing.files if f.live}
    for key in sorted((with_live & listing.locks) - {own}):
        removed += _files.retire_if_dead(path, key) or []
    return removed


def activate() -> bool:
    """Take this process's key now if it is a worker's (retiring its dead predecessor's
    live gauges at start, before any request); a master or helper waits for its first
    write, so one that never writes leaves no file. True if keyed."""
    with _lock:
        if _state.keyed_in == _state.epoch:
            return True
        found = compute_key()
        if found[1] is not None:
            return False
        _take_key(found)
        return True


def ensure_keyed() -> str:
    """This process's key, taking it on first use."""
    with _lock:
        if _state.keyed_in != _state.epoch:
            _take_key()
        assert _state.key is not None
        return _state.key


#: what prometheus_client's MmapedDict makes a new file (``_INITIAL_MMAP_SIZE``)
_INITIAL_SIZE = 1 << 16


class _Unrecorded:
    """Stands in for a file that cannot be written: values live in memory only."""

    def __init__(self) -> None:
        self._values: dict[str, tuple[float, float]] = {}

    def read_value(self, key: str) -> Any:
        got = self._values.get(key, (0.0, 0.0))
        return got if TIMESTAMPS else got[0]

    def write_value(self, key: str, value: float, timestamp: float = 0.0) -> None:
        self._values[key] = (value, timestamp)

    def close(self) -> None:
        pass


def _mapped(name: str) -> Any:
    """prometheus_client's file ``name``, its first 64 KiB allocated for real.

    MmapedDict makes a new file with ``ftruncate``, which succeeds on a full
    disk (the file is sparse), and the first write to the mapping then kills
    the process with SIGBUS. ``posix_fallocate`` fails cleanly instead: the
    app keeps serving, and this process's values of this file stay in memory
    (not scraped) with a warning saying so.
    """
    path = os.path.join(_directory(), name)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            if os.fstat(fd).st_size < _INITIAL_SIZE:
                os.posix_fallocate(fd, 0, _INITIAL_SIZE)
        finally:
            os.close(fd)
        return MmapedDict(path)
    except OSError as exc:
        _identity.warn(
            f"prometheus_client file {path} cannot be written ({exc.strerror or exc}): this "
            "process's values in it are kept in memory only and are not scraped"
        )
        return _Unrecorded()


class WorkerValue:
    """A float in a per-key mmaped file (prometheus_client's ``ValueClass`` protocol)."""

    _multiprocess = True

    def __init__(  # noqa: PLR0917 - prometheus_client calls it positionally
        self,
        typ: str,
        metric_name: str,
        name: str,
        labelnames: Any,
        labelvalues: Any,
        help_text: str,
        multiprocess_mode: str = "",
        **kwargs: Any,
    ) -> None:
        self._prefix = f"{typ}_{multiprocess_mode}" if typ == "gauge" else typ
        self._key = mmap_key(metric_name, name, labelnames, labelvalues, help_text)
        self._value = 0.0
        self._timestamp = 0.0
        self._file: Any = None
        #: the epoch this value's file was opened in (-1: not yet)
        self._opened_in = -1
        with _lock:
            _values.append(self)
            if _state.keyed_in == _state.epoch:
                self._open()

    def _open(self) -> Any:
        """The file for this process's key (lock held); reads what a predecessor counted."""
        if _state.keyed_in != _state.epoch:
            _take_key()  # opens this value too
            if self._opened_in == _state.epoch:
                return self._file
        f = _state.files.get(self._prefix)
        if f is None:
            f = _state.files[self._prefix] = _mapped(f"{self._prefix}_{_state.key}.db")
        self._file = f
        self._opened_in = _state.epoch
        self._value, self._timestamp = _read(f, self._key)
        return f

    def _fresh(self) -> Any:
        """This value's file in this process (lock held)."""
        if self._opened_in == _state.epoch and _state.pid == os.getpid():
            return self._file
        if _state.pid != os.getpid():
            _forget()  # forked in C: the parent's files and key are not ours
        return self._open()

    def inc(self, amount: float) -> None:
        with _lock:
            f = self._file
            if self._opened_in != _state.epoch or _state.pid != _getpid():
                f = self._fresh()
            assert f is not None
            self._value += amount
            self._timestamp = 0.0
            _write(f, self._key, self._value, self._timestamp)

    def set(self, value: float, timestamp: float | None = None) -> None:
        with _lock:
            f = self._file
            if self._opened_in != _state.epoch or _state.pid != _getpid():
                f = self._fresh()
            assert f is not None
            self._value = value
            self._timestamp = timestamp or 0.0
            _write(f, self._key, self._value, self._timestamp)

    def set_exemplar(self, exemplar: Any) -> None:
        return  # not supported in multiprocess mode (as upstream)

    def get(self) -> float:
        with _lock:
            self._fresh()
            return self._value

    def get_exemplar(self) -> Any:
        return None
