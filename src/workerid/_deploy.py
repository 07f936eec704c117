"""``once(name, scope="deploy")`` across hosts: one run per (namespace, deploy, name).

With a backend (``WORKERID_BACKEND``), what a deploy-scoped ``once`` is once
per lives in the engine, not in a lock directory: the engine's primitives
(``backends.Engine.once_*``) are a *run lock* and a *result*. This module is
the policy around them, the same for every engine, and mirrors the local
rules of :mod:`workerid._once`:

* **One runs, the others wait, then skip.** A caller that finds no result
  takes the run lock (PostgreSQL: a session advisory lock; etcd: a key on a
  lease) and, under it, reads the result again before running the function.
  Callers that find the lock held poll the engine until a result appears or
  the lock is free.
* **A dead runner does not block anyone for long.** The run lock is held
  like a worker ID's claim: it goes with the runner's session (``kill -9``
  ends it at once on PostgreSQL) or lease (etcd: the TTL). A keep-alive
  thread beats it every ``lease / 5`` seconds while the function runs, so a
  slow function keeps it and a dead or cut-off runner loses it.
* **A failure is recorded**, and the callers that waited for that attempt get
  ``FAILED`` (``retry=True``: they try again); a later, separate call tries
  again.
* **No exactly-once across a partition.** A runner cut off from the engine
  for longer than the lease loses its lock while its function still runs;
  another worker may then run it too. The runner finds out when it records
  the result, and says so. A function run once per deploy should be safe to
  repeat after such a fault (a migration that checks its schema version is).
* **The engine unreachable**: nothing is guessed; the ``degraded`` ladder
  decides, and for a deploy its ``"default"`` is ``"raise"``.

Each call opens its own connection to the engine and closes it when done, so
it never shares one with the worker's ID claim (whose keep-alive thread owns
that one).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from . import _once
from ._once import OnceResult, Outcome

if TYPE_CHECKING:
    from .backends import Engine, OnceKey, OnceRecord

log = logging.getLogger("workerid")

R = TypeVar("R")

#: first and longest pause between two looks at the engine while waiting
_POLL_FIRST = 0.05
_POLL_MAX = 0.5

#: the engines of calls in progress in this process
_open: weakref.WeakSet[Engine] = weakref.WeakSet()


def _after_fork_child() -> None:
    # A child forked while a call is in progress (the function may fork a
    # helper) shares its connection: if it kept the socket, a PostgreSQL
    # session (and with it the run lock) would outlive a runner killed with
    # -9 for as long as the child lives. Let go of it without a word on it.
    for engine in list(_open):
        engine.after_fork_in_child()
    _open.clear()


os.register_at_fork(after_in_child=_after_fork_child)


def _connect(where: _once._Where) -> Engine:
    from .backends import connect

    assert where.cluster is not None
    url = where.cluster[0]
    engine = connect(url, timeout=min(url.lease / 2, 5.0))
    _open.add(engine)
    return engine


def _describe_runner(runner: OnceRecord | None) -> str:
    if runner is None or runner.pid is None:
        return "another worker"
    return f"worker pid {runner.pid} on {runner.host}"


class _Keeper(threading.Thread):
    """Beats the run lock every ``lease / 5`` s while the function runs."""

    def __init__(self, engine: Engine, lease: float, name: str) -> None:
        super().__init__(name=f"workerid-once-{name}", daemon=True)
        self.engine, self.lease, self.once_name = engine, lease, name
        self.margin = max(0.5, lease / 5)
        self.lost: str | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        from .backends import BackendError, ClaimLost

        proven = time.monotonic()
        while not self._halt.wait(self.lease / 5):
            deadline = proven + self.lease - self.margin
            try:
                self.engine.once_keep(timeout=max(0.05, deadline - time.monotonic()))
                proven = time.monotonic()
                continue
            except ClaimLost as exc:
                self.lost = str(exc)
            except BackendError as exc:
                if time.monotonic() < deadline:
                    continue
                self.lost = f"no answer within the lease ({exc})"
            log.warning(
                "workerid: once(%r): lost its run lock while running (%s); another worker "
                "may start it now",
                self.once_name,
                self.lost,
            )
            return

    def stop(self) -> None:
        self._halt.set()
        self.join()


def run(
    where: _once._Where, fn: Callable[[], R], *, timeout: float | None, retry: bool
) -> OnceResult[R]:
    from .backends import BackendError

    wait = _once._Wait(where.name, timeout)
    tlock = _once._take_thread_lock(where.key, wait)
    if tlock is None:
        return _once._busy(wait, os.getpid(), "another thread of this process")
    try:
        if _once._done.get(where.key) == where.generation:
            return OnceResult(where.name, Outcome.DONE, waited=wait.waited)
        engine: Engine | None
        try:
            engine = _connect(where)
        except BackendError as exc:
            return _unavailable(where, fn, exc)
        try:
            while True:
                try:
                    return _run(where, engine, fn, wait=wait, retry=retry)
                except BackendError as exc:
                    lost = exc
                engine.close()
                engine = _reconnect(where, wait, lost)
                if engine is None:
                    return _unavailable(where, fn, lost)
        finally:
            if engine is not None:
                engine.close()
    finally:
        tlock.release()


def _reconnect(where: _once._Where, wait: _once._Wait, exc: Exception) -> Engine | None:
    """The engine again after it went away while this call waited (a restart, a blip),
    within the call's wait budget; ``None`` once that is spent.

    Nothing has run here yet (the function's own run never raises BackendError:
    _record swallows it), so starting over is safe. The first contact failing is
    not retried: that is "unavailable", and the degraded ladder says what to do.
    """
    from .backends import BackendError

    log.warning(
        "workerid: once(%r): lost the engine while waiting (%s); trying again%s",
        where.name,
        exc,
        "" if wait.timeout is None else f" for up to {wait.timeout:g}s in all",
    )
    pause = 0.25
    while True:
        left = None if wait.deadline is None else wait.deadline - time.monotonic()
        if left is not None and left <= 0:
            return None
        time.sleep(pause if left is None else min(pause, left))
        try:
            return _connect(where)
        except BackendError:
            pause = min(pause * 2, 2.0)


def _unavailable(where: _once._Where, fn: Callable[[], R], exc: Exception) -> OnceResult[R]:
    assert where.cluster is not None
    reason = f"backend {where.cluster[0].safe} unavailable ({exc})"
    return _once._degraded_run(where.key, fn, where.degraded, reason, where.generation)


def _run(
    where: _once._Where, engine: Engine, fn: Callable[[], R], *, wait: _once._Wait, retry: bool
) -> OnceResult[R]:
    from .backends import OnceRecord

    assert where.cluster is not None
    url, key = where.cluster
    host, pid = os.uname().nodename, os.getpid()
    result, runner = engine.once_read(key)
    # The failure (if any) known before waiting: one recorded after it is
    # the attempt this call waited for, which it must not repeat.
    seen = result.attempt if result is not None and result.state == "failed" else None
    if result is not None and result.state == "done":
        return _done(where, wait)
    found: dict[str, Any] = {"result": result, "runner": runner}

    def done_or_taken(result: OnceRecord | None, runner: OnceRecord | None) -> bool:
        done = result is not None and result.state == "done"
        return done or (runner is None and engine.once_take(key, host, pid))

    attempt = _poller(engine, key, found, done_or_taken)
    if not wait.until(attempt, lambda: _describe_runner(found["runner"])):
        runner = found["runner"]
        return _once._busy(wait, runner.pid if runner else None, _describe_runner(runner))
    last = found["result"]
    if last is not None and last.state == "done":  # else the run lock is ours
        return _done(where, wait)
    # the run lock is ours: read again under it
    result, _runner = engine.once_read(key)
    if result is not None and result.state == "done":
        engine.once_finish(key, None)
        return _done(where, wait)
    if result is not None and result.state == "failed" and result.attempt != seen and not retry:
        engine.once_finish(key, None)
        log.warning(
            "workerid: once(%r) failed in worker pid %s on %s (%s); not trying again here",
            where.name,
            result.pid,
            result.host,
            result.error,
        )
        return OnceResult(
            where.name, Outcome.FAILED, waited=wait.waited, pid=result.pid, error=result.error
        )
    keeper = _Keeper(engine, url.lease, where.name)
    keeper.start()
    _once._running[where.key] = threading.get_ident()
    try:
        value = fn()
    except Exception as exc:
        keeper.stop()
        error = _once._describe(exc)
        failed = OnceRecord(
            "failed",
            host=host,
            pid=pid,
            error=error,
            attempt=f"{host}.{pid}.{time.time_ns()}",
        )
        _record(where, engine, key, failed, keeper)
        log.warning(
            "workerid: once(%r) failed here (%s); recorded, so the workers waiting for it "
            "do not each try again",
            where.name,
            error,
        )
        raise
    except BaseException:
        keeper.stop()
        _finish_quietly(engine, key)
        raise
    finally:
        _once._running.pop(where.key, None)
    keeper.stop()
    _record(where, engine, key, OnceRecord("done", host=host, pid=pid), keeper)
    assert where.generation is not None
    _once._done[where.key] = where.generation
    return OnceResult(where.name, Outcome.RAN, value=value, ran=True, waited=wait.waited)


def _poller(
    engine: Engine,
    key: OnceKey,
    found: dict[str, Any],
    stop: Callable[[OnceRecord | None, OnceRecord | None], bool],
) -> Callable[[float], bool]:
    """An ``attempt(seconds)`` for :meth:`_once._Wait.until`: reads the engine (50 ms,
    doubling to 500 ms) until ``stop(result, runner)``; the last read goes to ``found``."""

    def attempt(seconds: float) -> bool:
        end = time.monotonic() + seconds
        pause = _POLL_FIRST
        while True:
            found["result"], found["runner"] = engine.once_read(key)
            if stop(found["result"], found["runner"]):
                return True
            left = end - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(pause, left))
            pause = min(pause * 2, _POLL_MAX)

    return attempt


def _done(where: _once._Where, wait: _once._Wait) -> OnceResult[Any]:
    assert where.generation is not None
    _once._done[where.key] = where.generation
    return OnceResult(where.name, Outcome.DONE, waited=wait.waited)


def _finish_quietly(engine: Engine, key: OnceKey) -> None:
    from .backends import BackendError

    try:
        engine.once_finish(key, None)
    except BackendError:
        pass  # the lock goes with the connection, closed by the caller


def _record(
    where: _once._Where, engine: Engine, key: OnceKey, record: OnceRecord, keeper: _Keeper
) -> None:
    """Write the result; on a fresh connection if this one is gone. Never raises."""
    from .backends import BackendError

    try:
        held = engine.once_finish(key, record)
    except BackendError as exc:
        try:
            fresh = _connect(where)
            try:
                held = fresh.once_finish(key, record)
            finally:
                fresh.close()
        except BackendError as again:
            log.error(
                "workerid: once(%r) %s here but the result could not be recorded (%s; %s): "
                "another worker may run it again",
                where.name,
                "ran" if record.state == "done" else "failed",
                exc,
                again,
            )
            return
    if not held or keeper.lost:
        log.warning(
            "workerid: once(%r) finished after its run lock was lost (%s); the result is "
            "recorded, but another worker may have run it meanwhile",
            where.name,
            keeper.lost or "the engine let it go",
        )


def wait_done(where: _once._Where, *, timeout: float | None) -> OnceResult[None]:
    """:func:`workerid.wait_done` for a deploy across hosts. Never runs it."""
    from .backends import BackendError

    wait = _once._Wait(where.name, timeout)
    if _once._done.get(where.key) == where.generation:
        return OnceResult(where.name, Outcome.DONE)
    assert where.cluster is not None
    key = where.cluster[1]
    try:
        engine = _connect(where)
    except BackendError as exc:
        return OnceResult(where.name, Outcome.DEGRADED, detail=f"backend unavailable ({exc})")
    found: dict[str, Any] = {}

    def settled(result: OnceRecord | None, runner: OnceRecord | None) -> bool:
        return runner is None or (result is not None and result.state == "done")

    try:
        attempt = _poller(engine, key, found, settled)
        if not wait.until(attempt, lambda: _describe_runner(found.get("runner"))):
            runner = found.get("runner")
            return _once._busy(wait, runner.pid if runner else None, _describe_runner(runner))
    except BackendError as exc:
        return OnceResult(where.name, Outcome.DEGRADED, detail=f"backend unavailable ({exc})")
    finally:
        engine.close()
    result = found.get("result")
    if result is not None and result.state == "done":
        return _done(where, wait)
    if result is not None and result.state == "failed":
        return OnceResult(
            where.name, Outcome.FAILED, waited=wait.waited, pid=result.pid, error=result.error
        )
    return OnceResult(where.name, Outcome.NOT_RUN, waited=wait.waited)
