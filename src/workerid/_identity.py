"""Identity and the one pipeline that builds it; the cache; fork handling.

Data flows one way: detect the loader -> resolve the run in the ledger ->
elect a slot -> cache -> answer. The first call in a process does the work
(a few syscalls and one small file read); every later call is a global read
and an attribute access. Nothing runs at import time, so importing workerid
in a server's master before it forks costs nothing and decides nothing.
"""

from __future__ import annotations

import dataclasses
import fcntl
import logging
import os
import sys
import threading
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import (
    _config,
    _generation,
    _helpers,
    _layout,
    _premade,
    _procfs,
    _slots,
    _statefile,
    loaders,
)
from ._config import Settings
from .loaders import _cmdline

if TYPE_CHECKING:
    from .backends import BackendURL
    from .backends._keeper import Keeper, State

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
    #: with a backend (``WORKERID_BACKEND``): strictly increases with every
    #: claim of this worker ID across the cluster; a resource that has seen a
    #: larger token for the ID should reject this holder. ``None`` without one
    fencing_token: int | None = None
    #: the backend URL (password removed), ``None`` for the lock directory alone
    backend: str | None = None
    #: the deploy's name (``WORKERID_DEPLOY``), what ``once(scope="deploy")``
    #: keys on; ``None`` when none is set
    deploy: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --- state -----------------------------------------------------------------

_lock = threading.RLock()
#: the hot path reads only this
_cached: Identity | None = None
#: the server's live worker count, when it publishes one (gunicorn's hooks)
_live_count: Callable[[], int | None] | None = None


@dataclasses.dataclass
class _Process:
    """What this process knows besides its cached :class:`Identity`."""

    #: the held worker ID (its descriptor keeps the record locks alive)
    held: _slots.Held | None = None
    #: usable namespace directory of the cached identity
    ns_dir: str | None = None
    #: True when the cached identity was built as the top of its process tree
    top: bool = False
    explicit: Settings = dataclasses.field(default_factory=Settings)
    warned: set[str] = dataclasses.field(default_factory=set)
    #: the parent's PID when this process was forked by one that had not
    #: asked workerid yet: that parent may be a worker (this is its helper)
    #: or a master (this is a worker); see _as_helper
    forked_from: int | None = None
    #: the lock directory, open and flock()ed shared: systemd-tmpfiles skips
    #: (does not age) a directory it cannot flock(LOCK_EX) (tmpfiles.c,
    #: dir_cleanup; since v242). Record locks do not count there, so this is
    #: the one flock workerid takes. A forked child shares it: harmless.
    dir_fd: int | None = None
    dir_path: str | None = None
    #: the backend's keep-alive (it owns the engine's connection), and the
    #: identity the backend's state is laid over
    keeper: Keeper | None = None
    base: Identity | None = None
    #: what became of the parent's before-fork work (_take_premade): ``"used"``,
    #: ``"used; ledger read again"``, ``"stale: <input>"``; ``None``: there was none
    premade: str | None = None

    def keep_dir(self, path: str) -> None:
        if self.dir_path == path and self.dir_fd is not None:
            return
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)  # tmpfiles is ageing it right now; nothing to keep
            return
        if self.dir_fd is not None:
            os.close(self.dir_fd)
        self.dir_fd, self.dir_path = fd, path


_proc = _Process()
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


def warn(reason: str) -> None:
    """Log ``reason`` once per process on the ``workerid`` logger."""
    if reason not in _proc.warned:
        _proc.warned.add(reason)
        log.warning("workerid: %s", reason)


@dataclasses.dataclass(frozen=True)
class _Run:
    """Stage 2: which server run this process belongs to."""

    key: str
    owner: _generation.Owner
    #: the process whose life the run is (this process for a single server)
    supervisor: int
    #: this process's boot key and PID namespace, for liveness questions
    here: _generation.Owner


def _name_run(det: loaders.Detected, degraded: list[str]) -> _Run:
    me = os.getpid()
    supervisor = det.supervisor_pid or me
    ticks = _procfs.start_ticks(supervisor)
    boot = _procfs.boot_id()
    pidns = _procfs.pid_namespace()
    if ticks is None or boot is None:
        degraded.append(
            "/proc does not identify the server process; server runs are told apart by PID only"
        )
    boot_key = _key("boot", boot) if boot else ""
    here = _generation.Owner(boot=boot_key, pidns=pidns or 0)
    owner = dataclasses.replace(here, pid=supervisor, ticks=ticks or 0)
    return _Run(_key("run", boot, pidns, supervisor, ticks, det.run_extra), owner, supervisor, here)


