"""Where a request waits for another worker's seeding of the default segment ranges.

In-process, with fakes for ``once``: what ``_patches.await_seeding`` does in each state of the
seeding, that request threads wait once between them, and that the wrappers put the wait where
it belongs. The same with forked workers and stand-in Neutron modules is in
``tests/test_neutron_install.py``; real Neutron in ``tests/e2e`` and ``bench/neutron_startup.py``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from workerid import _once
from workerid.neutron import _patches

BUSY = _once.OnceResult(_patches.SEED_ONCE, _once.Outcome.BUSY, pid=4242)
DONE = _once.OnceResult(_patches.SEED_ONCE, _once.Outcome.DONE, waited=0.5)
NOT_RUN = _once.OnceResult(_patches.SEED_ONCE, _once.Outcome.NOT_RUN)
FAILED = _once.OnceResult(_patches.SEED_ONCE, _once.Outcome.FAILED, pid=4242, error="boom")
RAN = _once.OnceResult(_patches.SEED_ONCE, _once.Outcome.RAN, ran=True, waited=0.25)


class Fakes:
    """Records, in order, the once() calls made by await_seeding()."""

    def __init__(
        self, monkeypatch: pytest.MonkeyPatch, answers: list[Any], pause: float = 0.0
    ) -> None:
        self.events: list[tuple[str, Any]] = []
        self.answers = list(answers)

        def wait_done(name: str, timeout: float | None = None, **_: Any) -> Any:
            assert name == _patches.SEED_ONCE
            self.events.append(("wait_done", timeout))
            time.sleep(pause)
            return self.answers.pop(0)

        def run_once(name: str, fn: Callable[[], None], timeout: float | None = None) -> Any:
            self.events.append(("run_once", timeout))
            return RAN

        monkeypatch.setattr(_patches._once, "wait_done", wait_done)
        monkeypatch.setattr(_patches._once, "run_once", run_once)
        monkeypatch.setattr(_patches, "_pending", [lambda: None])
        monkeypatch.setattr(_patches, "seed_timeout", 90.0)

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.events]


def test_a_seeding_still_running_is_waited_for_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fakes = Fakes(monkeypatch, [DONE])
    caplog.set_level(logging.INFO, "workerid.neutron")
    _patches.await_seeding("a network create")
    assert fakes.events == [("wait_done", 90.0)]  # bounded by seed_timeout
    assert _patches._pending == []
    assert "a network create waited 0.50s for another worker's segment range seeding" in (
        caplog.text
    )
    _patches.await_seeding("a network create")  # done: later allocations never wait
    assert fakes.kinds() == ["wait_done"]


@pytest.mark.parametrize("outcome", [NOT_RUN, FAILED], ids=["died", "failed"])
def test_a_seeder_that_died_or_failed_is_replaced_by_this_worker(
    monkeypatch: pytest.MonkeyPatch, outcome: _once.OnceResult
) -> None:
    clock = iter([100.0, 103.0, 103.0])  # the wait "took" 3 s of the 90
    fakes = Fakes(monkeypatch, [outcome])
    monkeypatch.setattr(_patches.time, "monotonic", lambda: next(clock))
    _patches.await_seeding("a segment create")
    assert fakes.events == [("wait_done", 90.0), ("run_once", 87.0)]
    assert _patches._pending == []


def test_a_seeding_past_the_timeout_is_said_and_not_waited_for_again(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fakes = Fakes(monkeypatch, [BUSY])
    _patches.await_seeding("a network create")
    assert "were still being seeded after" in caplog.text
    assert "a network create goes on (it may get 503 NoNetworkAvailable" in caplog.text
    _patches.await_seeding("a network create")
    assert fakes.kinds() == ["wait_done"]


def test_nothing_pending_nothing_done(monkeypatch: pytest.MonkeyPatch) -> None:
    fakes = Fakes(monkeypatch, [])
    monkeypatch.setattr(_patches, "_pending", [])
    _patches.await_seeding("a network create")
    assert fakes.events == []


def test_request_threads_wait_once_between_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """mod_wsgi and uWSGI run several request threads per worker: one waits (and would seed if
    the seeder had died); the others wait for it, then find nothing pending."""
    fakes = Fakes(monkeypatch, [NOT_RUN], pause=0.2)
    returned: list[float] = []
    start = threading.Barrier(8)

    def request() -> None:
        start.wait()
        _patches.await_seeding("a network create")
        returned.append(time.monotonic())

    began = time.monotonic()
    threads = [threading.Thread(target=request) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert fakes.kinds() == ["wait_done", "run_once"]  # one wait, one seeding, for all eight
    assert len(returned) == 8
    assert all(t - began >= 0.2 for t in returned)  # none went on before it was settled


def test_the_wrappers_wait_before_or_after_the_original(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(_patches, "await_seeding", lambda where: calls.append(f"await {where}"))

    def original(x: int) -> int:
        calls.append("original")
        return x + 1

    assert _patches._awaiting(original, "here")(1) == 2
    assert _patches._awaiting(original, "there", after=True)(2) == 3
    assert calls == ["await here", "original", "original", "await there"]
    assert _patches._awaiting(original, "here").__wrapped__ is original  # type: ignore[attr-defined]


def test_a_neutron_without_the_entry_point_is_said_never_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Elsewhere:
        pass

    _patches._await_in(Elsewhere, "create_segment", "a segment create")
    assert not hasattr(Elsewhere, "create_segment")
    assert "this Neutron has no Elsewhere.create_segment; a segment create will not wait" in (
        caplog.text
    )
