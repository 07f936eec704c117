"""``once(name)``: run a function in exactly one worker per generation and namespace.

Files (in the namespace directory): ``once.<name>.lock``, a record lock held
while a worker runs it, and ``once.<name>.json``, the marker (formats below).
Record locks exclude other processes only, so threads of one process are kept
apart by a thread lock per name, taken first.

The rules, and why:

* **One runs, the others wait, then skip.** The first caller takes the locks,
  reads the marker and, unless it says "done in this run", runs the function.
  The others wait on the locks, so nobody proceeds before the initialisation
  has finished, then find the marker: ``DONE``.
* **Every wait is bounded by ``timeout``**: the wait for another thread of this
  process (``Lock.acquire(timeout=)``) and for another process (``F_SETLK``
  polled), together. Past it the answer is ``BUSY``, never ``DONE``: the caller
  must not go on as if the initialisation were finished. The decorator raises
  :class:`OnceTimeout` then (it used to return ``None``, which reads as done).
  ``timeout=None`` waits as long as it takes, and logs a warning every
  ``WARN_INTERVAL`` seconds naming the process that runs it, so a hung
  initialisation is visible rather than a silent stall of every worker.
* **A failure is recorded, and the callers that waited for that attempt do not
  retry it**: the worker that ran it gets the exception (the marker says
  ``failed`` first), and every caller that was waiting meanwhile gets
  ``FAILED`` (the decorator raises :class:`OnceFailed`) instead of running a
  failing 30 s initialisation again, each in turn. ``retry=True`` makes the
  waiters try again themselves. A *later, separate* call (one that starts after
  the failure was recorded) does try again: the failure may have been
  transient, and nobody else is trying. Only ``Exception`` counts as a failure;
  ``KeyboardInterrupt``/``SystemExit`` propagate and record nothing.
* **No usable lock directory** (or no generation): it cannot be coordinated,
  and ``degraded=`` says what to do; see :data:`Degraded`. The default keeps
  the historical rule: run it in worker 1 if workers have IDs (uWSGI's own),
  else in every worker (it must then be idempotent). One warning per process
  says which. In this mode it runs at most once per process.
* **Fork safety.** The thread locks are reset in a forked child: a fork while
  another thread is inside ``once('x')`` would otherwise hand the child a lock
  held by a thread that does not exist there. The record lock is not inherited,
  so the child simply waits for the parent's run like any other process.

Marker ``once.<name>.json`` (``v`` 1, the keys of earlier versions kept; a
reader of an earlier version reads a failure as "not done", never as done)::

    {"v": 1, "name": "seed", "generation": "<run>", "recent": ["<older run>", ...],
     "pid": 123, "at": 1795710040}
    {"v": 1, "name": "seed", "generation": "<run it last succeeded in, or ''>",
     "pid": 124, "at": 1795710070,
     "failed": {"generation": "<run>", "error": "ValueError: boom",
                "pid": 124, "at": 1795710070, "attempt": "124.1795710070123456789"}}

``generation`` is the run it last *succeeded* in, ``recent`` up to 15 runs
before it (two live runs of one namespace must not undo each other's
marker; a reader of an earlier version ignores it); ``failed`` is the last
attempt of a later run, if it raised. ``attempt`` tells one failure from the
next (a waiter compares it with what it saw before waiting).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, Literal, ParamSpec, TypeVar, get_args

from . import _identity, _layout, _reclock, _statefile

if TYPE_CHECKING:
    from .backends import BackendURL, OnceKey

log = logging.getLogger("workerid")

P = ParamSpec("P")
R = TypeVar("R")

#: seconds between "still running" warnings while a call waits (tests lower it)
WARN_INTERVAL = 10.0
#: how often a waiter retries the record lock (F_SETLK; F_SETLKW cannot time out)
_POLL = 0.02
#: longest error text kept in the marker
_ERROR_CHARS = 500
#: how many earlier runs a marker remembers besides the last
_RECENT = 15


class Outcome(str, enum.Enum):
    """What a call of :func:`run_once` / :func:`try_once` / :func:`wait_done` found."""

    #: this call ran the function, and it returned (``OnceResult.value``)
    RAN = "ran"
    #: it was already done in this server run, by this or another worker
    DONE = "done"
    #: another worker or thread is running it, and the wait bound has passed
    BUSY = "busy"
    #: the attempt this call waited for raised in another caller (``error``,
    #: ``pid``); from :func:`wait_done`: the last attempt of this run raised
    FAILED = "failed"
    #: :func:`wait_done` only: nobody is running it and it is not done in this
    #: run (never started here, or its runner died before finishing)
    NOT_RUN = "not-run"
    #: no usable lock directory: ``ran`` and ``detail`` say what was done
    DEGRADED = "degraded"


#: what to do without a usable lock directory (nothing to coordinate through):
#:
#: * ``"default"``: worker 1 runs it if workers have IDs (uWSGI keeps its own
#:   without a lock dir), others skip; with no IDs, every worker runs it;
#: * ``"worker1"``: only worker 1 runs it; with no IDs, nobody does;
#: * ``"every"``: every worker runs it (it must be idempotent);
#: * ``"skip"``: nobody runs it;
#: * ``"raise"``: raise :class:`OnceUnavailable`.
Degraded = Literal["default", "worker1", "every", "skip", "raise"]
_DEGRADED_MODES: frozenset[str] = frozenset(get_args(Degraded))

#: what a ``once`` is once per:
#:
#: * ``"run"`` (the default): once per server run and namespace, on this host
#:   (the lock directory), again after every restart;
#: * ``"deploy"``: once per deploy (``WORKERID_DEPLOY`` / ``configure(deploy=)``,
#:   a name every host of the deploy agrees on) and namespace: across every
#:   host of the backend with one (``WORKERID_BACKEND``), else on this host,
#:   and not again after a restart. Without a deploy name it raises
#:   :class:`OnceUnavailable`; when it cannot be coordinated, ``degraded``'s
#:   ``"default"`` means ``"raise"`` (nothing safe can be guessed for a fleet).
Scope = Literal["run", "deploy"]
_SCOPES: frozenset[str] = frozenset(get_args(Scope))


@dataclasses.dataclass(frozen=True)
class OnceResult(Generic[R]):
    """What happened to one call: the state, and the facts behind it."""

    name: str
    state: Outcome
    #: the function's return value, when this call ran it
    value: R | None = None
    #: True if the function was called (and returned) in this call
    ran: bool = False
    #: seconds this call spent waiting for another worker or thread
    waited: float = 0.0
    #: BUSY: the process running it (this one if it is another thread), when
    #: known; FAILED: the process whose attempt raised
    pid: int | None = None
    #: FAILED: ``"ValueError: ..."`` of the attempt that raised
    error: str | None = None
    #: DEGRADED / BUSY: a sentence saying what was done or who holds it
    detail: str = ""

    @property
    def done(self) -> bool:
        """The function has completed in this run, as far as this call knows."""
        return self.state in (Outcome.RAN, Outcome.DONE)


class OnceError(Exception):
    """Base of the exceptions the ``once`` decorator raises instead of returning."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