@dataclasses.dataclass
class _Built:
    """The pipeline's one result: the identity and what this process must keep."""

    identity: Identity
    held: _slots.Held | None = None
    ns_dir: str | None = None
    top: bool = False
    cacheable: bool = True
    keeper: Keeper | None = None
    #: the identity without the backend's state (see _overlay)
    base: Identity | None = None


@dataclasses.dataclass
class _Plan:
    """Stage 1 (no I/O but /proc): what the server says and what the user asked for."""

    det: loaders.Detected
    run: _Run
    namespace: str
    lock_dir: str
    ns_dir: str
    count: int | None
    count_source: str | None
    #: wait for 1..N to free up only when N is the server's or the user's
    #: figure, not the "a single process is 1 of 1" guess
    settle_count: int | None
    max_slots: int
    settle_timeout: float
    #: a known master (gunicorn's arbiter with preload): no worker ID
    is_master: bool
    degraded: list[str]


def _plan(settings: Settings) -> _Plan:
    det = loaders.detect(explicit_namespace="namespace" in settings.origin)
    degraded: list[str] = [*settings.notes, *det.notes]
    count, count_source = det.worker_count, det.worker_count_source
    if settings.worker_count is not None:
        count, count_source = settings.worker_count, settings.origin["worker_count"]
    max_slots = settings.max_slots or _config.DEFAULT_MAX_SLOTS
    if count is not None and count > max_slots:
        degraded.append(f"max_slots {max_slots} is below the worker count {count}; using {count}")
        max_slots = count
    namespace = settings.namespace or det.namespace
    lock_dir = settings.lock_dir or _config.default_lock_dir()
    return _Plan(
        det=det,
        run=_name_run(det, degraded),
        namespace=namespace,
        lock_dir=lock_dir,
        ns_dir=_layout.namespace_dir(lock_dir, namespace),
        count=count,
        count_source=count_source if count is not None else None,
        settle_count=count if det.supervisor_pid is not None or count_source != "procfs" else None,
        max_slots=max_slots,
        settle_timeout=(
            _config.DEFAULT_SETTLE_TIMEOUT
            if settings.settle_timeout is None
            else settings.settle_timeout
        ),
        is_master=det.supervisor_pid is None and det.loader == "gunicorn",
        degraded=degraded,
    )


def _record(plan: _Plan, fd: int | None, *, readonly: bool) -> tuple[int | None, str | None]:
    """Stage 2: the run's start time from the ledger (or what every worker derives alike)."""
    run = plan.run

    def alive(entry: _generation.Entry) -> bool | None:
        if fd is not None and _slots.run_start(fd, entry.run) is not None:
            return True  # a worker of that run holds its range
        return _generation.owner_alive(entry.owner, run.here)

    try:
        got = _generation.resolve(
            plan.lock_dir,
            run.key,
            run.owner,
            lambda: plan.det.start_hint or _procfs.start_time(run.supervisor),
            alive,
            known=lambda: None if fd is None else _slots.run_start(fd, run.key),
            readonly=readonly,
        )
    except _generation.LedgerFull as exc:
        start, source = _hint_start(plan.det, run)
        plan.degraded.append(f"{exc.strerror}; start_time falls back to {source}")
        return start, source
    plan.degraded.extend(got.notes)
    return got.entry.start, "ledger"


def _elect(plan: _Plan, fd: int, start: int | None) -> _slots.Held | None:
    """Stage 3: the lowest free worker ID of the namespace, held for life."""
    try:
        held = _slots.elect(
            fd,
            ns_dir=plan.ns_dir,
            max_slots=plan.max_slots,
            worker_count=plan.settle_count,
            settle_timeout=plan.settle_timeout,
        )
    except _slots.SlotsExhausted as exc:
        plan.degraded.append(f"{exc}; worker_id is None")
        return None
    plan.degraded.extend(held.notes)
    if held.overflow:
        plan.degraded.append(held.overflow)
    elif plan.settle_count is None and plan.count is not None and held.worker_id > plan.count:
        plan.degraded.append(
            f"worker ID {held.worker_id}: other processes of namespace {plan.namespace!r} "
            "hold the lower IDs; give this program its own WORKERID_NAMESPACE"
        )
    if start is not None and 0 < start < _layout.RUN_SPACING:
        _slots.hold_run(held.fd, plan.run.key, start)
    return held


