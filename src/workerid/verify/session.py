"""One server's verify session: the state the scenarios share, nothing else.

The session outlives every scenario run on its server, so the start time of
the latest run can be compared with the next one; what scenarios *do* lives
in :mod:`.traffic` (requests), :mod:`.settle` (the rows a run gets) and
:mod:`.scenarios` (one module each).
"""

from __future__ import annotations

import dataclasses

from .records import Ledger
from .report import Report, Verdict
from .sampler import Sampler
from .servers import Server


@dataclasses.dataclass
class Session:
    server: Server
    report: Report
    ledger: Ledger
    #: the start time of the latest server run (None before the first one)
    start: int | None = None

    @property
    def name(self) -> str:
        return self.server.name

    @property
    def n(self) -> int:
        return self.server.opts.workers

    def check(self, scenario: str, check: str, verdict: Verdict) -> bool:
        """One report row for this server."""
        self.report.add(self.name, scenario, check, verdict)
        return verdict.ok

    def sampler(self) -> Sampler:
        # lock_dir is read at each sample: the degraded scenario swaps opts.
        return Sampler(self.server.worker_pids, lambda: self.server.opts.lock_dir, self.ledger.said)