class OnceTimeout(OnceError, TimeoutError):
    """The wait for another worker's (or thread's) run passed ``timeout``."""

    def __init__(self, name: str, waited: float, pid: int | None) -> None:
        where = f"worker pid {pid}" if pid is not None else "another worker"
        super().__init__(
            name, f"once({name!r}) still running in {where} after waiting {waited:.1f}s"
        )
        self.waited = waited
        self.pid = pid


class OnceFailed(OnceError):
    """The attempt this call waited for raised in another worker (or thread)."""

    def __init__(self, name: str, error: str | None, pid: int | None) -> None:
        super().__init__(name, f"once({name!r}) failed in worker pid {pid}: {error}")
        self.error = error
        self.pid = pid


class OnceUnavailable(OnceError):
    """It cannot be coordinated and ``degraded="raise"`` (the default for
    ``scope="deploy"``), or ``scope="deploy"`` has no deploy name."""


# --- per-process state ---------------------------------------------------------

#: name -> generation this process knows it done in
_done: dict[str, str] = {}
#: name -> generation (or None) this process handled in degraded mode
_degraded_done: dict[str, str | None] = {}
#: one thread lock per name; record locks do not exclude threads
_thread_locks: dict[str, threading.Lock] = {}
#: name -> ident of the thread of this process running it (recursion check)
_running: dict[str, int] = {}
_guard = threading.Lock()


