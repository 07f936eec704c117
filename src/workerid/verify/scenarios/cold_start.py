"""Cold start: the first run (or a fresh one) elects exactly 1..N and runs once() once."""

from __future__ import annotations

from .. import settle, traffic
from ..session import Session
from ._base import Scenario


class ColdStart(Scenario):
    label = "cold start"
    needs_server = False  # starting it is the scenario

    def run(self, s: Session) -> None:
        mark = s.ledger.mark()
        with s.sampler() as sampler:
            s.server.start()
            for check, verdict in s.server.started_checks():
                s.check(self.label, check, verdict)
            cov = traffic.drive(s, self.label)
        # Nothing to compare with before the session's first run.
        start: settle.Start = "new" if s.start is not None else "any"
        settle.settled(s, self.label, cov, mark, seeds=1, start=start)
        settle.unique(s, self.label, sampler)
