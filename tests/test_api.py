"""The public API as a specification: never raises, cached, thread-safe, once() semantics."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import workerid
from workerid import _identity


def test_public_names() -> None:
    assert set(workerid.__all__) >= {
        "worker_id",
        "worker_count",
        "start_time",
        "identity",
        "is_first_worker",
        "once",
        "configure",
        "Identity",
    }


def test_identity_is_frozen(fresh: Path) -> None:
    ident = workerid.identity()
    with pytest.raises(AttributeError):
        ident.worker_id = 9  # type: ignore[misc]


def test_first_call_decides_later_calls_are_cached(fresh: Path) -> None:
    first = workerid.identity()
    assert workerid.identity() is first
    assert workerid.worker_id() == first.worker_id
    assert workerid.is_first_worker() is (first.worker_id == 1)


def test_internal_error_becomes_none_with_a_reason(
    fresh: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(**_kwargs: object) -> None:
        raise RuntimeError("detector exploded")

    monkeypatch.setattr(_identity.loaders, "detect", boom)
    _identity._reset_for_tests()
    assert workerid.worker_id() is None
    assert workerid.start_time() is None
    assert "detector exploded" in workerid.identity().degraded[0]


def test_concurrent_first_calls_elect_once(fresh: Path) -> None:
    results: list[object] = []
    barrier = threading.Barrier(16)

    def call() -> None:
        barrier.wait()
        results.append(workerid.identity())

    threads = [threading.Thread(target=call) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(r) for r in results}) == 1


def test_once_runs_once_per_generation(fresh: Path) -> None:
    calls: list[int] = []

    @workerid.once("seed")
    def seed(value: int) -> int:
        calls.append(value)
        return value * 2

    assert seed(21) == 42
    assert seed(1) is None
    assert calls == [21]
    # Forget the in-process memo: the done-marker on disk still says "done in this run".
    _identity._reset_for_tests()
    assert seed(3) is None
    assert calls == [21]


def test_once_is_not_marked_done_when_it_raises(fresh: Path) -> None:
    attempts: list[int] = []

    @workerid.once("flaky")
    def flaky() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("first try fails")
        return "ok"

    with pytest.raises(RuntimeError):
        flaky()
    assert flaky() == "ok"
    assert flaky() is None
    assert len(attempts) == 2


def test_once_in_threads_runs_once(fresh: Path) -> None:
    calls: list[int] = []
    barrier = threading.Barrier(8)

    @workerid.once("threads")
    def init() -> None:
        calls.append(1)

    def call() -> None:
        barrier.wait()
        init()

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [1]


def test_once_with_odd_names(fresh: Path) -> None:
    """Names that are not plain file names are hashed, each into its own marker."""
    ran: list[str] = []
    names = ["../../etc/passwd", "with space", "ü", ".hidden", "plain-name_1.x"]
    for name in names:
        workerid.once(name)(lambda n=name: ran.append(n))()
    assert ran == names
    markers = sorted(p.name for p in fresh.rglob("once.*.json"))
    assert len(markers) == len(names)  # one marker each: no two names share a file
    hashed = [m for m in markers if m.startswith("once.h-")]
    assert len(hashed) == 4  # all but the plain one
    assert "once.plain-name_1.x.json" in markers
    assert all(p.parent.parent == fresh for p in fresh.rglob("once.*"))  # nothing escaped
    for name in names:  # and each is done now
        assert workerid.run_once(name, lambda: pytest.fail("ran twice")).state.value == "done"


def test_once_without_lock_dir_and_without_worker_id_runs_in_every_worker(
    fresh: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fresh.write_text("")  # a file where the directory should be
    calls: list[int] = []
    workerid.once("degraded")(lambda: calls.append(1))()
    assert calls == [1]
    assert any("every worker" in r.getMessage() for r in caplog.records)
