"""Full restarts under traffic: each a new run with a later start time, the last two in 1 s.

``count`` restarts, cycling through the server's restart kinds; when there
are at least two, the last two are timed to begin inside one second of the
server's own clock, because a start time that only advances by whole seconds
would tie there.
"""

from __future__ import annotations

from typing import Any

from .. import checks, procs, settle, traffic
from ..report import Verdict
from ..session import Session
from ._base import Scenario


def _server_started(answer: dict[str, Any] | None) -> int | None:
    value = (answer or {}).get("server_started")
    return int(value) if isinstance(value, int | float) else None


def one_restart(s: Session, scenario: str, kind: str) -> None:
    mark = s.ledger.mark()
    with s.sampler() as sampler, traffic.background(s.server.port):
        s.server.restart(kind)
        cov = traffic.drive(s, scenario)
    settle.settled(s, scenario, cov, mark, seeds=1, start="new")
    settle.unique(s, scenario, sampler)


def same_second_pair(s: Session, scenario: str, kind: str, attempts: int = 4) -> None:
    """Two restarts whose runs begin in one second of the server's own clock.

    Timed to begin just after that second ticks over, and retried until both
    runs land in one second (the report says whether they did).
    """
    for attempt in range(1, attempts + 1):
        phase = 0.0 if s.server.start_clock == "wall" else procs.procfs_second_phase()
        mark = s.ledger.mark()
        with s.sampler() as sampler:
            if kind == "stop+start":
                # The same restart, with its start timed: stop, wait, start.
                s.server.stop()
                procs.sleep_to_phase(phase)
                s.server.start()
            else:
                procs.sleep_to_phase(phase)
                s.server.restart(kind)
            first = traffic.first_answer(s.server.port)  # the first run must exist in the ledger
            s.server.restart(kind)
            cov = traffic.drive(s, scenario, record=False)
        live = cov.live_answers()
        started = (_server_started(first), _server_started(live[0] if live else None))
        same = started[0] is not None and started[0] == started[1]
        if same or attempt == attempts or s.server.native_start_time:
            break
    settle.answered(s, scenario, cov)
    first_start = (first or {}).get("start_time")
    s.check(scenario, "1st start_time advances", checks.strictly_greater(first_start, s.start))
    s.start = first_start if isinstance(first_start, int) else s.start
    if s.server.native_start_time:
        # uWSGI's own start time (whole seconds) is passed through untouched,
        # and its stop alone takes about a second: two runs cannot share one
        # second here, and if they could the value would be uWSGI's, not ours.
        s.report.notes[f"{s.name} same-second restarts"] = (
            f"runs began at {started[0]} and {started[1]} (uWSGI's own start-time, "
            "passed through; its SIGINT stop takes ~1 s, so two runs never share a second)"
        )
    else:
        s.check(
            scenario,
            "both runs began in 1 s",
            Verdict(
                "the server's own start seconds equal",
                f"{started[0]} and {started[1]} (attempt {attempt})",
                same,
            ),
        )
    settle.settled(s, scenario, cov, mark, seeds=2, start="new")
    settle.unique(s, scenario, sampler)


class Restarts(Scenario):
    label = "restarts"
    needs_server = True

    def __init__(self, count: int = 3) -> None:
        self.count = count

    def run(self, s: Session) -> None:
        kinds = s.server.restart_kinds()
        k = self.count
        single = k - 2 if k >= 2 else k
        for i in range(single):
            kind = kinds[i % len(kinds)]
            one_restart(s, f"restart {i + 1}/{k} ({kind})", kind)
        if k >= 2:
            kind = kinds[-1]
            same_second_pair(s, f"restart {k - 1}+{k}/{k} in 1 s ({kind})", kind)
