"""The first-request warm-up a worker does while another worker seeds (``_patches``).

In-process, with fakes for ``once`` and for ``neutron.policy``: what ``wait_for_seeding`` does
in each state of the seeding, and that no warm-up step can break it. The same with forked
workers and stand-in Neutron modules is in ``tests/test_neutron_install.py``; real Neutron in
``tests/e2e`` and ``bench/neutron_startup.py``.
"""

from __future__ import annotations

import logging
import sys
import types
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from workerid import _once
from workerid.neutron import _patches

BUSY = _once.OnceResult(_patches.SEED_ONCE, _once.Outcome.BUSY, pid=4242)
DONE = _once.OnceResult(_patches.SEED_ONCE, _once.Outcome.DONE, waited=0.5)
NOT_RUN = _once.OnceResult(_patches.SEED_ONCE, _once.Outcome.NOT_RUN)
RAN = _once.OnceResult(_patches.SEED_ONCE, _once.Outcome.RAN, ran=True, waited=0.25)


class Fakes:
    """Records, in order, the once() calls and the warm-up steps of one wait_for_seeding()."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, answers: list[Any]) -> None:
        self.events: list[tuple[str, Any]] = []
        self.answers = list(answers)

        def wait_done(name: str, timeout: float | None = None, **_: Any) -> Any:
            assert name == _patches.SEED_ONCE
            self.events.append(("wait_done", timeout))
            return self.answers.pop(0)

        def run_once(name: str, fn: Callable[[], None], timeout: float | None = None) -> Any:
            self.events.append(("run_once", timeout))
            return RAN

        monkeypatch.setattr(_patches._once, "wait_done", wait_done)
        monkeypatch.setattr(_patches._once, "run_once", run_once)
        monkeypatch.setattr(
            _patches, "WARM_UPS", [("fake", lambda: self.events.append(("warm", None)))]
        )
        monkeypatch.setattr(_patches, "_pending", [lambda: None])

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.events]


@pytest.fixture(autouse=True)
def _enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_patches, "warm_up_enabled", True)


def test_still_seeding_warms_up_first_then_waits_for_what_is_left(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fakes = Fakes(monkeypatch, [BUSY, DONE])
    caplog.set_level(logging.INFO, "workerid.neutron")
    _patches.wait_for_seeding(90.0)
    assert fakes.kinds() == ["wait_done", "warm", "wait_done"]
    assert fakes.events[0][1] == 0  # only a look: the warm-up is not held up
    assert 89.0 < fakes.events[2][1] <= 90.0  # bounded by seed_timeout in all
    assert _patches._pending == []
    assert "waited 0.50s for another worker's segment range seeding" in caplog.text


def test_seeding_already_done_no_warm_up(monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing to wait for: the first request does its own warm-up, as without workerid.
    fakes = Fakes(monkeypatch, [DONE])
    _patches.wait_for_seeding(90.0)
    assert fakes.kinds() == ["wait_done"]


def test_seeder_died_seeds_here_at_once_without_warm_up(monkeypatch: pytest.MonkeyPatch) -> None:
    # The seeding is the critical path then: this worker starts it right away.
    fakes = Fakes(monkeypatch, [NOT_RUN])
    _patches.wait_for_seeding(90.0)
    assert fakes.kinds() == ["wait_done", "run_once"]
    assert 89.0 < fakes.events[1][1] <= 90.0


def test_warm_up_disabled_only_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    fakes = Fakes(monkeypatch, [BUSY, DONE])
    monkeypatch.setattr(_patches, "warm_up_enabled", False)
    _patches.wait_for_seeding(90.0)
    assert fakes.kinds() == ["wait_done", "wait_done"]


def test_the_warm_up_counts_against_the_seed_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    fakes = Fakes(monkeypatch, [BUSY, BUSY])
    clock = iter([100.0, 103.0, 103.0, 103.0, 103.0])  # the warm-up "takes" 3 s
    monkeypatch.setattr(_patches.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(_patches, "WARM_UPS", [])
    _patches.wait_for_seeding(5.0)
    assert fakes.events[1] == ("wait_done", 2.0)


def test_nothing_pending_nothing_done(monkeypatch: pytest.MonkeyPatch) -> None:
    fakes = Fakes(monkeypatch, [])
    monkeypatch.setattr(_patches, "_pending", [])
    _patches.wait_for_seeding(90.0)
    assert fakes.events == []


def test_a_failing_step_is_logged_and_the_others_still_run(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[str] = []

    def broken() -> None:
        ran.append("broken")
        raise RuntimeError("cannot read policy.yaml")

    monkeypatch.setattr(
        _patches, "WARM_UPS", [("broken", broken), ("fine", lambda: ran.append("fine"))]
    )
    caplog.set_level(logging.INFO, "workerid.neutron")
    assert _patches.warm_up() >= 0.0
    assert ran == ["broken", "fine"]
    assert (
        "warming up broken failed (RuntimeError: cannot read policy.yaml); "
        "the first request will do it" in caplog.text
    )
    assert "warmed up fine in" in caplog.text


def test_a_failing_warm_up_never_stops_the_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    fakes = Fakes(monkeypatch, [BUSY, DONE])

    def broken() -> None:
        raise ValueError("boom")

    monkeypatch.setattr(_patches, "WARM_UPS", [("broken", broken)])
    _patches.wait_for_seeding(90.0)
    assert fakes.kinds() == ["wait_done", "wait_done"]


# --- the policy step, against a stand-in neutron.policy -------------------------------------


class FakePolicy(types.ModuleType):
    """neutron/policy.py's shape: a module-level _ENFORCER, init() and reset() (L54-L87)."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__("neutron.policy")
        self._ENFORCER: object | None = None
        self.fail = fail
        self.calls: list[str] = []

    def init(self) -> None:
        self.calls.append("init")
        if not self._ENFORCER:
            self._ENFORCER = object()  # set before the rules load, as L76 does
            if self.fail:
                raise RuntimeError("bad rule")

    def reset(self) -> None:
        self.calls.append("reset")
        self._ENFORCER = None


@pytest.fixture
def fake_policy(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[bool], FakePolicy]]:
    def install(fail: bool = False) -> FakePolicy:
        mod = FakePolicy(fail)
        monkeypatch.setitem(sys.modules, "neutron", types.ModuleType("neutron"))
        monkeypatch.setitem(sys.modules, "neutron.policy", mod)
        return mod

    yield install


def test_policy_step_loads_the_rules_once(fake_policy: Callable[[bool], FakePolicy]) -> None:
    policy = fake_policy(False)
    _patches._warm_policy()
    assert policy._ENFORCER is not None
    assert policy.calls == ["init"]


def test_policy_step_that_fails_leaves_neutron_as_it_was(
    fake_policy: Callable[[bool], FakePolicy], caplog: pytest.LogCaptureFixture
) -> None:
    policy = fake_policy(True)
    caplog.set_level(logging.INFO, "workerid.neutron")
    _patches.warm_up()  # the default steps: the policy one
    # reset: the first request's init() starts afresh and meets the failure itself
    assert policy.calls == ["init", "reset"]
    assert policy._ENFORCER is None
    assert "warming up policy failed (RuntimeError: bad rule)" in caplog.text


def test_policy_step_without_neutron_policy_is_quiet(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "neutron", types.ModuleType("neutron"))
    monkeypatch.setitem(sys.modules, "neutron.policy", None)  # import raises ImportError
    caplog.set_level(logging.INFO, "workerid.neutron")
    _patches._warm_policy()
    assert "failed" not in caplog.text
