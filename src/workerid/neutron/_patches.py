"""What ``install()`` changes in Neutron, one function per Neutron module.

Each patch replaces a module attribute; every caller in Neutron 26.0.x to
29.0.x reads these as ``wsgi_utils.f()`` / ``service._get_api_workers()`` /
``ovn_hash_ring_db.add_node()`` at call time (no ``from ... import``), so a
replaced attribute reaches every call site. The two releases differ in shape
(see docs/design.md, "Neutron releases"):

* 26.0.x, 27.0.x and 28.0.x ask uWSGI: ``get_api_worker_id()``,
  ``get_start_time(default=, current_time=)``, the count from
  ``service._get_api_workers()``, and a hash ring node UUID made from the
  worker ID. They differ only in the ML2 guard, which the seeding wrapper
  satisfies whatever its form (none in 26.0.0; ``!= FIRST_WORKER_ID`` in
  26.0.1-26.0.2, 27.0.x, 28.0.x; ``!= FIRST_WORKER_ID and not None`` from
  26.0.3), and in 26.0.x/27.0.x having no unique constraint on the default
  ranges (see ``_serialised``);
* 29.0.x elects with ``O_EXCL`` files named after the parent PID:
  ``is_first_api_worker()``, ``get_start_time()`` (no arguments),
  ``get_api_worker_count()``, and a node UUID made from ``os.getpid()``.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import workerid
from workerid import _identity, _once

log = logging.getLogger("workerid.neutron")

#: the once() name of the ML2 default segment range seeding
SEED_ONCE = "neutron.ml2.segment-ranges"
#: the database lock that serialises the seeding where it runs in every worker
#: (MariaDB/MySQL ``GET_LOCK``; at most 64 characters)
SEED_DB_LOCK = "workerid.neutron.ml2.segment-ranges"
#: how long a worker waits for that lock before it seeds anyway (install() sets it)
seed_lock_timeout = 90.0

_first = threading.local()


def _as_first_worker() -> bool:
    return bool(getattr(_first, "active", False))


# --- neutron.common.wsgi_utils --------------------------------------------------


def patch_wsgi_utils(mod: Any) -> None:
    original_start_time = mod.get_start_time
    original_count = getattr(mod, "get_api_worker_count", None)
    original_is_first = getattr(mod, "is_first_api_worker", None)
    first = getattr(mod, "FIRST_WORKER_ID", 1)

    def get_api_worker_id() -> int | None:
        """Return the worker ID number (workerid: elected under any loader)."""
        if _as_first_worker():
            return int(first)
        return workerid.worker_id()

    def get_api_worker_count() -> int | None:
        """Return the number of API worker processes (workerid: from the loader)."""
        count = workerid.worker_count()
        if count is None and original_count is not None:
            fallback: int | None = original_count()
            return fallback
        return count

    @functools.wraps(original_start_time)
    def get_start_time(*args: Any, **kwargs: Any) -> int | None:
        start = workerid.start_time()
        if start is not None:
            return start
        # workerid knows nothing: Neutron's own answer, with the caller's
        # arguments (28.0.x takes default=/current_time=, 29.0.x none).
        result: int | None = original_start_time(*args, **kwargs)
        return result

    mod.get_api_worker_id = get_api_worker_id
    # 29.0.x reads the count here; 28.0.x has no such function and never
    # calls it, so adding it is harmless there.
    mod.get_api_worker_count = get_api_worker_count
    mod.get_start_time = get_start_time

    if original_is_first is not None:  # 29.0.x

        @functools.wraps(original_is_first)
        def is_first_api_worker() -> bool:
            if _as_first_worker():
                return True
            worker = workerid.worker_id()
            if worker is not None:
                return worker == int(first)
            # No elected ID (workerid degraded, see its warning): 29.0.x's
            # own election, a file in the temp dir named after the parent PID.
            return bool(original_is_first())

        mod.is_first_api_worker = is_first_api_worker


# --- neutron.service (28.0.0) ----------------------------------------------------


def patch_service(mod: Any) -> None:
    original = getattr(mod, "_get_api_workers", None)
    if original is None:  # Neutron master: the count comes from wsgi_utils
        return

    @functools.wraps(original)
    def _get_api_workers() -> int:
        # 28.0.0 counts api_workers or the CPUs; the hash ring compares that
        # with its rows, one per worker the server really runs.
        count = workerid.worker_count()
        return count if count is not None else int(original())

    mod._get_api_workers = _get_api_workers


# --- neutron.plugins.ml2.managers --------------------------------------------------


#: seedings this process left to another worker, to check on before it allocates a segment
_pending: list[Callable[[], None]] = []


def patch_managers(mod: Any) -> None:
    cls = mod.TypeManager
    original = cls.initialize_network_segment_range_support

    @functools.wraps(original)
    def initialize_network_segment_range_support(self: Any, start_time: Any) -> None:
        # Neutron seeds only in worker 1. Here the first worker of the run to
        # get here seeds (with a lazily loaded WSGIScriptAlias, worker 1 may
        # not load Neutron until its first request). The others do not wait
        # here: they go on loading Neutron and serving while it seeds (on 2
        # cores that overlap is most of a second), and a request of theirs
        # waits for it only where it allocates a segment (see await_seeding).
        def seed() -> None:
            _first.active = True
            began = time.monotonic()
            try:
                with _serialised():
                    original(self, start_time)
            finally:
                _first.active = False
            log.info(
                "workerid: seeded the ML2 default segment ranges for start time %s in %.2fs",
                start_time,
                time.monotonic() - began,
            )

        if _once.try_once(SEED_ONCE, seed).state is _once.Outcome.BUSY:
            _pending.append(seed)

    cls.initialize_network_segment_range_support = initialize_network_segment_range_support
    # Port binding's dynamic segments (hierarchical binding): retry_if_session_inactive, so
    # called outside a transaction.
    _await_in(cls, "allocate_dynamic_segment", "a dynamic segment allocation")


def _ranges_unique() -> bool:
    """Whether the release's default ranges table has a unique constraint.

    28.0.0 added ``uniq_network_segment_ranges`` (on default, network_type,
    physical_network, minimum, maximum; migration ``b1bca967e19d``): with it,
    concurrent seedings with one start time leave one row. 26.0.x and 27.0.x
    have none (``neutron/db/models/network_segment_range.py``), and their
    ``NetworkSegmentRange.new_default`` looks for an identical row and inserts
    one inside one transaction, so concurrent seedings insert a row each
    (measured on plain 26.0.6: four default ranges after a restart). Unknown
    (model not loaded): assume unique, i.e. change nothing.
    """
    mod = sys.modules.get("neutron.db.models.network_segment_range")
    table = getattr(getattr(mod, "NetworkSegmentRange", None), "__table__", None)
    if table is None:
        return True
    # Not any unique constraint: every release's table has one on standard_attr_id.
    return any(
        type(c).__name__ == "UniqueConstraint" and {col.name for col in c.columns} >= _RANGE_COLUMNS
        for c in table.constraints
    )


_RANGE_COLUMNS = frozenset({"default", "network_type", "minimum", "maximum"})


@contextlib.contextmanager
def _serialised() -> Iterator[None]:
    """Where the seeding runs in every worker, run it in one worker at a time.

    Only when workerid has no worker ID (degraded: no usable lock directory,
    so ``once()`` runs the seeding in every worker) and the release has no
    unique constraint on the default ranges (26.0.x, 27.0.x; see
    ``_ranges_unique``): a database lock (MariaDB/MySQL ``GET_LOCK``, on the
    database all workers share) taken before Neutron opens its transaction,
    so the next worker's transaction sees the range the previous one
    committed and inserts none. Everywhere else, and on another database,
    nothing changes.
    """
    if workerid.worker_id() is not None or _ranges_unique():
        yield
        return
    engine: Any = None
    try:
        db_api = importlib.import_module("neutron_lib.db.api")  # Neutron's, loaded by now
        engine = db_api.CONTEXT_WRITER.get_engine()
        if engine.dialect.name != "mysql":
            engine = None
    except Exception as exc:  # never worse than Neutron alone
        log.warning("workerid: cannot serialise the segment range seeding: %s", exc)
        engine = None
    if engine is None:
        yield
        return
    with engine.connect() as conn:
        began = time.monotonic()
        got = conn.exec_driver_sql(
            "SELECT GET_LOCK(%s, %s)", (SEED_DB_LOCK, seed_lock_timeout)
        ).scalar()
        log.info(
            "workerid: no worker ID and no unique constraint on the default segment ranges: "
            "seeding under database lock %s (%s after %.2fs)",
            SEED_DB_LOCK,
            "taken" if got == 1 else "NOT taken, seeding anyway",
            time.monotonic() - began,
        )
        try:
            yield
        finally:
            if got == 1:
                conn.exec_driver_sql("SELECT RELEASE_LOCK(%s)", (SEED_DB_LOCK,))


#: how long a request that allocates a segment waits for the seeding (install() sets it)
seed_timeout = 90.0

#: serialises the first wait of a process's request threads: one of them waits (and, if the
#: seeder failed, seeds); the others then find nothing pending
_await_lock = threading.Lock()


def _left(began: float, timeout: float) -> float:
    return max(0.0, timeout - (time.monotonic() - began))


def await_seeding(where: str) -> None:
    """Before this process allocates a network segment: the seeding another worker started must
    be done.

    Called where Neutron is about to allocate a segment, outside any database transaction (see
    ``patch_plugin``, ``patch_segments``, ``patch_managers``), so the allocation's transaction
    starts after the seeder's has committed and sees its ranges. The worker itself serves from
    the moment it has loaded Neutron, as it would under uWSGI: a request's own first-time work
    (the paste pipeline, pecan's hooks, the policy rules, the ML2 ``BEFORE_CREATE`` callbacks)
    runs while the seeding does, and only its allocation waits. Nothing pending (the usual
    case, and every call after the first): one list test, no lock.

    Bounded by ``seed_timeout`` from the first wait. If the seeder failed or died, this worker
    seeds itself; if that retry is itself a wait for another worker's retry that fails, it does
    not try a third time (``once`` records failures).
    """
    if not _pending:
        return
    with _await_lock:
        if not _pending:  # another request thread waited meanwhile
            return
        began = time.monotonic()
        result = _once.wait_done(SEED_ONCE, seed_timeout)
        waited = result.waited
        if result.state in (_once.Outcome.FAILED, _once.Outcome.NOT_RUN):
            for seed in _pending:  # the seeder failed or died: try here
                result = _once.run_once(SEED_ONCE, seed, timeout=_left(began, seed_timeout))
                waited += result.waited
        _pending.clear()
    if result.state is _once.Outcome.BUSY:
        log.warning(
            "workerid: the ML2 default segment ranges were still being seeded after %.0fs; "
            "%s goes on (it may get 503 NoNetworkAvailable until the seeding is done)",
            time.monotonic() - began,
            where,
        )
    elif result.state is _once.Outcome.FAILED:
        log.warning(
            "workerid: seeding the ML2 default segment ranges failed in worker pid %s (%s); "
            "%s goes on (it may get 503 NoNetworkAvailable)",
            result.pid,
            result.error,
            where,
        )
    else:
        log.info(
            "workerid: %s waited %.2fs for another worker's segment range seeding", where, waited
        )


def patch_wsgi_api(mod: Any) -> None:
    # Runs right after the module body, i.e. after boot_server() has loaded
    # Neutron in this worker (and set up its logging) and before the server
    # hands it a request.
    ident = workerid.identity()
    log.info(
        "workerid: Neutron API worker %s of %s, start time %s (%s; lock dir %s)%s%s",
        ident.worker_id,
        ident.worker_count,
        ident.start_time,
        ident.loader,
        ident.lock_dir,
        "; degraded: " + " / ".join(ident.degraded) if ident.degraded else "",
        "; another worker is seeding the ML2 default segment ranges: requests that allocate "
        "a network segment wait for it"
        if _pending
        else "",
    )


# --- where a segment is allocated: wait for the seeding first ----------------------------


def _awaiting(original: Callable[..., Any], where: str, after: bool = False) -> Any:
    """``original`` with :func:`await_seeding` before it (or after it, ``after=True``)."""

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not after:
            await_seeding(where)
        result = original(*args, **kwargs)
        if after:
            await_seeding(where)
        return result

    return wrapper


def _await_in(cls: Any, name: str, where: str, after: bool = False) -> None:
    """Make ``cls.name`` wait for the seeding (see :func:`_awaiting`); a Neutron without it is
    said, never an error: the rest of ``install()`` still applies."""
    original = getattr(cls, name, None)
    if not callable(original):
        log.warning(
            "workerid: this Neutron has no %s.%s; %s will not wait for the segment range "
            "seeding (it may meet 503 NoNetworkAvailable right after a start)",
            cls.__name__,
            name,
            where,
        )
        return
    setattr(cls, name, _awaiting(original, where, after))


def patch_plugin(mod: Any) -> None:
    # Ml2Plugin.create_network (transaction_guard: never inside a transaction) and
    # create_network_bulk (via _create_bulk_ml2, before its CONTEXT_WRITER) call
    # _before_create_network, which publishes BEFORE_CREATE, then open the transaction that
    # allocates the network's segments (26.0.x-29.0.x). Waiting after the callbacks lets them
    # run while the seeding does; waiting before the transaction lets it see the ranges
    # (MariaDB's REPEATABLE READ snapshot starts at its first read).
    _await_in(mod.Ml2Plugin, "_before_create_network", "a network create", after=True)


def patch_segments(mod: Any) -> None:
    # SegmentDbMixin.create_segment: a segment with no segmentation ID is allocated by ML2's
    # PRECOMMIT_CREATE handler (reserve_network_segment) inside _create_segment_db's
    # transaction, so wait before it opens.
    _await_in(mod.SegmentDbMixin, "create_segment", "a segment create")


# --- neutron.db.ovn_hash_ring_db ------------------------------------------------


def _take_over(mod: Any, context: Any, group_name: str, node_uuid: str) -> None:
    """Delete our own node's row if a dead predecessor with our worker ID left it.

    Neutron derives the node UUID from (group, host, worker ID) and keeps
    rows whose created_at equals the start time, so a replacement worker that
    inherits a dead worker's ID and start time collides with the dead
    worker's row and loops in ``_init_hash_ring`` retries while that row goes
    stale. Proof that the predecessor is dead:

    * an elected ID (``lock``) that this process holds itself: the kernel
      released the predecessor's lock when it died, and the namespace has
      one ID space, so no live process holds the same ID and a live row is
      never taken (a helper process reports its worker's ID but holds
      nothing: it never takes over);
    * uWSGI's own ID: uWSGI respawns worker N only after it has reaped the
      previous worker N (``core/master.c``, ``uwsgi_respawn_worker``), and a
      graceful reload re-execs the master after all workers have exited,
      which also gives a new start time.
    """
    ident = workerid.identity()
    if ident.worker_id is None or ident.worker_id_source not in ("lock", "uwsgi"):
        return
    if node_uuid != mod.get_node_uuid(group_name, mod.CONF.host, ident.worker_id):
        return
    if ident.worker_id_source != "uwsgi" and not _identity.holds_slot():
        log.info(
            "workerid: not taking over hash ring node %s: this process does not hold "
            "worker ID %s itself",
            node_uuid,
            ident.worker_id,
        )
        return
    model = mod.ovn_models.OVNHashRing
    with mod.db_api.CONTEXT_WRITER.using(context):
        deleted = (
            context.session.query(model)
            .filter(
                model.node_uuid == node_uuid,
                model.group_name == group_name,
                model.hostname == mod.CONF.host,
            )
            .delete()
        )
    if deleted:
        log.warning(
            "workerid: took over hash ring node %s (worker %s): its previous holder died "
            "without removing its row",
            node_uuid,
            ident.worker_id,
        )


def patch_hash_ring_db(mod: Any) -> None:
    original = mod.add_node
    original_uuid = mod.get_node_uuid

    @functools.wraps(original_uuid)
    def get_node_uuid(group_name: str, host: str, worker_id: int) -> str:
        # 29.0.x names a worker's node after its PID, so a respawned worker
        # gets a new row and its predecessor's row stays behind, stale, until
        # the next restart (counted by the health check's CRITICAL line). With
        # an elected ID the node is named after the ID, as in 28.0.x, and the
        # replacement takes the row over (see _take_over). 28.0.x already
        # passes the worker ID, never the PID, so nothing changes there.
        if worker_id == os.getpid():
            ident = workerid.identity()
            if ident.worker_id is not None and ident.worker_id_source in ("lock", "uwsgi"):
                worker_id = ident.worker_id
        result: str = original_uuid(group_name, host, worker_id)
        return result

    @functools.wraps(original)
    def add_node(context: Any, group_name: str, node_uuid: str, created_at: Any = None) -> Any:
        _take_over(mod, context, group_name, node_uuid)
        return original(context, group_name, node_uuid, created_at=created_at)

    mod.get_node_uuid = get_node_uuid
    mod.add_node = add_node