#: no identity is ever this object: "not seen done yet" for the decorator's done-path
_NOT_YET = object()


def reset() -> None:
    """Forget what this process has seen done (a new generation or configuration).

    Only through ``_identity.on_forget``, whose callers also drop the cached
    identity: the ``once`` decorator's done-path compares with that object.
    """
    _done.clear()
    _degraded_done.clear()


_identity.on_forget.append(reset)


def _after_fork_child() -> None:
    # A thread of the parent may have been inside once('x'), holding its
    # thread lock (or _guard): it does not exist in the child, so nothing
    # would ever release them. Fresh locks; the parent's record lock is not
    # inherited, so the child waits for the parent's run like any process.
    global _guard, _thread_locks, _running
    _guard = threading.Lock()
    _thread_locks = {}
    _running = {}


os.register_at_fork(after_in_child=_after_fork_child)


# --- the marker --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Marker:
    #: the generation it last succeeded in
    generation: str | None = None
    #: the last failed attempt: its generation, error, pid and attempt token
    failed_generation: str | None = None
    error: str | None = None
    pid: int | None = None
    attempt: str | None = None
    #: the other recent runs it succeeded in, newest first: two runs of one
    #: namespace alive at once (an old one draining, two servers sharing a
    #: WORKERID_NAMESPACE) must not make each other run it again
    recent: tuple[str, ...] = ()

    def done_in(self, generation: str) -> bool:
        return generation == self.generation or generation in self.recent

    def succeeded(self, generation: str) -> list[str]:
        """``recent`` after a success in ``generation``."""
        older = [g for g in (self.generation, *self.recent) if g and g != generation]
        return older[:_RECENT]

    def failure(self, generation: str) -> str | None:
        """The token of the last failed attempt in ``generation``, if any."""
        return self.attempt if self.failed_generation == generation else None


def _read_marker(path: str) -> _Marker:
    try:
        raw = _statefile.read_json(path)
    except ValueError as exc:
        log.warning("workerid: ignoring unusable once-marker %s (%s)", path, exc)
        return _Marker()
    if raw is None:
        return _Marker()
    if not (type(raw) is dict and raw.get("v") == 1 and type(raw.get("generation")) is str):
        log.warning("workerid: ignoring once-marker %s of unknown shape", path)
        return _Marker()
    recent = raw.get("recent", [])
    if type(recent) is not list or not all(type(g) is str for g in recent):
        recent = []
    marker = _Marker(generation=raw["generation"] or None, recent=tuple(recent[:_RECENT]))
    failed = raw.get("failed")
    if failed is None:
        return marker
    if (
        type(failed) is dict
        and type(failed.get("generation")) is str
        and type(failed.get("error")) is str
        and type(failed.get("pid")) is int
        and type(failed.get("attempt")) is str
    ):
        return dataclasses.replace(
            marker,
            failed_generation=failed["generation"],
            error=failed["error"],
            pid=failed["pid"],
            attempt=failed["attempt"],
        )
    log.warning("workerid: ignoring the unknown 'failed' entry of once-marker %s", path)
    return marker


def _write_marker(path: str, name: str, obj: dict[str, Any], what: str) -> None:
    try:
        _statefile.write_json_atomic(path, obj)
    except OSError as exc:
        log.warning(
            "workerid: once(%r) %s but its marker could not be written (%s); "
            "other workers may run it again",
            name,
            what,
            exc,
        )


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= _ERROR_CHARS else text[: _ERROR_CHARS - 3] + "..."


# --- waiting -----------------------------------------------------------------------


