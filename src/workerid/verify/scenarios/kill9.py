"""kill -9 of worker 1: its replacement gets the freed ID, in the same run."""

from __future__ import annotations

from .. import checks, client, settle, traffic
from ..report import Verdict
from ..session import Session
from ._base import Scenario


def _ids_by_pid(cov: client.Coverage) -> dict[int, int | None]:
    return {a["pid"]: a["worker_id"] for a in cov.live_answers()}


class Kill9(Scenario):
    label = "kill -9"
    needs_server = True

    def run(self, s: Session) -> None:
        # Who holds which ID before: the check is that only the victim's changes hands.
        before = _ids_by_pid(traffic.drive(s, self.label, record=False))
        victim = next((pid for pid, wid in before.items() if wid == 1), None)
        if victim is None:
            s.check(self.label, "worker 1 to kill", Verdict("a live worker 1", str(before), False))
            return
        mark = s.ledger.mark()
        with s.sampler() as sampler:
            s.server.kill9(victim)
            s.server.wait_workers(old=frozenset({victim}))
            cov = traffic.drive(s, self.label)
        verdict = checks.replacement_took_freed(before, _ids_by_pid(cov), victim)
        s.check(self.label, "freed ID reused", verdict)
        settle.settled(s, self.label, cov, mark, seeds=0, start="same")
        settle.unique(s, self.label, sampler)