def _unusable(plan: _Plan, exc: OSError, wid: int | None) -> tuple[int | None, str | None]:
    """The fallback: no lock directory. Returns the start time every worker derives alike."""
    problem = (exc.strerror if type(exc) is not _statefile.UnsafeStateError else str(exc)) or str(
        exc
    )
    where = getattr(exc, "filename", None) or plan.lock_dir
    start, source = _hint_start(plan.det, plan.run)
    plan.degraded.append(
        f"lock directory {plan.lock_dir} is unusable ({where}: {problem}); "
        + ("worker_id is None, " if wid is None and not plan.is_master else "")
        + f"start_time falls back to {source or 'None'}. Fix: make it a directory "
        f"owned by uid {os.geteuid()} and not writable by others, or set WORKERID_DIR"
    )
    return start, source


def _build(explicit: Settings, *, readonly: bool = False) -> _Built:
    """helper? -> plan (detect, name the run) -> open -> record (start time) -> elect.

    In a child of a process that imported workerid, the first two and the
    ledger read come from that parent's before-fork work if every input they
    were made from is still what this process would read (:func:`_premake`).
    """
    pre = None if readonly else _take_premade(explicit)
    if pre is not None:
        settings, plan = pre.settings, pre.plan
    else:
        settings = _config.from_env(os.environ, explicit)
        helper = _as_helper(settings)
        if helper is not None:
            return helper
        plan = _plan(settings)
    det = plan.det
    worker_id = det.native_worker_id
    wid_source: str | None = "uwsgi" if worker_id is not None else None
    start = det.native_start_time
    start_source: str | None = "uwsgi" if start is not None else None
    held: _slots.Held | None = None
    fd: int | None = None
    ns_dir: str | None = plan.ns_dir
    try:
        if readonly:
            fd = _open_readonly(plan.lock_dir, plan.ns_dir)
        else:
            _statefile.ensure_dir(plan.lock_dir)
            _statefile.ensure_dir(plan.ns_dir, create_parents=False)
            _proc.keep_dir(plan.lock_dir)
            fd, joined = _slots.open_slots(plan.ns_dir)
            if joined:
                plan.degraded.append(joined)
        if start is None:
            if pre is not None and _ledger_unchanged(pre, plan):
                start, start_source = pre.start, "ledger"
            else:
                start, start_source = _record(plan, fd, readonly=readonly)
        if det.elects and not plan.is_master and fd is not None:
            if readonly:  # the ID this process would get; none is held
                worker_id, wid_source = _slots.lowest_unheld(fd, plan.max_slots), "lock"
            else:
                held = _elect(plan, fd, start)
                if held is not None:
                    fd = None  # kept for life by `held`
                    worker_id, wid_source = held.worker_id, "lock"
    except OSError as exc:
        if held is not None:
            _slots.release(held)
            held = None
            worker_id = det.native_worker_id
            wid_source = "uwsgi" if worker_id is not None else None
        ns_dir = None
        fallback = _unusable(plan, exc, worker_id)
        if start is None or start_source == "ledger":
            start, start_source = fallback
    finally:
        if fd is not None:
            os.close(fd)
    if plan.is_master:
        plan.degraded.append(f"this process is the {det.loader} master, not a worker: no worker ID")
    keeper: Keeper | None = None
    state: State | None = None
    if settings.backend_error is not None:
        plan.degraded.append(settings.backend_error)
        worker_id, wid_source = None, None
    elif settings.backend is not None and not plan.is_master and det.cacheable:
        if readonly:
            plan.degraded.append(
                f"with a backend ({settings.backend.safe}) the worker ID is the cluster's: "
                "see workerid status --backend"
            )
        else:
            keeper = _cluster_keeper(settings, settings.backend, plan, held)
            state = keeper.first_claim()
        worker_id, wid_source = None, None

    ident = Identity(
        worker_id=worker_id,
        worker_count=plan.count,
        start_time=start,
        generation=plan.run.key,
        loader=det.loader,
        namespace=plan.namespace,
        lock_dir=plan.lock_dir,
        worker_id_source=wid_source,
        worker_count_source=plan.count_source,
        start_time_source=start_source,
        degraded=tuple(plan.degraded),
        pid=os.getpid(),
        supervisor_pid=det.supervisor_pid,
        backend=settings.backend.safe if settings.backend is not None else None,
        deploy=settings.deploy,
    )
    top = det.supervisor_pid is None and not plan.is_master
    if keeper is None or state is None:
        return _Built(ident, held, ns_dir, top, det.cacheable)
    base = ident
    if "worker_count" not in settings.origin:
        # the host's count is not the cluster's: that is the live claims
        base = dataclasses.replace(base, worker_count=None, worker_count_source=None)
    return _Built(_overlay(base, keeper, state), held, ns_dir, top, True, keeper, base)


