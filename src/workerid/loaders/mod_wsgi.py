"""Apache mod_wsgi, daemon and embedded mode.

mod_wsgi tells a process its group (``mod_wsgi.process_group``, empty in
embedded mode) and the group's size (``mod_wsgi.maximum_processes``), but no
ordinal and no start time. With server metrics on (``server-metrics=On`` on
``WSGIDaemonProcess`` in daemon mode, ``WSGIServerMetrics On`` in embedded
mode, ``--server-metrics`` for mod_wsgi-express: wsgi_metrics.c L2930-2936)
``mod_wsgi.server_metrics()`` exposes Apache's own scoreboard figures:

* ``restart_time`` changes on ``apachectl -k restart`` (SIGHUP) but not on
  ``-k graceful``: it marks a new server run;
* ``running_generation`` changes on both (a new set of workers; they elect
  in the namespace's one ID space, after the old ones are gone).

The Apache parent keeps its PID across both, so without metrics a hard
restart looks like the same run (see docs/design.md, "Apache restarts").
"""

from __future__ import annotations

import sys
from typing import Any

from .._config import safe_namespace
from ._base import Detected
from ._cmdline import parent_pid

METRICS_OFF = (
    "mod_wsgi: server metrics are off, so an 'apachectl -k restart' is not seen as a new "
    "server run (start_time stays); in daemon mode add 'server-metrics=On' to "
    "WSGIDaemonProcess (and 'WSGIServerMetrics On' for embedded mode); mod_wsgi-express: "
    "--server-metrics"
)


def _metrics(mod: Any) -> dict[str, Any] | None:
    fn = getattr(mod, "server_metrics", None)
    if fn is None:
        return None
    try:
        metrics = fn()
    except Exception:
        return None
    return metrics if isinstance(metrics, dict) else None


def detect() -> Detected | None:
    # Inside Apache the C extension registers itself as ``mod_wsgi``. The PyPI
    # package of the same name (mod_wsgi-express) is importable anywhere but
    # has no ``process_group``, so look only at what is already loaded.
    mod = sys.modules.get("mod_wsgi")
    if mod is None or not hasattr(mod, "process_group"):
        return None
    group = str(getattr(mod, "process_group", "") or "")
    namespace = "mod_wsgi." + (safe_namespace(group) if group else "embedded")
    try:
        count: int | None = int(mod.maximum_processes)
    except (AttributeError, TypeError, ValueError):
        count = None
    metrics = _metrics(mod)
    run_extra = ""
    start_hint: float | None = None
    notes: tuple[str, ...] = ()
    if metrics is not None and "restart_time" in metrics:
        start_hint = float(metrics["restart_time"])
        run_extra = f"restart_time={metrics['restart_time']!r}"
    else:
        notes = (METRICS_OFF,)
    return Detected(
        loader="mod_wsgi",
        namespace=namespace,
        # Daemon processes and embedded-mode children alike are forked by
        # Apache's root parent, whose life spans every restart.
        supervisor_pid=parent_pid(),
        worker_count=count if count and count > 0 else None,
        worker_count_source="mod_wsgi" if count else None,
        run_extra=run_extra,
        start_hint=start_hint,
        notes=notes,
    )
