"""The backend seam without an engine: URLs, configuration, outages, the keeper's clock."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import workerid
import workerid._identity
from helpers import env_for
from workerid import backends
from workerid.backends import BackendError, Claim, ClaimLost, Engine, Me
from workerid.backends._keeper import Keeper, State


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://h/db", "unknown scheme mysql://"),
        ("127.0.0.1:2379", "unknown scheme"),
        ("postgresql://u:secret@h", "names no database"),
        ("postgresql:///db", "names no host"),
        ("etcd://h:2379/path", "has no path"),
        ("etcd://h:notaport", "not a valid URL"),
        ("etcd://h:2379?lease=abc", "lease= must be seconds"),
        ("etcd://h:2379?lease=0.5", "between 2 and 3600"),
    ],
)
def test_bad_urls_are_refused_with_a_reason(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        backends.parse(url)
    assert "secret" not in str(info.value)


def test_urls_parse_and_passwords_are_redacted() -> None:
    url = backends.parse("postgresql://app:s3cret@db.example:5433/ids?lease=4&sslmode=require")
    assert (url.engine, url.lease) == ("postgresql", 4.0)
    assert url.safe == "postgresql://app:***@db.example:5433/ids?lease=4&sslmode=require"
    assert (
        backends.without_lease(url) == "postgresql://app:s3cret@db.example:5433/ids?sslmode=require"
    )
    assert backends.parse("etcd://10.0.0.1:2379").engine == "etcd"
    assert backends.parse("postgres://h/db").lease == backends.DEFAULT_LEASE
    with pytest.raises(TypeError, match="backend must be a URL string"):
        backends.parse(5)


def test_configure_validates_the_backend(fresh: Path) -> None:
    with pytest.raises(ValueError, match="unknown scheme redis://"):
        workerid.configure(backend="redis://h")
    with pytest.raises(TypeError, match="on_change must be callable"):
        workerid.configure(on_change=3)  # type: ignore[arg-type]


def test_no_backend_changes_nothing(fresh: Path) -> None:
    ident = workerid.identity()
    assert ident.worker_id == 1 and ident.worker_id_source == "lock"
    assert ident.backend is None and ident.fencing_token is None


def test_the_core_does_not_load_the_backends_without_one(tmp_path: Path) -> None:
    code = (
        "import sys, workerid; workerid.worker_id(); "
        "print([m for m in sys.modules if m.startswith('workerid.backends') "
        "or m.split('.')[0] in ('psycopg', 'etcd3gw', 'requests', 'urllib')])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env_for(tmp_path / "locks"),
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "[]", out.stdout


def test_a_refused_env_backend_means_no_id_not_a_local_one(
    fresh: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKERID_BACKEND", "zookeeper://h:2181")
    workerid._identity._reset_for_tests()
    ident = workerid.identity()
    assert ident.worker_id is None
    assert any("WORKERID_BACKEND refused" in d for d in ident.degraded), ident.degraded


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("scheme", ["postgresql", "etcd"])
def test_an_unreachable_engine_gives_none_and_says_why(
    fresh: Path, monkeypatch: pytest.MonkeyPatch, scheme: str
) -> None:
    port = _closed_port()
    url = f"{scheme}://u@127.0.0.1:{port}" + ("/db" if scheme == "postgresql" else "")
    monkeypatch.setenv("WORKERID_BACKEND", url + "?lease=2")
    workerid._identity._reset_for_tests()
    started = time.monotonic()
    ident = workerid.identity()
    assert time.monotonic() - started < 5
    assert ident.worker_id is None and ident.backend is not None
    assert any("unavailable" in d and str(port) in d for d in ident.degraded), ident.degraded
    assert workerid.worker_id() is None


def test_a_missing_client_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import fails
    monkeypatch.delitem(sys.modules, "workerid.backends.postgresql", raising=False)
    with pytest.raises(BackendError, match=r"pip install 'workerid\[postgresql\]'"):
        backends.connect(backends.parse("postgresql://h/db"), timeout=1)


# --- the keeper, with an engine in memory --------------------------------------


class FakeEngine(Engine):
    """Claims from a shared table; ``blocked`` makes every call hang (a partition)."""

    name = "fake"

    def __init__(self, table: dict[int, int], me_id: list[int]) -> None:
        self.table = table
        self.held: int | None = None
        self.blocked = threading.Event()
        self.lost = False
        self.me_id = me_id

    def claim(self, me: Me, limit: int) -> Claim | None:
        for wid in range(1, limit + 1):
            if wid not in self.table:
                self.table[wid] = me.pid
                self.held = wid
                self.me_id[0] += 1
                return Claim(wid, self.me_id[0])
        return None

    def beat(self, timeout: float | None = None) -> int:
        if self.lost:
            raise ClaimLost("session ended by the server")
        if self.blocked.is_set():
            time.sleep(timeout or 0)
            raise BackendError("no answer")
        return len(self.table)

    def release(self) -> None:
        if self.held is not None:
            self.table.pop(self.held, None)
            self.held = None

    def holders(self, namespace: str | None) -> list[dict[str, Any]]:
        return []


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> list[FakeEngine]:
    table: dict[int, int] = {}
    counter = [0]
    made: list[FakeEngine] = []

    def connect(url: backends.BackendURL, *, timeout: float) -> FakeEngine:
        engine = FakeEngine(table, counter)
        made.append(engine)
        return engine

    monkeypatch.setattr("workerid.backends._keeper.connect", connect)
    return made


def _keeper(changes: list[State], count: int | None = None, lease: float = 2) -> Keeper:
    url = backends.parse(f"etcd://127.0.0.1:1?lease={lease:g}")
    me = Me(namespace="t", host="h", pid=os.getpid(), here="x", local=1)
    return Keeper(
        url,
        me,
        count=count,
        max_slots=8,
        settle_timeout=0.2,
        on_change=lambda _k, s: changes.append(s),
    )


def test_keeper_flips_before_the_lease_runs_out_when_the_engine_goes_silent(
    fake: list[FakeEngine],
) -> None:
    changes: list[State] = []
    keeper = _keeper(changes)
    assert keeper.first_claim().worker_id == 1
    keeper.start()
    try:
        time.sleep(0.5)
        cut = time.monotonic()
        fake[0].blocked.set()
        deadline = time.monotonic() + 3
        while not any(s.worker_id is None for s in changes) and time.monotonic() < deadline:
            time.sleep(0.01)
        flipped = time.monotonic() - cut
        lost = next(s for s in changes if s.worker_id is None)
        # the engine keeps it `lease` (2 s) after the last beat it *received*
        assert flipped < 2.0, flipped
        assert lost.reason is not None and "lost worker ID 1" in lost.reason
    finally:
        keeper.stop()


def test_keeper_flips_at_once_when_the_claim_is_gone_and_claims_again(
    fake: list[FakeEngine],
) -> None:
    changes: list[State] = []
    keeper = _keeper(changes)
    first = keeper.first_claim()
    keeper.start()
    try:
        fake[0].table[1] = 999  # somebody else's now (the server ended our session)
        fake[0].held = None
        fake[0].lost = True
        deadline = time.monotonic() + 3
        while not any(s.worker_id == 2 for s in changes) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [s.worker_id for s in changes][:2] == [None, 2], changes
        assert changes[1].token is not None and first.token is not None
        assert changes[1].token > first.token
    finally:
        keeper.stop()


def test_keeper_settles_then_overflows_when_the_count_is_full(fake: list[FakeEngine]) -> None:
    fake_table_owner = _keeper([], count=2)
    assert fake_table_owner.first_claim().worker_id == 1
    second = _keeper([], count=2)
    assert second.first_claim().worker_id == 2
    changes: list[State] = []
    third = _keeper(changes, count=2)
    started = time.monotonic()
    state = third.first_claim()
    assert time.monotonic() - started >= 0.2
    assert state.worker_id == 3
    assert state.reason is not None and "1..2 were all held" in state.reason


def test_hot_path_with_a_backend_is_a_cached_read(
    fresh: Path, monkeypatch: pytest.MonkeyPatch, fake: list[FakeEngine]
) -> None:
    monkeypatch.setenv("WORKERID_BACKEND", "etcd://127.0.0.1:1?lease=2")
    workerid._identity._reset_for_tests()
    seen: list[Any] = []
    workerid.configure(on_change=seen.append)
    assert workerid.worker_id() == 1
    ident = workerid.identity()
    assert ident.worker_id_source == "etcd" and ident.fencing_token == 1
    assert ident.worker_count == 1 and ident.worker_count_source == "etcd"
    assert workerid.identity() is ident  # no work, no copy
    fake[0].lost = True
    deadline = time.monotonic() + 3
    while workerid.worker_id() == 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen and seen[0].worker_id in (None, 2)
    assert workerid.identity().fencing_token != 1
    workerid._identity._reset_for_tests()
    assert not fake[0].table or all(e.held is None for e in fake)