class _Wait:
    """One call's wait budget, shared by the thread-lock and record-lock waits."""

    def __init__(self, name: str, timeout: float | None) -> None:
        self.name = name
        self.timeout = timeout
        self.began = time.monotonic()
        self.deadline = None if timeout is None else self.began + timeout
        self.next_warn = self.began + WARN_INTERVAL

    @property
    def waited(self) -> float:
        return time.monotonic() - self.began

    def until(self, attempt: Callable[[float], bool], where: Callable[[], str]) -> bool:
        """Call ``attempt(seconds)`` until it succeeds (True) or the deadline passes."""
        while True:
            now = time.monotonic()
            limit = self.next_warn if self.deadline is None else min(self.next_warn, self.deadline)
            if attempt(max(0.0, limit - now)):
                return True
            now = time.monotonic()
            if self.deadline is not None and now >= self.deadline:
                return False
            if now >= self.next_warn:
                bound = "" if self.timeout is None else f" (giving up after {self.timeout:g}s)"
                log.warning(
                    "workerid: once(%r) still running in %s for %.0fs; waiting%s",
                    self.name,
                    where(),
                    now - self.began,
                    bound,
                )
                self.next_warn = now + WARN_INTERVAL


def _poll_record_lock(fd: int) -> Callable[[float], bool]:
    def attempt(seconds: float) -> bool:
        end = time.monotonic() + seconds
        while not _reclock.try_lock(fd, 0, 0):
            left = end - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(_POLL, left))
        return True

    return attempt


def _holder(fd: int) -> int | None:
    try:
        return _reclock.holder(fd, 0, 0)
    except OSError:
        return None


def _thread_lock(name: str) -> threading.Lock:
    with _guard:
        return _thread_locks.setdefault(name, threading.Lock())


def _take_thread_lock(name: str, wait: _Wait) -> threading.Lock | None:
    """This process's lock for ``name``, taken within the wait budget; ``None`` if not."""
    if _running.get(name) == threading.get_ident():
        raise RuntimeError(f"once({name!r}) called from inside its own function")
    tlock = _thread_lock(name)
    where = f"another thread of this process (pid {os.getpid()})"
    if wait.until(lambda seconds: tlock.acquire(timeout=seconds), lambda: where):
        return tlock
    return None


# --- degraded mode -----------------------------------------------------------------


def _degraded_run(
    name: str, fn: Callable[[], R], mode: Degraded, reason: str, generation: str | None
) -> OnceResult[R]:
    if mode == "raise":
        raise OnceUnavailable(name, f"once({name!r}): {reason}")
    if name in _degraded_done and _degraded_done[name] == generation:
        return OnceResult(
            name, Outcome.DEGRADED, detail=f"{reason}; already handled in this process"
        )
    worker_id = _identity.identity().worker_id
    if mode == "every":
        run, what = True, "running it in every worker (degraded='every': it must be idempotent)"
    elif mode == "skip":
        run, what = False, "not running it anywhere (degraded='skip')"
    elif worker_id is None:
        reason += " and no worker ID"
        run = mode == "default"
        what = (
            "running it in every worker (it must be idempotent)"
            if run
            else "no worker 1, so not running it anywhere (degraded='worker1')"
        )
    else:
        run, what = worker_id == 1, "running it in worker 1 only, and again if it is replaced"
    detail = f"{reason}; {what}"
    _identity.warn(f"once({name!r}): {detail}")
    if not run:
        _degraded_done[name] = generation
        return OnceResult(name, Outcome.DEGRADED, detail=f"{detail}; skipped here")
    value = fn()
    _degraded_done[name] = generation
    return OnceResult(name, Outcome.DEGRADED, value=value, ran=True, detail=detail)


# --- the core ------------------------------------------------------------------------


def _check(timeout: float | None, degraded: str, scope: str = "run") -> None:
    if timeout is not None and not timeout >= 0:
        raise ValueError(f"timeout must be None or >= 0, not {timeout!r}")
    if degraded not in _DEGRADED_MODES:
        raise ValueError(f"degraded must be one of {sorted(_DEGRADED_MODES)}, not {degraded!r}")
    if scope not in _SCOPES:
        raise ValueError(f"scope must be one of {sorted(_SCOPES)}, not {scope!r}")


