"""The scenarios of ``workerid verify``, one module each, run in :func:`ordered`'s order.

A scenario is a :class:`~._base.Scenario`: a label, ``needs_server`` (start
the server first if it is down) and ``run``. A new scenario is one module
here and one line in :func:`ordered`; what a settled run must show is in
:mod:`..settle`, the requests in :mod:`..traffic`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..report import Verdict
from ..servers import ServerError
from ..session import Session
from ._base import Scenario
from .cold_start import ColdStart
from .degraded import Degraded
from .kill9 import Kill9
from .recycle import Recycle
from .reload import Reload
from .restarts import Restarts


def ordered(*, restarts: int = 3, ro_dir: Path) -> list[Scenario]:
    """Every scenario, in the order they run on each server.

    The order matters: kill -9, restarts and reload work on the run cold start
    left; recycling and degraded restart the server with changed options and
    stop it, so they come last.
    """
    return [ColdStart(), Kill9(), Restarts(restarts), Reload(), Recycle(), Degraded(ro_dir)]


def run_all(s: Session, steps: Sequence[Scenario]) -> None:
    """Run ``steps`` in order; one that raises ``ServerError`` becomes a FAIL row.

    The next scenario still runs (started afresh if it needs a server), so one
    broken scenario does not hide the others' verdicts.
    """
    try:
        for step in steps:
            try:
                if step.needs_server and s.server.supervisor_pid() is None:
                    s.server.start()
                step.run(s)
            except ServerError as exc:
                verdict = Verdict("server starts and serves", str(exc), False)
                s.check(step.label, "server runs", verdict)
                s.server.stop()
    finally:
        s.server.stop()


__all__ = [
    "ColdStart",
    "Degraded",
    "Kill9",
    "Recycle",
    "Reload",
    "Restarts",
    "Scenario",
    "ordered",
    "run_all",
]
