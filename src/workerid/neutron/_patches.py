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


#: seedings this process left to another worker, to check on before serving
_pending: list[Callable[[], None]] = []


def patch_managers(mod: Any) -> None:
    cls = mod.TypeManager
    original = cls.initialize_network_segment_range_support

    @functools.wraps(original)
    def initialize_network_segment_range_support(self: Any, start_time: Any) -> None:
        # Neutron seeds only in worker 1. Here the first worker of the run to
        # get here seeds (with a lazily loaded WSGIScriptAlias, worker 1 may
        # not load Neutron until its first request). The others do not wait
        # here: they go on loading Neutron while it seeds (on 2 cores that
        # overlap is most of a second) and wait for it at the end of the
        # import of neutron.wsgi.api, before they serve (see wait_for_seeding).
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


#: whether a worker that finds the seeding still running warms up meanwhile (install() sets it)
warm_up_enabled = True


def _warm_policy() -> None:
    """Load Neutron's API policy rules now, as the first request would (``policy.init()``).

    ``neutron.policy._ENFORCER`` stays ``None`` until the first ``policy.enforce()`` or
    ``policy.check()`` (the pecan ``PolicyHook``, ``neutron/pecan_wsgi/hooks/
    policy_enforcement.py`` L128/L142) calls ``init()`` (``neutron/policy.py`` L499/L534 at
    28.0.0, L504/L539 at 29.0.0). ``init()`` (L71-L87 at both) builds an oslo.policy
    ``Enforcer``, imports the ``neutron.policies`` entry points (``neutron.conf.policies.*``,
    whose ``RuleDefault`` objects parse their check strings, each ``OwnerCheck`` building an
    oslo.cache memory region, L290 at 28.0.0, L295 at 29.0.0) and loads the rules (L87). It is
    idempotent, and the same call the request would make, in the same process, after
    ``boot_server`` has parsed Neutron's configuration. If it fails, ``reset()`` (L54) puts the
    module back as it was, so the first request meets the same failure Neutron alone would.
    """
    try:
        policy = importlib.import_module("neutron.policy")
        init = policy.init
    except (ImportError, AttributeError) as exc:  # another Neutron, or a stand-in
        log.debug("workerid: no Neutron policy engine to warm up: %s", exc)
        return
    try:
        init()
    except Exception:
        with contextlib.suppress(Exception):
            policy.reset()
        raise


#: what a worker does before its first request, done while it waits for the seeding:
#: (name, function); each one is tried once, its failure logged and ignored
WARM_UPS: list[tuple[str, Callable[[], None]]] = [("policy", _warm_policy)]


def warm_up() -> float:
    """Do now the lazy work a Neutron API worker defers to its first request; seconds spent.

    Called only while this worker has nothing else to do: the seeding runs in another worker,
    and this one must not serve before it is done. Never raises (``Exception``): a step that
    fails is logged and left to the first request, as it would be without workerid.
    """
    began = time.monotonic()
    done = []
    for name, step in WARM_UPS:
        try:
            step()
        except Exception as exc:
            log.warning(
                "workerid: warming up %s failed (%s: %s); the first request will do it",
                name,
                type(exc).__name__,
                exc,
            )
        else:
            done.append(name)
    spent = time.monotonic() - began
    if done:
        log.info(
            "workerid: warmed up %s in %.2fs while another worker seeds",
            ", ".join(done),
            spent,
        )
    return spent


def _left(began: float, timeout: float) -> float:
    return max(0.0, timeout - (time.monotonic() - began))


def wait_for_seeding(seed_timeout: float) -> None:
    """Before this worker serves: the seeding another worker started must be done.

    Bounded by ``seed_timeout`` in all. If the seeding is still running, the worker first does
    its first-request warm-up (:func:`warm_up`), then waits for what is left. If the seeder
    failed or died, this worker seeds itself; if that retry is itself a wait for another
    worker's retry that fails, it does not try a third time (``once`` records failures).
    """
    if not _pending:
        return
    began = time.monotonic()
    result = _once.wait_done(SEED_ONCE, 0)
    if result.state is _once.Outcome.BUSY:
        # The seeding is still running: nothing to wait for but it, so use the time for
        # what the first request would otherwise do (it overlaps the seeding, as the
        # first requests do under uWSGI, but no request is answered before it is done).
        if warm_up_enabled:
            warm_up()
        result = _once.wait_done(SEED_ONCE, _left(began, seed_timeout))
    waited = result.waited
    if result.state in (_once.Outcome.FAILED, _once.Outcome.NOT_RUN):
        for seed in _pending:  # the seeder failed or died: try here
            result = _once.run_once(SEED_ONCE, seed, timeout=_left(began, seed_timeout))
            waited += result.waited
    _pending.clear()
    if result.state is _once.Outcome.BUSY:
        log.warning(
            "workerid: the ML2 default segment ranges were still being seeded after %.0fs; "
            "serving anyway (requests may get 503 NoNetworkAvailable until it is done)",
            time.monotonic() - began,
        )
    elif result.state is _once.Outcome.FAILED:
        log.warning(
            "workerid: seeding the ML2 default segment ranges failed in worker pid %s (%s); "
            "serving anyway (requests may get 503 NoNetworkAvailable)",
            result.pid,
            result.error,
        )
    else:
        log.info("workerid: waited %.2fs for another worker's segment range seeding", waited)


def patch_wsgi_api(mod: Any, seed_timeout: float) -> None:
    # Runs right after the module body, i.e. after boot_server() has loaded
    # Neutron in this worker (and set up its logging) and before the server
    # hands it a request.
    wait_for_seeding(seed_timeout)
    ident = workerid.identity()
    log.info(
        "workerid: Neutron API worker %s of %s, start time %s (%s; lock dir %s)%s",
        ident.worker_id,
        ident.worker_count,
        ident.start_time,
        ident.loader,
        ident.lock_dir,
        "; degraded: " + " / ".join(ident.degraded) if ident.degraded else "",
    )


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