@dataclasses.dataclass(frozen=True)
class _Where:
    """Where one call of a scope keeps its state."""

    #: the name as given
    name: str
    #: this process's maps (_done, thread locks): the name, or "<name> (deploy <d>)"
    key: str
    #: what "done" is recorded against: the server run, or "deploy:<deploy>"
    generation: str | None
    #: the file family in the namespace directory (_layout.once_stem)
    prefix: str
    #: the degraded mode in force ("default" is "raise" for a deploy)
    degraded: Degraded
    #: a deploy across hosts: the backend and what it is once per
    cluster: tuple[BackendURL, OnceKey] | None = None
    #: WORKERID_BACKEND was refused: a deploy cannot be coordinated
    refused: str | None = None


def _where(name: str, scope: str, degraded: Degraded) -> _Where:
    if scope == "run":
        generation = _identity.identity().generation
        return _Where(name, name, generation, "once", degraded)
    settings = _identity.settings()
    if settings.deploy is None:
        raise OnceUnavailable(
            name,
            f"once({name!r}, scope='deploy') needs the deploy's name: set "
            "WORKERID_DEPLOY=<release id> or configure(deploy=...)",
        )
    mode: Degraded = "raise" if degraded == "default" else degraded
    where = _Where(
        name,
        f"{name} (deploy {settings.deploy})",
        f"deploy:{settings.deploy}",
        "deploy",
        mode,
        refused=settings.backend_error,
    )
    if settings.backend is not None:
        from .backends import OnceKey

        ident = _identity.identity()
        key = OnceKey(ident.namespace, settings.deploy, name)
        where = dataclasses.replace(where, cluster=(settings.backend, key))
    return where


def run_once(
    name: str,
    fn: Callable[[], R],
    *,
    timeout: float | None = None,
    degraded: Degraded = "default",
    retry: bool = False,
    scope: Scope = "run",
) -> OnceResult[R]:
    """Run ``fn()`` in exactly one worker per server run; say what happened.

    ``RAN`` (with ``value``) here, ``DONE`` if it is already done in this run,
    ``BUSY`` if another worker or thread still runs it after ``timeout``
    seconds (``None``: wait, warning every ``WARN_INTERVAL`` s), ``FAILED`` if
    the attempt this call waited for raised elsewhere (``retry=True``: try
    again here instead), ``DEGRADED`` without a usable lock directory (see
    :data:`Degraded`). If ``fn`` raises here, the failure is recorded for the
    waiters and the exception propagates. Pass arguments with a lambda or
    :func:`functools.partial`. ``scope="deploy"``: once per deploy instead
    (see :data:`Scope`).
    """
    _check(timeout, degraded, scope)
    where = _where(str(name), scope, degraded)
    key, generation, degraded = where.key, where.generation, where.degraded
    if generation is not None and _done.get(key) == generation:
        return OnceResult(where.name, Outcome.DONE)
    if where.refused is not None:
        return _degraded_run(key, fn, degraded, where.refused, generation)
    if where.cluster is not None:
        from . import _deploy

        return _deploy.run(where, fn, timeout=timeout, retry=retry)
    ns_dir = _identity.state_dir()
    stem = marker_path = seen = None
    if ns_dir is not None and generation is not None:
        stem = os.path.join(ns_dir, _layout.once_stem(where.name, where.prefix))
        marker_path = stem + ".json"
        # The failure (if any) known before waiting: one recorded after it is
        # the attempt this call waited for, which it must not repeat.
        seen = _read_marker(marker_path).failure(generation)
    wait = _Wait(where.name, timeout)
    tlock = _take_thread_lock(key, wait)
    if tlock is None:
        return _busy(wait, os.getpid(), "another thread of this process")
    try:
        if stem is None or marker_path is None or generation is None:
            return _degraded_run(key, fn, degraded, "no usable lock directory", generation)
        if _done.get(key) == generation:
            return OnceResult(where.name, Outcome.DONE, waited=wait.waited)
        try:
            fd = _statefile.open_lock_file(stem + ".lock")
        except OSError as exc:
            reason = f"cannot open {stem}.lock ({exc})"
            return _degraded_run(key, fn, degraded, reason, generation)
        try:
            if not wait.until(_poll_record_lock(fd), lambda: f"worker pid {_holder(fd)}"):
                return _busy(wait, _holder(fd), "another worker")
            marker = _read_marker(marker_path)
            if marker.done_in(generation):
                _done[key] = generation
                return OnceResult(where.name, Outcome.DONE, waited=wait.waited)
            failure = marker.failure(generation)
            if failure is not None and failure != seen and not retry:
                log.warning(
                    "workerid: once(%r) failed in worker pid %s (%s); not trying again here",
                    key,
                    marker.pid,
                    marker.error,
                )
                return OnceResult(
                    where.name,
                    Outcome.FAILED,
                    waited=wait.waited,
                    pid=marker.pid,
                    error=marker.error,
                )
            return _run_locked(
                key,
                fn,
                generation=generation,
                marker=marker,
                path=marker_path,
                waited=wait.waited,
                label=where.name,
            )
        finally:
            os.close(fd)  # drops the record lock
    finally:
        tlock.release()