def _cluster_keeper(
    settings: Settings, url: BackendURL, plan: _Plan, held: _slots.Held | None
) -> Keeper:
    """Stage 4 (with a backend): the keeper that claims the cluster's lowest free ID."""
    from .backends import Me
    from .backends._keeper import Keeper

    boot = _procfs.boot_id()
    if held is not None:
        st = os.fstat(held.fd)
        here = _key("here", boot, st.st_dev, st.st_ino)
    else:
        here = _key("here", boot, os.getpid())
    me = Me(
        namespace=plan.namespace,
        host=os.uname().nodename,
        pid=os.getpid(),
        here=here,
        local=held.worker_id if held is not None else None,
    )
    return Keeper(
        url,
        me,
        count=settings.worker_count,
        max_slots=plan.max_slots,
        settle_timeout=plan.settle_timeout,
        on_change=_on_cluster_change,
    )


def _overlay(base: Identity, keeper: Keeper, state: State) -> Identity:
    """``base`` with what the backend lets this worker answer now."""
    count, count_source = base.worker_count, base.worker_count_source
    if count_source is None and state.live:
        count, count_source = state.live, keeper.url.engine
    return dataclasses.replace(
        base,
        worker_id=state.worker_id,
        worker_id_source=keeper.url.engine if state.worker_id is not None else None,
        fencing_token=state.token,
        worker_count=count,
        worker_count_source=count_source,
        degraded=(*base.degraded, state.reason) if state.reason else base.degraded,
    )


def _on_cluster_change(keeper: Keeper, state: State) -> None:
    """The keeper's callback (its thread): publish what the worker may answer now."""
    global _cached
    # Not a plain `with _lock`: configure() and a master's fork stop the
    # keeper while holding the lock, and wait for this thread.
    while not _lock.acquire(timeout=0.05):
        if keeper is not _proc.keeper:
            return
    try:
        if keeper is not _proc.keeper or _proc.base is None or _cached is None:
            return
        _cached = ident = _overlay(_proc.base, keeper, state)
        callback = _proc.explicit.on_change
    finally:
        _lock.release()
    if callback is not None:
        try:
            callback(ident)
        except Exception:
            log.exception("workerid: the on_change callback failed")


