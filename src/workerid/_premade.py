"""Work done once in a pre-fork master, before the fork, for the child (issue 14).

What a forked worker's first call would compute before its election (settings,
the helper check, detection, the run key, the run's ledger entry) does not
depend on the child, so the master's before-fork handler makes it
(``_identity._premake``) and the child uses it only if every input it was made
from is still what the child would read (:func:`stale`). This module holds
that record and the inputs' readers; ``_identity`` makes and takes it, under
its lock. Nothing here writes, creates, locks or claims anything.
docs/design.md, "Work done once in the master", says why each input is one.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import TYPE_CHECKING, Any, NamedTuple

from . import _layout, _procfs, loaders

if TYPE_CHECKING:
    from ._config import Settings
    from ._identity import _Plan

#: modules whose presence detection looks at (loaders, the helper check)
DETECTING = ("uwsgi", "mod_wsgi", "gunicorn", "uvicorn", "hypercorn", "multiprocessing")


@dataclasses.dataclass
class Premade:
    """What a child forked now computes before its election, and what that rests on.

    Made by the forking process in its before-fork handler, reading only:
    nothing is created, written, locked or claimed, so a fork that fails or a
    daemonising fork leaves nothing behind. Used at most once, by the child's
    first call, and only if each input below is still what the child would
    read then (:func:`_identity._take_premade`); otherwise the child runs the whole
    pipeline, as it would had its parent never imported workerid.
    """

    #: the forking process: the child's parent (``getppid()``) while it lives
    master: int
    #: what the child records as ``_proc.forked_from``
    forked_from: int | None
    #: ``configure()``'s settings (compared by identity: each call makes new ones)
    explicit: Settings
    #: the whole environment (``os.environ``'s own mapping, copied)
    environ: dict[Any, Any]
    #: real, effective and saved user and group IDs
    ids: tuple[tuple[int, int, int], tuple[int, int, int]]
    #: what detection reads from this process's memory (:func:`module_inputs`)
    modules: ModuleInputs
    #: the PID namespace the run key was made with
    pidns: int | None
    #: the master's command line: the child's own too, at the fork
    cmdline: bytes | None
    #: the child's own command line is an input (generic detection, helper check)
    own_cmdline: bool
    settings: Settings
    plan: _Plan
    #: ``ledger.json``'s identity when the run's entry was read in it, and that start time
    ledger: tuple[int, ...] | None
    start: int | None


class ModuleInputs(NamedTuple):
    """What detection reads from this process's memory rather than from ``/proc``."""

    #: ``sys.modules[name]`` (or ``None``) for each of :data:`DETECTING`: which loader
    loaded: tuple[object, ...]
    #: ``multiprocessing.parent_process()``: the helper check looks at that process
    mp_parent: object
    #: the count a gunicorn ``post_fork`` hook published (in the worker, after the fork)
    published: int | None


def module_inputs() -> ModuleInputs:
    """The :class:`ModuleInputs` of this process, now."""
    modules = sys.modules
    mp = modules.get("multiprocessing")
    return ModuleInputs(
        tuple(modules.get(name) for name in DETECTING),
        mp.parent_process() if mp is not None else None,
        loaders.gunicorn.published_count,
    )


def environ() -> dict[Any, Any]:
    """The environment as compared: ``os.environ``'s own dict of bytes (a C-level
    comparison of the very objects the child inherited), else a copy. The live
    dict: a :class:`Premade` keeps a copy of it."""
    data = getattr(os.environ, "_data", None)
    return data if type(data) is dict else dict(os.environ)


def ids() -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    return os.getresuid(), os.getresgid()


def ledger_key(lock_dir: str) -> tuple[int, ...] | None:
    """``ledger.json``'s identity: it is only ever replaced whole (``rename``), so an
    unchanged identity is unchanged content."""
    try:
        st = os.lstat(os.path.join(lock_dir, _layout.LEDGER))
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def stale(pre: Premade, explicit: Settings, forked_from: int | None) -> str | None:
    """The first input of ``pre`` that is no longer what this process would read.

    ``explicit`` and ``forked_from``: this process's ``configure()`` settings and the
    parent it records (``_identity._proc``).
    """
    if os.getppid() != pre.master:
        # not the parent that made it: a daemonising fork's parent has exited,
        # or the child is in a new PID namespace (its parent is outside: 0)
        return "parent"
    if explicit is not pre.explicit or forked_from != pre.forked_from:
        return "configure"
    if ids() != pre.ids:
        return "ids"  # setuid: the default directory, the owner checks, the ledger's owner
    if _procfs.pid_namespace() != pre.pidns:
        return "pid namespace"  # the run key
    if environ() != pre.environ:
        return "environment"  # WORKERID_*, WEB_CONCURRENCY, TMPDIR, XDG_RUNTIME_DIR...
    if module_inputs() != pre.modules:
        return "modules"  # which loader; multiprocessing's parent; a published count
    if _procfs.raw_cmdline(pre.master) != pre.cmdline:
        return "parent's command line"  # the namespace, "is a copy of its parent"
    if pre.own_cmdline and _procfs.raw_cmdline("self") != pre.cmdline:
        return "command line"  # "is a copy of its parent" (generic detection)
    return None
