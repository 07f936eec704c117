"""The rows a server run gets once it has settled, shared by every scenario.

Kept apart from the scenarios so that what "a good run" means (IDs 1..N,
one worker count, one start time that moved as expected, once() run the
right number of times) is said once; the judgement itself is in
:mod:`.checks`, on plain data.
"""

from __future__ import annotations

from typing import Literal

from . import checks
from .client import Coverage
from .records import Mark
from .report import Verdict
from .sampler import Sampler
from .session import Session

#: how the run's start time must relate to the previous run's ("any": no previous run)
Start = Literal["new", "same", "any"]


def answered(s: Session, scenario: str, cov: Coverage) -> None:
    s.check(scenario, "every worker answers", checks.answered(cov.live, cov.missing, s.n))


def record_errors(s: Session, scenario: str, cov: Coverage) -> None:
    """A row only when the probe could not write its record (else it would pass silently)."""
    errors = sorted({str(a["record_error"]) for a in cov.answers.values() if "record_error" in a})
    if errors:
        s.check(scenario, "probe records", Verdict("no record errors", "; ".join(errors), False))


def unique(s: Session, scenario: str, sampler: Sampler) -> None:
    s.check(scenario, "live IDs unique", sampler.verdict())


def settled(
    s: Session, scenario: str, cov: Coverage, mark: Mark, *, seeds: int, start: Start
) -> None:
    """IDs, count, one start time, its order against the last run, seed runs since ``mark``."""
    live = cov.live_answers()
    s.check(scenario, "worker IDs", checks.ids_exactly([a["worker_id"] for a in live], s.n))
    s.check(scenario, "worker_count", checks.all_equal([a["worker_count"] for a in live], s.n))
    starts = [a["start_time"] for a in live]
    s.check(scenario, "one start_time", checks.one_value(starts))
    current = starts[0] if len(set(starts)) == 1 else None
    if start == "new":
        s.check(scenario, "start_time advances", checks.strictly_greater(current, s.start))
    elif start == "same":
        s.check(scenario, "start_time kept", checks.unchanged(current, s.start))
    s.check(scenario, "degraded reasons", checks.no_degraded([a["degraded"] for a in live]))
    ran = s.ledger.seeds_since(mark)
    detail = ", ".join(f"pid {r.pid}" for r in ran)
    s.check(scenario, "seed (once) runs", checks.seed_runs(len(ran), seeds, detail))
    if current is not None:
        s.start = current