def _as_helper(settings: Settings) -> _Built | None:
    """The identity of a helper process of a worker (``_helpers``), or ``None``.

    A helper reports its worker's ID, run and start time with
    ``inherited=True`` and holds no slot, so it never keeps the ID alive;
    ``once()`` in it sees its worker's run.
    """
    found = _helpers.find(settings, _proc.forked_from)
    if found is None:
        return None
    holding, det = found.holding, found.det
    usable: str | None = None
    if holding is not None:
        ns_dir = holding.ns_dir
        lock_dir = os.path.dirname(ns_dir)
        namespace = os.path.basename(ns_dir)
    else:
        assert det is not None
        lock_dir = settings.lock_dir or _config.default_lock_dir()
        namespace = settings.namespace or det.namespace
        ns_dir = _layout.namespace_dir(lock_dir, namespace)
        try:  # the directory its worker uses: once() can coordinate with it
            _statefile.ensure_dir(lock_dir)
            _statefile.ensure_dir(ns_dir, create_parents=False)
            usable = ns_dir
        except OSError:
            pass
    ledger, _problem = _generation.read(lock_dir)
    generation: str | None = None
    start: int | None = None
    if holding is not None and holding.run_offset is not None:
        start = holding.start
        generation = next(
            (e.run for e in ledger.entries if _layout.run_offset(e.run) == holding.run_offset),
            None,
        )
    elif det is not None:
        generation = _name_run(det, []).key
        start = next((e.start for e in ledger.entries if e.run == generation), None)
    degraded = []
    if settings.backend is not None and holding is not None:
        # its worker's cluster ID is not readable from outside (only its
        # local one is); a helper forked after the worker's first call
        # inherits the cluster ID instead (_after_fork_child)
        degraded.append(
            f"helper of worker pid {found.worker}: with a backend its worker ID is the "
            "cluster's, which a helper started this way cannot read; worker_id is None"
        )
        holding = dataclasses.replace(holding, worker_id=None)
    if holding is None:
        degraded.append(
            f"forked by worker pid {found.worker} before it had a worker ID: this helper has "
            "none (it is asked again on the next call)"
        )
    count, count_source = (det.worker_count, det.worker_count_source) if det else (None, None)
    if settings.worker_count is not None:
        count, count_source = settings.worker_count, settings.origin["worker_count"]
    ident = Identity(
        worker_id=holding.worker_id if holding else None,
        worker_count=count,
        start_time=start,
        generation=generation,
        loader=det.loader if det else "generic",
        namespace=namespace,
        lock_dir=lock_dir,
        worker_id_source="lock" if holding and holding.worker_id else None,
        worker_count_source=count_source if count is not None else None,
        start_time_source="lock" if holding and start else ("ledger" if start else None),
        degraded=tuple(degraded),
        pid=os.getpid(),
        supervisor_pid=det.supervisor_pid if det else None,
        inherited=True,
        deploy=settings.deploy,
    )
    return _Built(ident, None, ns_dir if holding else usable, False, cacheable=holding is not None)


def _hint_start(det: loaders.Detected, run: _Run) -> tuple[int | None, str | None]:
    """The start time every worker of the run derives alike, without a ledger."""
    if det.start_hint:
        return int(det.start_hint), det.loader
    start = _procfs.start_time(run.supervisor)
    return start, ("procfs" if start is not None else None)


def _open_readonly(lock_dir: str, ns_dir: str) -> int | None:
    """``slots.lock`` for looking only (the CLI): nothing is created."""
    for path in (lock_dir, ns_dir):
        if os.path.isdir(path):
            _statefile.check_dir(path)
    return _statefile.open_existing(_layout.slots_file(ns_dir))


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
    global _cached, _live_count
    with _lock:
        if _cached is not None:
            return _cached
        try:
            with _procfs.remembering():
                built = _build(_proc.explicit)
        except Exception as exc:  # never raise into the application
            built = _Built(_fallback(exc))
        for reason in built.identity.degraded:
            warn(reason)
        _proc.held, _proc.ns_dir, _proc.top = built.held, built.ns_dir, built.top
        _proc.keeper, _proc.base = built.keeper, built.base
        # under a backend the count is the cluster's, not the local server's
        _live_count = None if built.keeper else loaders.live_count(built.identity.loader)
        if built.cacheable:
            _cached = built.identity
        if built.keeper is not None:
            built.keeper.start()
        return built.identity


def peek() -> Identity:
    """What this process would resolve, without writing or locking anything (the CLI).

    The worker ID is the one it would be elected to now, and a new run's
    start time the one it would be recorded with; ``degraded`` lists only
    real problems, not that nothing was recorded.
    """
    try:
        with _lock, _procfs.remembering():
            return _build(_proc.explicit, readonly=True).identity
    except Exception as exc:
        return _fallback(exc)


def _drop_slot() -> None:
    # the cluster's claim first: a local successor that finds the local ID
    # free may take the cluster ID over (etcd), so it must be given up by then
    keeper, _proc.keeper, _proc.base = _proc.keeper, None, None
    if keeper is not None:
        keeper.stop()
    if _proc.held is not None:
        _slots.release(_proc.held)
        _proc.held = None


# --- work done once in the master, before the fork (issue 14) ------------------


#: made in the before-fork handler for the child of this fork
_for_children: _premade.Premade | None = None
#: in a forked child: what its parent made for it, until its first call
_inherited: _premade.Premade | None = None


