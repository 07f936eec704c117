"""Graceful reload under traffic: a new run or the same one, as the server defines it."""

from __future__ import annotations

from .. import settle, traffic
from ..session import Session
from ._base import Scenario


class Reload(Scenario):
    label = "graceful reload"
    needs_server = True

    def run(self, s: Session) -> None:
        s.report.notes[f"{s.name} reload"] = s.server.reload_doc
        mark = s.ledger.mark()
        with s.sampler() as sampler, traffic.background(s.server.port):
            s.server.reload()
            cov = traffic.drive(s, self.label)
        # Whether a reload is a new server run is the server's (servers/*.py say which).
        new = s.server.reload_new_generation
        settle.settled(
            s, self.label, cov, mark, seeds=1 if new else 0, start="new" if new else "same"
        )
        settle.unique(s, self.label, sampler)
