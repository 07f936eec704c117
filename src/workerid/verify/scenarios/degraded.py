"""Degraded: the lock directory exists but is root's, so the worker user cannot write to it.

workerid must say why and keep serving, never fail the worker.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from .. import checks, traffic
from ..session import Session
from ._base import Scenario


class Degraded(Scenario):
    label = "degraded lock dir"
    needs_server = False  # restarted here on the unwritable directory

    def __init__(self, ro_dir: Path) -> None:
        self.ro_dir = ro_dir

    def run(self, s: Session) -> None:
        scenario = self.label
        self.ro_dir.mkdir(mode=0o755, exist_ok=True)
        good = s.server.opts
        s.server.opts = dataclasses.replace(good, lock_dir=self.ro_dir)
        mark = s.ledger.mark()
        try:
            s.server.start()
            cov = traffic.drive(s, scenario)
            live = cov.live_answers()
            # uWSGI hands out its own worker IDs, lock directory or not.
            native = s.name == "uwsgi"
            ids = [a["worker_id"] for a in live]
            if native:
                s.check(scenario, "worker IDs (uWSGI's own)", checks.ids_exactly(ids, s.n))
            else:
                s.check(scenario, "worker IDs", checks.no_ids(ids))
            reasons = [a["degraded"] for a in live]
            s.check(scenario, "says why", checks.degraded_reason(reasons, "lock directory"))
            starts = [a["start_time"] for a in live]
            s.check(scenario, "one start_time", checks.one_value(starts))
            # Documented: without a lock dir once() runs in worker 1 only when IDs
            # exist, else in every worker.
            ran = s.ledger.seeds_since(mark)
            s.check(scenario, "seed (once) runs", checks.seed_runs(len(ran), 1 if native else s.n))
        finally:
            s.server.stop()
            s.server.opts = good
