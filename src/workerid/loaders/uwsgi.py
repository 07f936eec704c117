"""uWSGI: the one server that already tells its workers everything.

Its values are passed through untouched: ``uwsgi.worker_id()``,
``uwsgi.numproc``, and the start time from the ``start-time`` option (what
Neutron's docs set to ``%t``) or else ``uwsgi.started_on``. See
docs/design.md, "uWSGI", for where these come from in uWSGI's source.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from ._base import Detected
from ._cmdline import self_pid


def _start_time(mod: Any) -> int | None:
    opt = getattr(mod, "opt", None) or {}
    raw = opt.get("start-time") if hasattr(opt, "get") else None
    if isinstance(raw, list | tuple):  # an option given twice is a list
        raw = raw[-1] if raw else None
    if isinstance(raw, bytes):
        raw = raw.decode("ascii", "replace")
    for candidate in (raw, getattr(mod, "started_on", None)):
        try:
            value = int(str(candidate).strip())
        except (TypeError, ValueError):
            continue
        if value > 0:
            return value
    return None


def detect() -> Detected | None:
    # The module exists only inside uWSGI, whose Python plugin registers it as
    # a built-in (PyImport_AppendInittab) and imports it at start-up; looking
    # first avoids a failing import's walk over sys.path everywhere else.
    uwsgi: Any = sys.modules.get("uwsgi")
    if uwsgi is None:
        if "uwsgi" not in sys.builtin_module_names:
            return None
        try:
            uwsgi = importlib.import_module("uwsgi")
        except ImportError:
            return None
    try:
        wid = int(uwsgi.worker_id())
    except Exception:
        wid = 0
    try:
        numproc: int | None = int(uwsgi.numproc)
    except Exception:
        numproc = None
    try:
        master: int | None = int(uwsgi.masterpid()) or None
    except Exception:
        master = None
    start = _start_time(uwsgi)
    return Detected(
        loader="uwsgi",
        namespace="uwsgi",
        # Without a master (no --master) every worker's parent is the shell;
        # the start time still identifies the run.
        supervisor_pid=master if master and master != self_pid() else None,
        # 0 is the master, a mule or the spooler: not a worker.
        native_worker_id=wid if wid > 0 else None,
        elects=False,
        native_start_time=start,
        worker_count=numproc if numproc and numproc > 0 else None,
        worker_count_source="uwsgi" if numproc else None,
        run_extra=f"uwsgi-start={start}",
        # uWSGI forks workers in C and runs Python's at-fork handlers only
        # with --py-call-osafterfork (python_plugin.c, uwsgi_python_post_fork),
        # so whatever the master caches while loading apps (no lazy-apps)
        # would be inherited by every worker. Answer the master, cache nothing.
        cacheable=wid > 0,
    )