def _busy(wait: _Wait, pid: int | None, who: str) -> OnceResult[Any]:
    waited = wait.waited
    if wait.timeout:  # try_once (timeout 0) is asked not to wait: no news
        log.warning(
            "workerid: once(%r) still running in %s (pid %s) after %.1fs; not waiting longer",
            wait.name,
            who,
            pid,
            waited,
        )
    return OnceResult(wait.name, Outcome.BUSY, waited=waited, pid=pid, detail=who)


def _run_locked(
    name: str,
    fn: Callable[[], R],
    *,
    generation: str,
    marker: _Marker,
    path: str,
    waited: float,
    label: str,
) -> OnceResult[R]:
    _running[name] = threading.get_ident()
    try:
        value = fn()
    except Exception as exc:
        error = _describe(exc)
        now = time.time()
        _write_marker(
            path,
            name,
            {
                "v": 1,
                "name": label,
                "generation": marker.generation or "",
                "recent": list(marker.recent),
                "pid": os.getpid(),
                "at": int(now),
                "failed": {
                    "generation": generation,
                    "error": error,
                    "pid": os.getpid(),
                    "at": int(now),
                    "attempt": f"{os.getpid()}.{time.time_ns()}",
                },
            },
            "failed",
        )
        log.warning(
            "workerid: once(%r) failed here (%s); recorded, so the workers waiting for it "
            "do not each try again",
            name,
            error,
        )
        raise
    finally:
        _running.pop(name, None)
    _write_marker(
        path,
        name,
        {
            "v": 1,
            "name": label,
            "generation": generation,
            "recent": marker.succeeded(generation),
            "pid": os.getpid(),
            "at": int(time.time()),
        },
        "ran",
    )
    _done[name] = generation
    return OnceResult(label, Outcome.RAN, value=value, ran=True, waited=waited)


def try_once(
    name: str, fn: Callable[[], R], *, degraded: Degraded = "default", scope: Scope = "run"
) -> OnceResult[R]:
    """:func:`run_once` that never waits: ``BUSY`` at once if another worker runs it.

    For callers that have better things to do meanwhile and check back with
    :func:`wait_done` before they depend on the result.
    """
    return run_once(name, fn, timeout=0, degraded=degraded, scope=scope)


