"""Recycling: workers replaced after a request limit get freed IDs, all in one run."""

from __future__ import annotations

import dataclasses
import time

from .. import checks, client, settle, traffic
from ..session import Session
from ._base import Scenario

#: requests per worker before it is recycled
RECYCLE_AFTER = 10


class Recycle(Scenario):
    label = "recycling"
    needs_server = False  # restarted here with the request limit set

    def run(self, s: Session) -> None:
        scenario = f"{self.label} ({s.server.recycle_option} {RECYCLE_AFTER})"
        s.server.stop()
        s.server.opts = dataclasses.replace(s.server.opts, max_requests=RECYCLE_AFTER)
        mark = s.ledger.mark()
        try:
            with s.sampler() as sampler:
                s.server.start()
                # Until workers have been replaced (uvicorn notices its limit on a tick).
                deadline = time.monotonic() + traffic.DRIVE_TIMEOUT
                while time.monotonic() < deadline:
                    client.hammer(s.server.port, s.n * RECYCLE_AFTER, s.n)
                    if len(s.ledger.workers_since(mark)) > 2 * s.n:
                        break
                cov = traffic.drive(s, scenario)
            settle.settled(s, scenario, cov, mark, seeds=1, start="new")
            rows = s.ledger.workers_since(mark)
            ids = [r.worker_id for r in rows]
            s.check(scenario, "every ID ever seen", checks.within(ids, s.n))
            s.check(scenario, "workers recycled", checks.recycled(len(rows), s.n))
            starts = [r.start_time for r in rows]
            s.check(scenario, "one start_time in the run", checks.one_value(starts))
            settle.unique(s, scenario, sampler)
        finally:
            s.server.stop()
            s.server.opts = dataclasses.replace(s.server.opts, max_requests=0)
