"""Unit tests of workerid verify's scenario plumbing: the registry, run_all, the ledger, settle.

No server runs here: a fake one records what it was asked to do, so the
order of scenarios, when a server is started for one, and how a failing one
is reported are checked on their own (tests/test_verify_servers.py runs them
for real).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from workerid.verify import records, settle
from workerid.verify.client import Coverage
from workerid.verify.report import Report
from workerid.verify.scenarios import Scenario, ordered, run_all
from workerid.verify.servers import Options, Server, ServerError
from workerid.verify.session import Session


class FakeServer(Server):
    name = "fake"
    reload_doc = "n/a"
    reload_new_generation = False
    recycle_option = "--max-requests"

    def __init__(self, opts: Options) -> None:
        super().__init__(opts, port=1)
        self.calls: list[str] = []
        self.running = False

    def start(self) -> None:
        self.calls.append("start")
        self.running = True

    def stop(self) -> None:
        self.calls.append("stop")
        self.running = False

    def reload(self) -> None:
        self.calls.append("reload")

    def supervisor_pid(self) -> int | None:
        return 1 if self.running else None

    @property
    def log_paths(self) -> list[Path]:
        return []

    def check_running(self) -> None:
        pass


@pytest.fixture
def session(tmp_path: Path) -> Session:
    opts = Options(2, tmp_path, tmp_path, tmp_path / "locks", tmp_path / "v.sqlite")
    conn = records.prepare(str(opts.db_path), os.getuid(), os.getgid())
    return Session(FakeServer(opts), Report(), records.Ledger(conn))


def test_ordered_keeps_the_labels_order_and_who_needs_a_server(tmp_path: Path) -> None:
    steps = ordered(restarts=2, ro_dir=tmp_path)
    assert [(s.label, s.needs_server) for s in steps] == [
        ("cold start", False),
        ("kill -9", True),
        ("restarts", True),
        ("graceful reload", True),
        ("recycling", False),
        ("degraded lock dir", False),
    ]


class Early(Scenario):
    """Starts nothing and fails: the server must not have been started for it."""

    label = "a"
    needs_server = False
    fail = True

    def __init__(self) -> None:
        self.saw_running: bool | None = None

    def run(self, s: Session) -> None:
        assert isinstance(s.server, FakeServer)
        self.saw_running = s.server.running
        if self.fail:
            raise ServerError("did not come up")


class Broken(Early):
    label = "b"
    needs_server = True


class After(Early):
    label = "c"
    needs_server = True
    fail = False


def test_run_all_starts_only_for_those_that_need_it_and_reports_a_failure(
    session: Session,
) -> None:
    early, broken, after = Early(), Broken(), After()
    run_all(session, [early, broken, after])
    assert early.saw_running is False  # not started for it
    assert broken.saw_running is True and after.saw_running is True
    rows = [(r.scenario, r.check, r.ok, r.observed) for r in session.report.rows]
    assert rows == [
        ("a", "server runs", False, "did not come up"),
        ("b", "server runs", False, "did not come up"),
    ]
    assert isinstance(session.server, FakeServer)
    # stopped after each failure, started again for the next, stopped at the end
    assert session.server.calls == ["stop", "start", "stop", "start", "stop"]


def test_ledger_marks_and_what_workers_said(session: Session) -> None:
    ledger = session.ledger
    mark = ledger.mark()
    records.record_worker(ledger.conn, _ident(7, 1), ticks=5)
    records.record_seed(ledger.conn, _ident(7, 1))
    assert ledger.said() == {(7, 5): 1}
    assert [r.pid for r in ledger.workers_since(mark)] == [7]
    assert len(ledger.seeds_since(mark)) == 1
    assert ledger.workers_since(ledger.mark()) == []


def _ident(pid: int, worker_id: int | None, start: int = 100) -> dict[str, Any]:
    return {
        "pid": pid,
        "worker_id": worker_id,
        "worker_count": 2,
        "start_time": start,
        "generation": "g",
        "loader": "generic",
        "degraded": (),
    }


def _coverage(*answers: dict[str, Any]) -> Coverage:
    return Coverage({a["pid"]: a for a in answers}, [a["pid"] for a in answers], 2, 0.1)


def test_settled_rows_and_the_start_time_it_keeps(session: Session) -> None:
    mark = session.ledger.mark()
    records.record_seed(session.ledger.conn, _ident(7, 1))
    session.start = 100
    cov = _coverage(_ident(7, 1, start=101), _ident(8, 2, start=101))
    settle.settled(session, "x", cov, mark, seeds=1, start="new")
    assert [(r.check, r.ok) for r in session.report.rows] == [
        ("worker IDs", True),
        ("worker_count", True),
        ("one start_time", True),
        ("start_time advances", True),
        ("degraded reasons", True),
        ("seed (once) runs", True),
    ]
    assert session.start == 101
    settle.settled(session, "y", cov, session.ledger.mark(), seeds=0, start="same")
    assert [r.check for r in session.report.rows if r.scenario == "y"][3] == "start_time kept"
    settle.settled(session, "z", cov, session.ledger.mark(), seeds=0, start="any")
    assert len([r for r in session.report.rows if r.scenario == "z"]) == 5
    assert session.report.ok


def test_record_errors_add_a_row_only_when_there_are_some(session: Session) -> None:
    settle.record_errors(session, "x", _coverage(_ident(7, 1)))
    assert session.report.rows == []
    settle.record_errors(session, "x", _coverage({**_ident(7, 1), "record_error": "locked"}))
    assert [(r.check, r.ok, r.observed) for r in session.report.rows] == [
        ("probe records", False, "locked")
    ]
