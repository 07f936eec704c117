"""Start times under a wall clock that steps: real processes under libfaketime."""

from __future__ import annotations

import glob
import os
import signal
import time
from typing import Any

import pytest

# libfaketime itself, preloaded into the master (and so every worker), not the faketime
# wrapper: that one forks and waits, so the master would not be the process we signal
LIBFAKETIME = next(iter(glob.glob("/usr/lib/*/faketime/libfaketime.so.1")), None)
pytestmark = pytest.mark.skipif(LIBFAKETIME is None, reason="needs libfaketime (faketime)")

NS = {"WORKERID_NAMESPACE": "app"}


def _start_at(start_server: Any, offset: str, **env: str) -> Any:
    """A prefork server whose every process sees the clock moved by ``offset``."""
    assert LIBFAKETIME is not None
    return start_server(workers=2, LD_PRELOAD=LIBFAKETIME, FAKETIME=offset, **NS, **env)


def test_clock_stepped_back_an_hour_still_advances(start_server: Any) -> None:
    first = start_server(workers=2, **NS).identities()
    second = _start_at(start_server, "-1h").identities()
    assert len({i["start_time"] for i in second}) == 1
    assert second[0]["start_time"] > first[0]["start_time"]
    assert sorted(i["worker_id"] for i in first + second) == [1, 2, 3, 4]


def test_clock_stepped_back_two_days_keeps_the_live_run_and_trusts_no_far_future(
    start_server: Any,
) -> None:
    """Beyond a day back the floor is not obeyed (a start time is never far ahead of the
    clock), the new run's start time is still distinct, and the live run keeps its own."""
    # a run 30 s ahead first, so the live run's start time is the floor's + 1, not a value
    # its replacements could derive again from their supervisor's process start time
    early = _start_at(start_server, "+30s")
    early.identities()
    early.stop()
    live = start_server(workers=2, **NS)
    before = {i["worker_id"]: i for i in live.identities()}
    back = _start_at(start_server, "-2d").identities()
    starts = {i["start_time"] for i in back}
    assert len(starts) == 1
    (start,) = starts
    assert start != before[1]["start_time"]
    assert start <= time.time() - 86400, "handed a start time ahead of the process's clock"
    # the worker that recorded the run's entry says why it ignored the floor (the others
    # read the entry it wrote, from the unlocked fast path or while waiting on ledger.lock)
    reasons = [r for i in back for r in i["degraded"]]
    assert any("ahead of the clock" in r for r in reasons), reasons
    # every worker of the live run dead at once (the master paused, so none is respawned
    # meanwhile): only its ledger entry remembers its start time now
    os.kill(live.master["pid"], signal.SIGSTOP)
    try:
        for ident in before.values():
            live.kill9(ident["pid"])
    finally:
        os.kill(live.master["pid"], signal.SIGCONT)
    after = {i["worker_id"]: i for i in live.identities()}
    assert {i["pid"] for i in after.values()}.isdisjoint(i["pid"] for i in before.values())
    assert {i["start_time"] for i in after.values()} == {before[1]["start_time"]}, (
        "the live run's start time moved"
    )
    later = start_server(workers=2, **NS).identities()
    assert later[0]["start_time"] > before[1]["start_time"]
