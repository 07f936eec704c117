"""Is this process a helper of a worker? Found from outside, without being told.

Two kinds of process are a worker's helpers although they would look like
workers of a run of their own:

* started by multiprocessing (*spawn*, *forkserver*: a fresh interpreter, the
  default on Linux from Python 3.14) from a process that holds a worker ID,
  unless this process is a uvicorn/hypercorn worker (those servers start
  their workers that way). ``parent_process()`` is the process that asked for
  it: the spawning one, or for forkserver the requester, not the forkserver;
* forked by a process that had not asked workerid yet, when that process
  turns out to be a worker itself: detected *as the parent* (same memory, so
  the same answer the parent would get).

What the worker holds is read from outside (its descriptors name its
``slots.lock``, ``/proc/locks`` lists its locks there: ``_slots.holding_of``),
not passed in the environment: ``setenv`` in a threaded server is not safe,
and spawned children run no Python at-fork handlers
(``_posixsubprocess.fork_exec`` runs them only with ``preexec_fn``).
"""

from __future__ import annotations

import dataclasses
import os
import sys

from . import _procfs, _slots, loaders
from ._config import Settings
from .loaders import _cmdline


@dataclasses.dataclass(frozen=True)
class Finding:
    """This process is a helper of ``worker``."""

    worker: int
    #: what the worker holds; ``None``: it has no worker ID yet
    holding: _slots.Holding | None
    #: the worker's detection (when found by detecting as the parent)
    det: loaders.Detected | None


def find(settings: Settings, forked_from: int | None, *, for_child: bool = False) -> Finding | None:
    """``forked_from``: the parent recorded at fork when it had not asked workerid yet.

    ``for_child``: asked by a process about to fork, for the child it forks now
    (work done once in the master, ``_identity._premake``): this process stands
    for the child (same memory, executable and command line at the fork) and is
    the parent. An answer that hangs on what the parent may still do after the
    fork (ask for an ID itself) is given as a :class:`Finding`, "not known to be
    a worker": the child then finds out for itself on its first call.
    """
    ppid = os.getpid() if for_child else os.getppid()
    grand = _procfs.parent_pid(ppid) or 0
    explicit_ns = "namespace" in settings.origin
    mp = sys.modules.get("multiprocessing")
    parent = mp.parent_process() if mp is not None else None
    if (
        parent is not None
        and parent.pid
        and not loaders.spawns_its_workers(loaders.detect(explicit_namespace=explicit_ns))
    ):
        holding = _slots.holding_of(parent.pid)
        if holding is not None:
            return Finding(parent.pid, holding, None)
    if not _forked_from_parent(ppid, grand, forked_from, ppid if for_child else os.getpid()):
        return None
    inherited_mp = parent is not None and parent.pid == grand
    if not explicit_ns and not inherited_mp and not _cmdline.is_copy(ppid, grand):
        # The common case (a master that imported workerid before forking,
        # such as gunicorn's arbiter with the hook): a parent that is no copy
        # of its own parent and no spawned worker is the top of its tree, a
        # master, so this is a worker. Saves detecting a second time (about
        # half a millisecond of a fresh worker's first call, measured).
        return None
    with _cmdline.acting_as(ppid, grand):
        det = loaders.detect(explicit_namespace=explicit_ns)
    if det.supervisor_pid is None or not det.elects:
        return None  # the parent is a master or the whole server: this is a worker
    holding = _slots.holding_of(ppid)
    if holding is None and det.loader == "exec":
        # The parent was exec'd (a named namespace, a parent that is no copy of it:
        # loaders.generic) and forked this process before asking for an ID. That is
        # a pre-fork master started by a shell or a process manager (Celery's prefork
        # pool under supervisord, a custom server) at least as often as a worker
        # forking a helper early, and only the first reading keeps the server working:
        # taken as a helper, every worker of such a master had no ID, for good. So
        # this process is a worker of its own and elects; a helper forked that early
        # gets an ID of its own instead of None (distinct, never shared).
        # Before the fork this is not settled: a parent that asks after forking
        # holds an ID by the child's first call, and the child is its helper.
        return Finding(ppid, None, det) if for_child else None
    return Finding(ppid, holding, det)


def _forked_from_parent(ppid: int, grand: int, forked_from: int | None, me: int) -> bool:
    """Is this process a plain ``fork`` of its parent (same memory, no ``exec``)?

    Evidence: the at-fork record (workerid was imported before the fork); a
    multiprocessing state inherited from the parent (``parent_process()`` is
    our grandparent: we are a fork of a spawned worker); or three generations
    of one program (same executable and command line: parent, and
    grandparent). Not two: a mod_wsgi daemon is an exact copy of Apache's
    parent, forked in C, and a worker, not a helper.
    """
    if ppid <= 1 or grand <= 0:
        return False
    if forked_from == ppid:
        return True
    mp = sys.modules.get("multiprocessing")
    parent = mp.parent_process() if mp is not None else None
    if parent is not None and parent.pid == grand:
        return True
    return _cmdline.is_copy(me, ppid) and _cmdline.is_copy(ppid, grand)
