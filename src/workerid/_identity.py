"""Identity and the one pipeline that builds it; the cache; fork handling.

Data flows one way: detect the loader -> resolve the run in the ledger ->
elect a slot -> cache -> answer. The first call in a process does the work
(a few syscalls and one small file read); every later call is a global read
and an attribute access. Nothing runs at import time, so importing workerid
in a server's master before it forks costs nothing and decides nothing.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import zlib
from collections.abc import Callable
from typing import Any

from . import _config, _generation, _layout, _procfs, _slots, _statefile, loaders
from ._config import Settings

log = logging.getLogger("workerid")


@dataclasses.dataclass(frozen=True)
class Identity:
    """Everything workerid knows about this worker, and where each value came from.

    Sources are ``"uwsgi"``, ``"mod_wsgi"`` and ``"gunicorn"`` (the server
    said so), ``"lock"`` (elected), ``"ledger"`` (recorded by the run's first
    worker), ``"procfs"`` (derived from ``/proc``), ``"env"`` and
    ``"config"`` (``WORKERID_*`` / ``configure()``), or ``None`` (unknown).
    """

    worker_id: int | None
    worker_count: int | None
    start_time: int | None
    #: opaque name of this server run; equal for all its workers
    generation: str | None
    loader: str
    namespace: str
    lock_dir: str | None
    worker_id_source: str | None
    worker_count_source: str | None
    start_time_source: str | None
    #: human-readable reasons a value is missing or weaker than it could be
    degraded: tuple[str, ...] = ()
    pid: int = 0
    #: the PID of the process whose life is this server run
    supervisor_pid: int | None = None
    #: True in a process forked by a worker: it reports the worker's values
    #: but holds no slot (the ID is the worker's, as under uWSGI)
    inherited: bool = False

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --- state -----------------------------------------------------------------

_lock = threading.RLock()
_cached: Identity | None = None
_held: _slots.Held | None = None
#: lock-dir namespace directory of the cached identity, if usable
_ns_dir: str | None = None
#: True when the cached identity was built as the top of its process tree
_top = False
_explicit = Settings()
_warned: set[str] = set()
#: called whenever this process forgets its identity (configure(), a fork
#: that makes it a new worker); _once registers its memo's reset here, so
#: this module needs no import of _once
on_forget: list[Callable[[], None]] = []


def _key(*parts: object) -> str:
    """An opaque 64-bit key of ``parts``, the same in every process.

    Not a security boundary (the directory's permissions are): two CRC-32s
    with different seeds, because importing hashlib would load OpenSSL,
    milliseconds on the first call of every freshly forked worker.
    """
    data = "\0".join(map(str, parts)).encode("utf-8", "surrogatepass")
    return f"{zlib.crc32(data):08x}{zlib.crc32(data, 0x5BD1E995):08x}"


def _warn(reason: str) -> None:
    if reason not in _warned:
        _warned.add(reason)
        log.warning("workerid: %s", reason)


def _build(explicit: Settings) -> tuple[Identity, _slots.Held | None, str | None, bool, bool]:
    settings = _config.from_env(os.environ, explicit)
    det = loaders.detect()
    degraded: list[str] = list(det.notes)
    origin = settings.origin
    namespace = settings.namespace or det.namespace

    count, count_source = det.worker_count, det.worker_count_source
    if settings.worker_count is not None:
        count, count_source = settings.worker_count, origin["worker_count"]

    max_slots = settings.max_slots or _config.DEFAULT_MAX_SLOTS
    if count is not None and count > max_slots:
        degraded.append(f"max_slots {max_slots} is below the worker count {count}; using {count}")
        max_slots = count

    me = os.getpid()
    is_master = det.supervisor_pid is None and det.loader == "gunicorn"
    supervisor = det.supervisor_pid or me
    ticks = _procfs.start_ticks(supervisor)
    boot = _procfs.boot_id()
    if ticks is None or boot is None:
        degraded.append(
            "/proc does not identify the server process; server runs are told apart by PID only"
        )
    run = _key("run", boot, supervisor, ticks, det.run_extra)
    slot_key = _key("slot", run, det.epoch_extra)

    lock_dir = settings.lock_dir or _config.default_lock_dir()
    ns_dir: str | None = _layout.namespace_dir(lock_dir, namespace)
    worker_id = det.native_worker_id
    wid_source: str | None = "uwsgi" if worker_id is not None else None
    start = det.native_start_time
    start_source: str | None = "uwsgi" if start is not None else None
    held: _slots.Held | None = None

    try:
        _statefile.ensure_dir(lock_dir)
        assert ns_dir is not None
        _statefile.ensure_dir(ns_dir, create_parents=False)
        if start is None:
            entry = _generation.resolve(
                ns_dir,
                run,
                slot_key,
                lambda: det.start_hint or _procfs.start_time(supervisor),
            )
            start, start_source = entry.start, "ledger"
            if not is_master and worker_id is None:
                held = _slots.elect(
                    ns_dir,
                    entry.lane,
                    max_slots=max_slots,
                    worker_count=count,
                    settle_timeout=(
                        _config.DEFAULT_SETTLE_TIMEOUT
                        if settings.settle_timeout is None
                        else settings.settle_timeout
                    ),
                )
                worker_id, wid_source = held.worker_id, "lock"
                if held.overflow:
                    degraded.append(held.overflow)
    except OSError as exc:
        ns_dir = None
        problem = exc.strerror if type(exc) is not _statefile.UnsafeStateError else str(exc)
        where = getattr(exc, "filename", None) or lock_dir
        if start is None:
            if det.start_hint:
                start, start_source = int(det.start_hint), det.loader
            else:
                start = _procfs.start_time(supervisor)
                start_source = "procfs" if start is not None else None
        degraded.append(
            f"lock directory {lock_dir} is unusable ({where}: {problem}); "
            + ("worker_id is None, " if worker_id is None and not is_master else "")
            + f"start_time falls back to {start_source or 'None'}. Fix: make it a directory "
            f"owned by uid {os.geteuid()} and not writable by others, or set WORKERID_DIR"
        )
    if is_master:
        degraded.append(f"this process is the {det.loader} master, not a worker: no worker ID")

    ident = Identity(
        worker_id=worker_id,
        worker_count=count,
        start_time=start,
        generation=run,
        loader=det.loader,
        namespace=namespace,
        lock_dir=lock_dir,
        worker_id_source=wid_source,
        worker_count_source=count_source if count is not None else None,
        start_time_source=start_source,
        degraded=tuple(degraded),
        pid=me,
        supervisor_pid=det.supervisor_pid,
    )
    return ident, held, ns_dir, det.supervisor_pid is None and not is_master, det.cacheable


def _fallback(exc: BaseException) -> Identity:
    return Identity(
        worker_id=None,
        worker_count=None,
        start_time=None,
        generation=None,
        loader="unknown",
        namespace="default",
        lock_dir=None,
        worker_id_source=None,
        worker_count_source=None,
        start_time_source=None,
        degraded=(f"internal error, please report: {type(exc).__name__}: {exc}",),
        pid=os.getpid(),
    )


def _resolve() -> Identity:
    global _cached, _held, _ns_dir, _top
    with _lock:
        if _cached is not None:
            return _cached
        try:
            ident, held, ns_dir, top, cacheable = _build(_explicit)
        except Exception as exc:  # never raise into the application
            ident, held, ns_dir, top, cacheable = _fallback(exc), None, None, False, True
        for reason in ident.degraded:
            _warn(reason)
        _held, _ns_dir, _top = held, ns_dir, top
        if cacheable:
            _cached = ident
        return ident


def _drop_slot() -> None:
    global _held
    if _held is not None:
        _slots.release(_held)
        _held = None


# --- fork --------------------------------------------------------------------


def _before_fork() -> None:
    _lock.acquire()
    if _cached is not None and _top:
        # The top of its tree is forking: it becomes a pre-fork master, and
        # its children are the workers. Give the slot back *before* the fork,
        # not after: a child that elects at once would otherwise find its
        # master still holding slot 1, take 2, and leave 1 to the next child
        # (seen under load). If the fork fails, this process has given up its
        # ID for nothing; it says so in `degraded` like any master.
        _drop_slot()


def _after_fork_parent() -> None:
    global _cached, _top
    try:
        if _cached is not None and _top:
            # This process has just forked (its slot went in _before_fork): it
            # is a master now, with no worker ID.
            _cached = dataclasses.replace(
                _cached,
                worker_id=None,
                worker_id_source=None,
                degraded=(
                    *_cached.degraded,
                    "this process forked workers, so it is a master now: no worker ID",
                ),
            )
            _top = False
    finally:
        _lock.release()


def _after_fork_child() -> None:
    global _lock, _cached, _held, _ns_dir, _top
    _lock = threading.RLock()
    if _held is not None:
        # The child holds no record lock (they are not inherited); the
        # descriptor is just a leftover. Closing it cannot touch the parent.
        try:
            os.close(_held.fd)
        except OSError:
            pass
        _held = None
    if _cached is None:
        return
    if _top or _cached.worker_id is None:
        # Forked by a master (or by a process that was about to become one):
        # this child is a worker and elects on its first call.
        _cached, _ns_dir, _top = None, None, False
        for forget in on_forget:
            forget()
    else:
        # Forked by a worker: a helper. It reports its worker's values, like
        # a process forked by a uWSGI worker, but keeps no slot alive.
        _cached = dataclasses.replace(_cached, inherited=True, pid=os.getpid())


os.register_at_fork(
    before=_before_fork,
    after_in_parent=_after_fork_parent,
    after_in_child=_after_fork_child,
)


# --- public API ----------------------------------------------------------------


def identity() -> Identity:
    """This worker's :class:`Identity`, computed on the first call, then cached."""
    ident = _cached
    if ident is None:
        ident = _resolve()
    return ident


def worker_id() -> int | None:
    """1-based worker ID, unique among the live workers of this server; ``None`` if unknown."""
    ident = _cached
    if ident is None:
        ident = _resolve()
    return ident.worker_id


def worker_count() -> int | None:
    """The configured number of workers; ``None`` if the server does not say."""
    ident = _cached
    if ident is None:
        ident = _resolve()
    return ident.worker_count


def start_time() -> int | None:
    """Epoch seconds at which this server run started; the same in all its workers."""
    ident = _cached
    if ident is None:
        ident = _resolve()
    return ident.start_time


def is_first_worker() -> bool:
    """``worker_id() == 1``."""
    ident = _cached
    if ident is None:
        ident = _resolve()
    return ident.worker_id == 1


def configure(
    *,
    lock_dir: str | os.PathLike[str] | None = None,
    namespace: str | None = None,
    worker_count: int | None = None,
    max_slots: int | None = None,
    settle_timeout: float | None = None,
) -> None:
    """Set values explicitly; they beat ``WORKERID_*`` and detection.

    Call it before the first ``worker_id()`` (at import of your WSGI module);
    calling it later gives back this process's slot and elects again on the
    next call. Invalid values raise ``TypeError``/``ValueError`` here, at
    configuration time, never later from the hot path.
    """
    global _explicit, _cached, _ns_dir, _top
    settings = _config.explicit_settings(
        lock_dir=lock_dir,
        namespace=namespace,
        worker_count=worker_count,
        max_slots=max_slots,
        settle_timeout=settle_timeout,
    )
    with _lock:
        _explicit = settings
        _drop_slot()
        _cached, _ns_dir, _top = None, None, False
        for forget in on_forget:
            forget()


def _state_dir() -> str | None:
    """The usable namespace directory of this process (for ``once``)."""
    identity()
    return _ns_dir


def _namesakes() -> list[int] | None:
    """Live processes holding this worker's ID in another lane of its namespace.

    ``None`` when this process holds no slot (nothing can be said). An empty
    list means the ID is this process's alone: any state a predecessor with
    the same ID left behind belongs to a dead process.
    """
    identity()
    with _lock:
        held, ns_dir = _held, _ns_dir
        if held is None or ns_dir is None:
            return None
        return _slots.holders_elsewhere(ns_dir, held.worker_id, held.lane)


def _reset_for_tests() -> None:
    """Forget everything, as a fresh process would. Not public API."""
    configure()
    _warned.clear()