def _premake(forked_from: int | None) -> _premade.Premade | None:
    """In a process about to fork: what its child would compute before electing.

    ``None`` where the child's answer may not be the one it would compute
    itself: it is not (known to be) a worker of this process, its loader
    reads the server's own per-process state (uWSGI, mod_wsgi), or it has a
    multiprocessing parent (then its helper check looks at that process).
    """
    if _procfs.computing() or _cmdline.acting():
        return None  # this thread is inside a computation of its own (a fork from a hook)
    modules = _premade.module_inputs()
    if modules.mp_parent is not None:
        return None
    me = os.getpid()
    explicit = _proc.explicit
    environ = dict(_premade.environ())
    ids = _premade.ids()
    settings = _config.from_env(os.environ, explicit)
    # A gunicorn worker's post_fork hook (workerid.gunicorn) publishes the arbiter's
    # count before the worker's first call: detect with the count it will publish, the
    # one the arbiter's nworkers_changed hook keeps (the child checks that it did).
    gunicorn = loaders.gunicorn
    published = gunicorn.published_count
    if published is None and sys.modules.get("gunicorn") is not None:
        published = gunicorn.arbiter_count()
    modules = modules._replace(published=published)
    saved, gunicorn.published_count = gunicorn.published_count, published
    try:
        with _procfs.remembering():
            if _helpers.find(settings, forked_from, for_child=True) is not None:
                return None
            with _cmdline.acting_as(me, me):  # the child: same memory, executable, argv
                plan = _plan(settings)
    finally:
        gunicorn.published_count = saved  # read only under _lock, which this thread holds
    det = plan.det
    if det.loader not in ("generic", "gunicorn") or det.supervisor_pid != me or plan.is_master:
        return None
    cmdline = _procfs.raw_cmdline(me)
    ledger = _premade.ledger_key(plan.lock_dir)
    start: int | None = None
    if ledger is not None:
        got, problem = _generation.read(plan.lock_dir)
        if problem is None and _premade.ledger_key(plan.lock_dir) == ledger:
            start = next((e.start for e in got.entries if e.run == plan.run.key), None)
    return _premade.Premade(
        master=me,
        forked_from=forked_from,
        explicit=explicit,
        environ=environ,
        ids=ids,
        modules=modules,
        pidns=_procfs.pid_namespace(),
        cmdline=cmdline,
        own_cmdline=det.loader == "generic" or forked_from is None,
        settings=settings,
        plan=plan,
        ledger=ledger if start is not None else None,
        start=start,
    )


def _take_premade(explicit: Settings) -> _premade.Premade | None:
    """In a forked child's first call: its parent's before-fork work, if still valid.

    Each check is an input the child's own pipeline would read; any change
    (made by the child since the fork, or by its parent after it) falls back
    to that pipeline. Consumed either way: used at most once.
    """
    global _inherited
    pre, _inherited = _inherited, None
    if pre is None:
        return None
    try:
        stale = _premade.stale(pre, explicit, _proc.forked_from)
    except Exception as exc:  # a module replaced by something odd: check nothing, compute
        stale = f"{type(exc).__name__} while checking"
    _proc.premade = f"stale: {stale}" if stale else "used"
    return None if stale else pre


def _ledger_unchanged(pre: _premade.Premade, plan: _Plan) -> bool:
    if pre.ledger is not None and _premade.ledger_key(plan.lock_dir) == pre.ledger:
        return True
    _proc.premade = "used; ledger read again"
    return False


def _premake_for_child() -> _premade.Premade | None:
    """The before-fork handler's work for a child that will elect on its first call."""
    if _cached is None:
        forked_from: int | None = os.getpid()  # the child records its parent
    elif _proc.top or _cached.worker_id is None:
        forked_from = None  # a master's child forgets the master's identity
    else:
        return None  # a worker's child is its helper: it inherits the worker's values
    try:
        return _premake(forked_from)
    except Exception:  # never fail a fork; the child computes everything itself
        return None


# --- fork --------------------------------------------------------------------


def _before_fork() -> None:
    global _for_children
    _lock.acquire()
    if _cached is not None and _proc.top:
        # The top of its tree is forking: it becomes a pre-fork master, and
        # its children are the workers. Give the slot back *before* the fork,
        # not after: a child that elects at once would otherwise find its
        # master still holding slot 1, take 2, and leave 1 to the next child
        # (seen under load). If the fork fails, this process has given up its
        # ID for nothing; it says so in `degraded` like any master.
        _drop_slot()
    _for_children = _premake_for_child()


