"""The keep-alive thread: one per worker with a backend, the same for every engine.

It owns the engine (nothing else in the process talks to it), beats every
``lease / 5`` seconds and, from the moment it sent the last beat that was
answered, gives the claim ``lease - margin`` seconds: the engine keeps it at
least ``lease`` seconds after *receiving* that beat (an etcd lease's TTL, a
PostgreSQL session's ``idle_session_timeout``), which is later. So when the
worker's deadline passes without an answer (a partition, an engine down) it
has stopped answering its ID *before* any other worker can be given it. Every
call to the engine waits at most until that deadline, so the flip happens on
time even when the engine never answers.

The application never waits for this thread: the hot path reads the cached
identity, which :meth:`Keeper._publish` replaces (one global store) whenever
what the worker may answer changes.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import threading
import time
from collections.abc import Callable

from . import BackendError, BackendURL, Claim, ClaimLost, Engine, Me, connect

log = logging.getLogger("workerid")


@dataclasses.dataclass(frozen=True)
class State:
    """What the worker may answer now."""

    worker_id: int | None
    token: int | None
    #: live claims in the namespace at the last beat
    live: int | None
    #: why there is no ID (or why it is above the count), else ``None``
    reason: str | None


class Keeper:
    def __init__(
        self,
        url: BackendURL,
        me: Me,
        *,
        count: int | None,
        max_slots: int,
        settle_timeout: float,
        on_change: Callable[[Keeper, State], None],
    ) -> None:
        self.url = url
        self.me = me
        self.count = count
        self.max_slots = max(max_slots, count or 0)
        self.settle_timeout = settle_timeout
        self.on_change = on_change
        self.interval = url.lease / 5
        self.margin = max(url.lease / 5, 0.5)
        self.connect_timeout = min(url.lease / 2, 5.0)
        self.engine: Engine | None = None
        self.claim: Claim | None = None
        self.deadline = 0.0
        self.live: int | None = None
        self.reason: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # engine handover between the thread and stop()

    # --- what the worker answers -------------------------------------------

    def state(self) -> State:
        claim = self.claim
        return State(
            worker_id=claim.worker_id if claim else None,
            token=claim.token if claim else None,
            live=self.live,
            reason=self.reason,
        )

    def _publish(self) -> None:
        if self._stop.is_set():
            return
        try:
            self.on_change(self, self.state())
        except Exception:  # never let a callback kill the keep-alive
            log.exception("workerid: the backend change callback failed")

    # --- claiming ------------------------------------------------------------

    def first_claim(self) -> State:
        """Claim in the calling thread (the worker's first call), bounded; then beat in a thread."""
        try:
            self._connect_and_claim(wait=True)
        except BackendError as exc:
            self.reason = (
                f"backend {self.url.safe} unavailable ({exc}); worker_id is None, "
                f"claiming again every {self.interval:g}s"
            )
        return self.state()

    def start(self) -> None:
        if self._thread is None and not self._stop.is_set():
            self._thread = threading.Thread(
                target=self._run, name=f"workerid-{self.url.engine}", daemon=True
            )
            self._thread.start()
            # a clean exit gives the ID back at once (etcd would keep it for
            # the lease's TTL otherwise; PostgreSQL drops it with the socket)
            atexit.register(self._at_exit)

    def _at_exit(self) -> None:
        if not self._stop.is_set():
            self.stop()

    def _connect_and_claim(self, *, wait: bool) -> None:
        sent = time.monotonic()
        engine = connect(self.url, timeout=self.connect_timeout)
        try:
            claim, note = self._claim_on(engine, wait=wait)
            if claim is None:
                self.reason = note
                engine.close()
                return
            live = engine.beat(timeout=self.connect_timeout)
        except BackendError:
            engine.close()
            raise
        with self._lock:
            if self._stop.is_set():
                engine.close()
                return
            self.engine, self.claim, self.live = engine, claim, live
            self.deadline = sent + self.url.lease - self.margin
            self.reason = note
        if claim.took_over:
            log.info("workerid: %s", claim.took_over)

    def _claim_on(self, engine: Engine, *, wait: bool) -> tuple[Claim | None, str | None]:
        limit = self.count or self.max_slots
        settle_until = time.monotonic() + (self.settle_timeout if wait else 0.0)
        while True:
            claim = engine.claim(self.me, limit)
            if claim is not None:
                return claim, None
            if self.count is None or time.monotonic() >= settle_until:
                break
            time.sleep(0.05)
        if self.count is not None and self.max_slots > self.count:
            claim = engine.claim(self.me, self.max_slots)
            if claim is not None:
                return claim, (
                    f"worker IDs 1..{self.count} were all held across the cluster "
                    f"({self.url.safe}); took {claim.worker_id}"
                )
        return None, (
            f"all {self.max_slots} worker IDs of namespace {self.me.namespace!r} are held "
            f"across the cluster ({self.url.safe}); worker_id is None, claiming again every "
            f"{self.interval:g}s"
        )

    # --- the thread ------------------------------------------------------------

    def _run(self) -> None:
        next_beat = time.monotonic() + self.interval
        while not self._stop.is_set():
            if self.claim is None:
                if self._stop.wait(self.interval):
                    return
                before = self.reason
                try:
                    self._connect_and_claim(wait=False)
                except BackendError as exc:
                    self.reason = (
                        f"backend {self.url.safe} unavailable ({exc}); worker_id is None, "
                        f"claiming again every {self.interval:g}s"
                    )
                if self.claim is not None or self.reason != before:
                    self._publish()
                next_beat = time.monotonic() + self.interval
                continue
            if self._stop.wait(max(0.0, min(next_beat, self.deadline) - time.monotonic())):
                return
            sent = time.monotonic()
            left = self.deadline - sent
            engine = self.engine
            if left <= 0 or engine is None:
                self._lose(f"no answer from the engine for {self.url.lease - self.margin:g}s")
                continue
            try:
                live = engine.beat(timeout=left)
            except ClaimLost as exc:
                self._lose(str(exc))
                continue
            except BackendError as exc:
                if time.monotonic() >= self.deadline:
                    self._lose(
                        f"no answer from the engine for {self.url.lease - self.margin:g}s ({exc})"
                    )
                else:
                    next_beat = time.monotonic() + min(self.interval, 0.2)
                continue
            self.deadline = sent + self.url.lease - self.margin
            next_beat = sent + self.interval
            if live != self.live:
                self.live = live
                self._publish()

    def _lose(self, why: str) -> None:
        """Stop answering the ID first, then tidy up (which may be slow)."""
        claim = self.claim
        with self._lock:
            self.claim = None
            engine, self.engine = self.engine, None
        if claim is not None:
            self.reason = (
                f"lost worker ID {claim.worker_id} (fencing token {claim.token}) on "
                f"{self.url.safe}: {why}; worker_id is None until it claims one again"
            )
            log.warning("workerid: %s", self.reason)
            self._publish()
        if engine is not None:
            try:
                engine.release()
            except BackendError:
                pass

    # --- the process's life ------------------------------------------------------

    def stop(self) -> None:
        """Give the claim back and end the thread (``configure()``, a master's fork)."""
        self._stop.set()
        with self._lock:
            engine, self.engine, self.claim = self.engine, None, None
        if engine is not None:
            engine.interrupt()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.url.lease)
        if engine is not None:
            try:
                engine.release()
            except BackendError:
                pass

    def after_fork_in_child(self) -> None:
        """In a forked child (no thread runs here): drop the parent's connection silently."""
        self._stop.set()
        engine, self.engine, self.claim = self.engine, None, None
        if engine is not None:
            engine.after_fork_in_child()