def wait_done(name: str, timeout: float | None = None, *, scope: Scope = "run") -> OnceResult[None]:
    """Wait (bounded by ``timeout``) until nobody runs ``once(name)``; say where it stands.

    ``DONE``; ``BUSY`` (still running after ``timeout``); ``FAILED`` (the last
    attempt of this run raised: ``error``, ``pid``); ``NOT_RUN`` (not done in
    this run and nobody is running it: never started, or its runner died);
    ``DEGRADED`` (no usable lock directory: nothing can be known). Never runs it.
    """
    _check(timeout, "default", scope)
    where = _where(str(name), scope, "default")
    key, generation = where.key, where.generation
    if generation is not None and _done.get(key) == generation:
        return OnceResult(where.name, Outcome.DONE)
    if where.refused is not None:
        return OnceResult(where.name, Outcome.DEGRADED, detail=where.refused)
    if where.cluster is not None:
        from . import _deploy

        return _deploy.wait_done(where, timeout=timeout)
    ns_dir = _identity.state_dir()
    if ns_dir is None or generation is None:
        return OnceResult(where.name, Outcome.DEGRADED, detail="no usable lock directory")
    stem = os.path.join(ns_dir, _layout.once_stem(where.name, where.prefix))
    wait = _Wait(where.name, timeout)
    tlock = _take_thread_lock(key, wait)
    if tlock is None:
        return _busy(wait, os.getpid(), "another thread of this process")
    try:
        if _done.get(key) == generation:
            return OnceResult(where.name, Outcome.DONE, waited=wait.waited)
        try:
            fd = _statefile.open_lock_file(stem + ".lock")
        except OSError as exc:
            return OnceResult(
                where.name, Outcome.DEGRADED, detail=f"cannot open {stem}.lock ({exc})"
            )
        try:
            if not wait.until(_poll_record_lock(fd), lambda: f"worker pid {_holder(fd)}"):
                return _busy(wait, _holder(fd), "another worker")
            marker = _read_marker(stem + ".json")
        finally:
            os.close(fd)
    finally:
        tlock.release()
    if marker.done_in(generation):
        _done[key] = generation
        return OnceResult(where.name, Outcome.DONE, waited=wait.waited)
    if marker.failure(generation) is not None:
        return OnceResult(
            where.name, Outcome.FAILED, waited=wait.waited, pid=marker.pid, error=marker.error
        )
    return OnceResult(where.name, Outcome.NOT_RUN, waited=wait.waited)


def once(
    name: str,
    *,
    timeout: float | None = None,
    degraded: Degraded = "default",
    retry: bool = False,
    scope: Scope = "run",
) -> Callable[[Callable[P, R]], Callable[P, R | None]]:
    """Decorator: run the function in exactly one worker per generation and namespace.

    ``@once("seed")`` makes every call run it at most once per server run
    across all workers: the first caller runs it and gets its value; callers
    that find it done return ``None``; callers that wait meanwhile return
    ``None`` once it has finished. It is marked done only when it returns. If
    it raises, the exception propagates in the caller that ran it, and the
    callers that were waiting for that attempt raise :class:`OnceFailed`
    (``retry=True``: they try it themselves); a later call tries again.
    ``timeout`` bounds the wait for another worker or thread (``None``: wait
    as long as it takes, warning every ``WARN_INTERVAL`` s); past it, the call
    raises :class:`OnceTimeout` rather than return as if done. Without a
    usable lock directory, ``degraded`` decides (see :data:`Degraded`).
    ``scope="deploy"``: once per deploy, across hosts with a backend (see
    :data:`Scope`).

    Also usable inline: ``workerid.once("seed")(seed_ranges)()``.
    """
    key = str(name)
    _check(timeout, degraded, scope)

    def decorator(fn: Callable[P, R]) -> Callable[P, R | None]:
        #: the cached identity under which this process saw it done: while
        #: _identity's cache is still that object, it is done in this run. Any
        #: forgetting (configure(), a fork into a new worker) replaces the
        #: cached object as it empties _done (on_forget), so the test fails then.
        done_under: object = _NOT_YET

        def call_slowly(args: tuple[Any, ...], kwargs: dict[str, Any]) -> R | None:
            nonlocal done_under

            def call() -> R:
                return fn(*args, **kwargs)

            result = run_once(
                key, call, timeout=timeout, degraded=degraded, retry=retry, scope=scope
            )
            if result.state is Outcome.BUSY:
                raise OnceTimeout(key, result.waited, result.pid)
            if result.state is Outcome.FAILED:
                raise OnceFailed(key, result.error, result.pid)
            ident = _identity._cached
            if scope == "deploy":
                if ident is not None and result.done:
                    done_under = ident
            elif (
                ident is not None
                and ident.generation is not None
                and _done.get(key) == ident.generation
            ):
                done_under = ident
            return result.value

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | None:
            # The done-path: one comparison, no OnceResult, no closure (the
            # cells of an inner function would be made on every call).
            if _identity._cached is done_under:
                return None
            return call_slowly(args, kwargs)

        return wrapper

    return decorator


__all__ = [
    "WARN_INTERVAL",
    "Degraded",
    "OnceError",
    "OnceFailed",
    "OnceResult",
    "OnceTimeout",
    "OnceUnavailable",
    "Outcome",
    "Scope",
    "once",
    "run_once",
    "try_once",
    "wait_done",
]