def _after_fork_parent() -> None:
    global _cached, _for_children
    _for_children = None  # made for that child alone; the next fork makes its own
    try:
        if _cached is not None and _proc.top:
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
            _proc.top = False
    finally:
        _lock.release()


def _after_fork_child() -> None:
    global _lock, _cached, _inherited, _for_children
    _lock = threading.RLock()
    _inherited, _for_children = _for_children, None
    _proc.premade = None
    if _proc.keeper is not None:
        # No thread survives a fork; the child must not keep the parent's
        # connection (the engine would not see the worker die) nor use it.
        _proc.keeper.after_fork_in_child()
        _proc.keeper, _proc.base = None, None
    if _proc.held is not None:
        # The child holds no record lock (they are not inherited); the
        # descriptors are just leftovers. Closing them cannot touch the parent.
        _slots.release(_proc.held)
        _proc.held = None
    if _cached is None:
        _proc.forked_from = os.getppid()
        return
    _proc.forked_from = None
    if _proc.top or _cached.worker_id is None:
        # Forked by a master (or by a process that was about to become one):
        # this child is a worker and elects on its first call.
        _cached, _proc.ns_dir, _proc.top = None, None, False
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
    if _live_count is not None:
        count = _live_count()
        if count and count != ident.worker_count:
            return dataclasses.replace(ident, worker_count=count, worker_count_source="gunicorn")
    return ident


def worker_id() -> int | None:
    """1-based worker ID, unique among the live workers of this server; ``None`` if unknown."""
    ident = _cached
    if ident is None:
        ident = _resolve()
    return ident.worker_id


def worker_count() -> int | None:
    """The configured number of workers; ``None`` if the server does not say.

    Under gunicorn with the ``workerid.gunicorn`` hooks, the arbiter's current
    count (``TTIN``/``TTOU`` included), read from memory it shares.
    """
    ident = _cached
    if ident is None:
        ident = _resolve()
    if _live_count is not None:
        return _live_count() or ident.worker_count
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
    backend: str | None = None,
    on_change: Callable[[Identity], None] | None = None,
    deploy: str | None = None,
) -> None:
    """Set values explicitly; they beat ``WORKERID_*`` and detection.

    ``backend`` (``postgresql://user:pass@host/db``, ``etcd://host:2379``)
    makes worker IDs unique across every host of the namespace (see the
    guide); ``on_change`` is called, from workerid's keep-alive thread, with
    the new :class:`Identity` whenever the backend claim is lost or taken again.
    ``deploy`` names this deploy (a release id every host of it agrees on):
    ``once(name, scope="deploy")`` runs once per deploy, across the hosts of
    the backend, or on this host without one.

    Call it before the first ``worker_id()`` (at import of your WSGI module);
    calling it later gives back this process's slot and elects again on the
    next call. Invalid values raise ``TypeError``/``ValueError`` here, at
    configuration time, never later from the hot path.
    """
    global _cached
    settings = _config.explicit_settings(
        lock_dir=lock_dir,
        namespace=namespace,
        worker_count=worker_count,
        max_slots=max_slots,
        settle_timeout=settle_timeout,
        backend=backend,
        on_change=on_change,
        deploy=deploy,
    )
    with _lock:
        _proc.explicit = settings
        _drop_slot()
        _cached, _proc.ns_dir, _proc.top = None, None, False
        for forget in on_forget:
            forget()


def settings() -> Settings:
    """``configure()`` over the environment: what this process is set to (for ``once``)."""
    return _config.from_env(os.environ, _proc.explicit)


def state_dir() -> str | None:
    """The usable namespace directory of this process (for ``once``)."""
    identity()
    return _proc.ns_dir


def holds_slot() -> bool:
    """Does this process hold its worker ID's lock itself?

    Then any state a predecessor with the same ID left behind belongs to a
    dead process: the namespace has one ID space, and the kernel released
    the predecessor's lock only when it died (the Neutron hash-ring takeover
    relies on this).
    """
    ident = identity()
    if _proc.keeper is not None:
        return _proc.held is not None and ident.worker_id is not None
    return _proc.held is not None


def _reset_for_tests() -> None:
    """Forget everything, as a fresh process would. Not public API."""
    configure()
    _proc.warned.clear()
