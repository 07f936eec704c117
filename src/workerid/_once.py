"""``once(name)``: run a function in exactly one worker per generation and namespace.

The first worker to call it takes ``once.<name>.lock``, checks the done-marker
``once.<name>.json``, runs the function and, only if it returned, records the
generation in the marker. Workers that call meanwhile wait on the lock (so
nobody proceeds before initialisation has finished), find the marker, and
skip. A function that raises is not marked done: the next caller tries again.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Literal, ParamSpec, TypeVar

from . import _identity, _layout, _reclock, _statefile

log = logging.getLogger("workerid")

P = ParamSpec("P")
R = TypeVar("R")

_POLL = 0.02
_memo: dict[str, str] = {}
_thread_locks: dict[str, threading.Lock] = {}
_guard = threading.Lock()


def reset() -> None:
    """Forget what this process has seen done (a new generation or configuration)."""
    _memo.clear()


_identity.on_forget.append(reset)


def _marker_generation(path: str) -> str | None:
    try:
        raw = _statefile.read_json(path)
    except ValueError as exc:
        log.warning("workerid: ignoring unusable once-marker %s (%s)", path, exc)
        return None
    if type(raw) is dict and raw.get("v") == 1 and type(raw.get("generation")) is str:
        return str(raw["generation"])
    if raw is not None:
        log.warning("workerid: ignoring once-marker %s of unknown shape", path)
    return None


def _acquire(fd: int, timeout: float | None) -> bool:
    if timeout is None:
        _reclock.lock(fd)
        return True
    deadline = time.monotonic() + timeout
    while not _reclock.try_lock(fd, 0, 0):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL)
    return True


def _degraded_run(name: str, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R | None:
    ident = _identity.identity()
    if ident.worker_id is not None:
        if ident.worker_id != 1:
            return None
        _identity._warn(
            f"once({name!r}): no usable lock directory; running it in worker 1 only, "
            "and again if worker 1 is replaced"
        )
    else:
        _identity._warn(
            f"once({name!r}): no usable lock directory and no worker ID; running it in "
            "every worker (it must be idempotent)"
        )
    return fn(*args, **kwargs)


#: what one attempt did: "ran" it, found it "done" (in this run), found it
#: "busy" (another worker holds the lock past the timeout), or ran it
#: "degraded" (no lock directory: see _degraded_run)
Outcome = Literal["ran", "done", "busy", "degraded"]


def _attempt(
    name: str, timeout: float | None, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs
) -> tuple[Outcome, R | None]:
    generation = _identity.identity().generation
    if generation is not None and _memo.get(name) == generation:
        return "done", None
    ns_dir = _identity._state_dir()
    if ns_dir is None or generation is None:
        result = _degraded_run(name, fn, *args, **kwargs)
        _memo[name] = generation or ""
        return "degraded", result
    with _guard:
        tlock = _thread_locks.setdefault(name, threading.Lock())
    # Record locks exclude other processes only; threads of this process
    # are kept apart by the thread lock.
    with tlock:
        if _memo.get(name) == generation:
            return "done", None
        stem = os.path.join(ns_dir, _layout.once_stem(name))
        try:
            fd = _statefile.open_lock_file(stem + ".lock")
        except OSError as exc:
            _identity._warn(f"once({name!r}): cannot open {stem}.lock ({exc})")
            return "degraded", _degraded_run(name, fn, *args, **kwargs)
        try:
            if not _acquire(fd, timeout):
                return "busy", None
            if _marker_generation(stem + ".json") == generation:
                _memo[name] = generation
                return "done", None
            result = fn(*args, **kwargs)
            try:
                _statefile.write_json_atomic(
                    stem + ".json",
                    {
                        "v": 1,
                        "name": name,
                        "generation": generation,
                        "pid": os.getpid(),
                        "at": int(time.time()),
                    },
                )
            except OSError as exc:
                log.warning(
                    "workerid: once(%r) ran but its done-marker could not be written (%s); "
                    "other workers may run it again",
                    name,
                    exc,
                )
            _memo[name] = generation
            return "ran", result
        finally:
            os.close(fd)  # drops the lock


def _run(
    name: str, timeout: float | None, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs
) -> R | None:
    outcome, result = _attempt(name, timeout, fn, *args, **kwargs)
    if outcome == "busy":
        log.warning(
            "workerid: once(%r) still running in another worker after %gs; skipping here",
            name,
            timeout,
        )
    return result


def try_once(name: str, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> Outcome:
    """Run ``fn`` as ``once(name)`` would, but never wait: ``"busy"`` if another worker runs it.

    For callers that have better things to do meanwhile and check back with
    :func:`wait_done` before they depend on the result.
    """
    return _attempt(name, 0, fn, *args, **kwargs)[0]


def wait_done(name: str, timeout: float | None) -> bool:
    """Wait until no worker is running ``once(name)``; True if it is done in this run."""
    generation = _identity.identity().generation
    if generation is not None and _memo.get(name) == generation:
        return True
    ns_dir = _identity._state_dir()
    if ns_dir is None or generation is None:
        return False
    stem = os.path.join(ns_dir, _layout.once_stem(name))
    with _guard:
        tlock = _thread_locks.setdefault(name, threading.Lock())
    with tlock:
        try:
            fd = _statefile.open_lock_file(stem + ".lock")
        except OSError:
            return False
        try:
            if not _acquire(fd, timeout):
                return False
            done = _marker_generation(stem + ".json") == generation
        finally:
            os.close(fd)
    if done:
        _memo[name] = generation
    return done


def once(
    name: str, *, timeout: float | None = None
) -> Callable[[Callable[P, R]], Callable[P, R | None]]:
    """Decorator: run the function in exactly one worker per generation and namespace.

    ``@once("seed")`` on a function makes every call run it at most once per
    server run across all workers: the first caller runs it, callers in other
    workers wait until it has finished and then skip (returning ``None``).
    It is marked done only when it returns; if it raises, the exception
    propagates and the next call tries again. ``timeout`` bounds the wait
    for another worker's run (``None``: wait as long as it takes).

    Also usable inline: ``workerid.once("seed")(seed_ranges)()``.
    """
    key = str(name)

    def decorator(fn: Callable[P, R]) -> Callable[P, R | None]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | None:
            return _run(key, timeout, fn, *args, **kwargs)

        return wrapper

    return decorator


__all__ = ["once"]
