"""once(name, scope="deploy"): once per deploy, on this host or across hosts.

Across hosts the engines are real (PostgreSQL 15 and etcd 3.4, started by the
tests on loopback); a "host" is a pre-fork master (``helpers/deployonce.py``)
with its own lock directory, whose workers each call
``run_once("migrate", fn, scope="deploy")``. ``fn`` appends to one shared log,
so the log counts how many times it really ran, whatever the workers say.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import workerid
from helpers import HERE, env_for, read_json, stop_master, wait_for
from helpers.engines import ENGINES, Etcd, Postgres, Proxy, start_engine
from helpers.serving import free_port
from workerid import OnceUnavailable, Outcome

SCRIPT = str(HERE / "deployonce.py")
LEASE = 3.0


class Host:
    """A master of ``workers`` workers with its own lock directory (another machine's)."""

    def __init__(self, root: Path, name: str, workers: int, **env: str) -> None:
        self.out = root / name
        self.out.mkdir(parents=True)
        self.workers = workers
        self.stderr = self.out / "stderr.log"
        with open(self.stderr, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, SCRIPT, str(self.out), str(workers)],
                env=env_for(root / f"{name}-locks", **env),
                stderr=err,
                start_new_session=True,
            )

    def reports(self) -> list[dict[str, Any]]:
        return [r for p in self.out.glob("[0-9]*.json") if (r := read_json(p)) is not None]

    def all_reported(self, timeout: float = 60) -> list[dict[str, Any]]:
        def check() -> list[dict[str, Any]] | None:
            got = self.reports()
            return got if len(got) == self.workers else None

        return wait_for(check, f"{self.workers} reports of {self.out.name}", timeout)

    def stop(self) -> None:
        stop_master(self.proc)


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[Any]:
    started: list[Host] = []

    def start(name: str, workers: int = 3, **env: str) -> Host:
        host = Host(tmp_path, name, workers, **env)
        started.append(host)
        return host

    yield start
    for host in started:
        host.stop()


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _outcomes(reports: list[dict[str, Any]]) -> list[str]:
    return sorted(r["outcome"] for r in reports)


# --- configuration -----------------------------------------------------------------


def test_a_deploy_scope_without_a_deploy_name_is_refused_plainly(fresh: Path) -> None:
    with pytest.raises(OnceUnavailable, match="WORKERID_DEPLOY"):
        workerid.run_once("migrate", lambda: None, scope="deploy")
    with pytest.raises(OnceUnavailable, match="configure\\(deploy="):
        workerid.once("migrate", scope="deploy")(lambda: None)()


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        ("", ValueError, "must not be empty"),
        ("  ", ValueError, "must not be empty"),
        ("v 1", ValueError, "without spaces"),
        ("x" * 129, ValueError, "at most 128"),
        ("a\x00b", ValueError, "printable"),
        (7, TypeError, "deploy must be a str"),
    ],
)
def test_configure_refuses_a_bad_deploy_name(
    fresh: Path, value: object, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        workerid.configure(deploy=value)  # type: ignore[arg-type]


def test_a_bad_workerid_deploy_is_ignored_and_said(
    fresh: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKERID_DEPLOY", "two words")
    workerid._identity._reset_for_tests()
    ident = workerid.identity()
    assert ident.deploy is None
    assert any("WORKERID_DEPLOY" in d for d in ident.degraded), ident.degraded


def test_the_deploy_is_on_the_identity(fresh: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKERID_DEPLOY", "2026.1-abc123")
    workerid._identity._reset_for_tests()
    assert workerid.identity().deploy == "2026.1-abc123"
    workerid.configure(deploy="r2")
    assert workerid.identity().deploy == "r2"
    with pytest.raises(ValueError, match="scope must be one of"):
        workerid.run_once("x", lambda: None, scope="fleet")  # type: ignore[arg-type]


# --- on one host (no backend): once per deploy, through restarts ---------------------


def test_without_a_backend_it_runs_once_per_deploy_on_this_host_not_once_per_run(
    hosts: Any, tmp_path: Path
) -> None:
    locks = tmp_path / "one-host"
    log = tmp_path / "log"
    env = {
        "DEPLOY_LOG": str(log),
        "DEPLOY_SLEEP": "0.5",
        "WORKERID_DIR": str(locks),
        "WORKERID_NAMESPACE": "app",  # the same server each time
    }
    # three server runs of one deploy (each master is a new run), then a new deploy
    for run, deploy in enumerate(["r1", "r1", "r1", "r2"]):
        host = hosts(f"run{run}", 3, WORKERID_DEPLOY=deploy, **env)
        reports = host.all_reported()
        host.stop()
        expected = ["done", "done", "ran"] if run in (0, 3) else ["done"] * 3
        assert _outcomes(reports) == expected, reports
        # nobody was told "done" before the run had ended
        assert all(r["lines"] and r["lines"][-1].startswith("end") for r in reports), reports
    assert [line.split()[0] for line in _lines(log)] == ["start", "end"] * 2


# --- across hosts, on real engines -----------------------------------------------------


@pytest.fixture(scope="module", params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Iterator[Postgres | Etcd]:
    server = start_engine(request.param)
    yield server
    server.destroy()


@pytest.fixture
def fleet(engine: Postgres | Etcd, hosts: Any, tmp_path: Path) -> Any:
    """Start hosts of one namespace and deploy on the engine."""
    namespace = f"t{uuid.uuid4().hex[:10]}"
    log = tmp_path / "log"

    def start(name: str, workers: int = 3, **env: str) -> Host:
        base = {
            "WORKERID_BACKEND": engine.url_via(engine.port, lease=f"{LEASE:g}"),
            "WORKERID_NAMESPACE": namespace,
            "WORKERID_DEPLOY": "2026.1-a1b2c3",
            "DEPLOY_LOG": str(log),
        }
        return hosts(name, workers, **{**base, **env})

    start.log = log  # type: ignore[attr-defined]
    start.namespace = namespace  # type: ignore[attr-defined]
    start.engine = engine  # type: ignore[attr-defined]
    return start


def test_three_hosts_run_it_exactly_once_and_nobody_proceeds_before_it_ends(fleet: Any) -> None:
    started = [fleet(f"h{i}", 3, DEPLOY_SLEEP="1.5") for i in range(3)]
    reports = [r for h in started for r in h.all_reported()]
    assert _outcomes(reports) == ["done"] * 8 + ["ran"], reports
    assert [line.split()[0] for line in _lines(fleet.log)] == ["start", "end"]
    for r in reports:
        assert r["lines"][-1].startswith("end"), r  # "done" only after it ended
    # a new server run of the same deploy on any host: done, not run again
    again = fleet("h0-restarted", 2)
    assert _outcomes(again.all_reported()) == ["done", "done"]
    # the next deploy runs it again, once
    nxt = [fleet(f"n{i}", 2, WORKERID_DEPLOY="2026.1-d4e5f6") for i in range(2)]
    assert _outcomes([r for h in nxt for r in h.all_reported()]) == ["done", "done", "done", "ran"]
    assert [line.split()[0] for line in _lines(fleet.log)] == ["start", "end"] * 2
    # workerid status --backend shows both deploys' results, and who ran them
    report = _status(fleet.engine.url, "--json")
    rows = {r["deploy"]: r for r in json.loads(report)["once"] if r["namespace"] == fleet.namespace}
    assert set(rows) == {"2026.1-a1b2c3", "2026.1-d4e5f6"}, rows
    runner = next(r["pid"] for r in reports if r["outcome"] == "ran")
    assert rows["2026.1-a1b2c3"]["state"] == "done" and rows["2026.1-a1b2c3"]["pid"] == runner
    assert rows["2026.1-a1b2c3"]["running"] is None
    text = _status(fleet.engine.url)
    assert f"{fleet.namespace}  deploy 2026.1-a1b2c3  migrate: done by pid {runner}" in text, text


def _status(url: str, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "workerid", "status", "--backend", url, *args],
        env=env_for("/nonexistent"),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.parametrize("forked", [False, True], ids=["plain", "runner-forked-a-child"])
def test_kill9_of_the_runner_lets_a_waiter_on_another_host_run_it(fleet: Any, forked: bool) -> None:
    """Also when the function forked a child that outlives the runner: the child
    must not keep the runner's connection (its PostgreSQL session, and the lock)."""
    first = fleet("a", 1, DEPLOY_SLEEP="60", DEPLOY_FORK="1" if forked else "0")
    wait_for(
        lambda: len(_lines(fleet.log)) >= (2 if forked else 1), "the first runner to start", 30
    )
    children = [int(x.split()[1]) for x in _lines(fleet.log) if x.startswith("child")]
    try:
        _kill9_hands_over(fleet, first)
    finally:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)


def _kill9_hands_over(fleet: Any, first: Host) -> None:
    waiters = fleet("b", 2)
    time.sleep(1.0)  # they are waiting on the runner
    assert not waiters.reports()
    runner = int(_lines(fleet.log)[0].split()[1])
    os.kill(runner, signal.SIGKILL)
    killed = time.time()
    reports = waiters.all_reported(timeout=30)
    took = max(r["at"] for r in reports) - killed
    assert _outcomes(reports) == ["done", "ran"], reports
    starts = [line for line in _lines(fleet.log) if line.startswith("start")]
    assert len(starts) == 2 and starts[0] == f"start {runner}", starts
    row = next(
        r
        for r in json.loads(_status(fleet.engine.url, "--json"))["once"]
        if r["namespace"] == fleet.namespace
    )
    assert row["state"] == "done" and row["pid"] == int(starts[1].split()[1]), row
    # PostgreSQL: the session ends with the socket; etcd: the lease's TTL
    bound = 3.0 if isinstance(fleet.engine, Postgres) else LEASE + 3.0
    assert took < bound, took
    assert not first.reports()


def test_a_runner_cut_off_loses_its_run_lock_and_says_so(fleet: Any) -> None:
    """Not exactly-once across a partition (no engine can give that): the promise
    is that a cut-off runner does not block the deploy past the lease, and that
    it says plainly that another worker may have run it too."""
    engine = fleet.engine
    proxy = Proxy(engine.port)
    try:
        url = engine.url_via(proxy.port, lease=f"{LEASE:g}")
        cut = fleet("a", 1, DEPLOY_SLEEP="8", WORKERID_BACKEND=url)
        wait_for(lambda: _lines(fleet.log), "the first runner to start", 30)
        proxy.partition()
        partitioned = time.time()
        other = fleet("b", 2)
        reports = other.all_reported(timeout=30)
        assert _outcomes(reports) == ["done", "ran"], reports
        took = max(r["at"] for r in reports) - partitioned
        assert took < LEASE + 3.0, took
        mine = cut.all_reported(timeout=30)  # its function went on and returned
        assert mine[0]["outcome"] == "ran", mine
        said = cut.stderr.read_text()
        assert "lost its run lock while running" in said, said
        assert "another worker may" in said, said
        assert [x.split()[0] for x in _lines(fleet.log)].count("start") == 2
    finally:
        proxy.close()


def test_an_engine_restart_while_it_runs_is_waited_out_not_raised(fleet: Any) -> None:
    """The waiters lose the engine for a moment: they reconnect within their wait and
    never raise. PostgreSQL's restart ends the runner's session, so its lock goes and a
    waiter runs it too (said by the runner); etcd keeps the lease across its restart, so
    the first run stays the only one."""
    runner = fleet("a", 1, DEPLOY_SLEEP="4")
    wait_for(lambda: _lines(fleet.log), "the first runner to start", 30)
    waiters = fleet("b", 2)
    time.sleep(1.0)
    fleet.engine.restart()
    told = waiters.all_reported(timeout=60)
    ran = runner.all_reported(timeout=60)
    assert ran[0]["outcome"] == "ran", ran
    assert sorted({r["outcome"] for r in told}) <= ["done", "ran"], told
    starts = [x for x in _lines(fleet.log) if x.startswith("start")]
    if isinstance(fleet.engine, Postgres):  # the restart ended every session
        said = waiters.stderr.read_text()
        assert "lost the engine while waiting" in said, said
        assert len(starts) == 2, starts
        assert "another worker may" in runner.stderr.read_text()
    else:
        assert len(starts) == 1, starts
        assert _outcomes(told) == ["done", "done"], told


def test_a_failure_is_reported_to_its_waiters_and_a_later_call_tries_again(fleet: Any) -> None:
    runner = fleet("a", 1, DEPLOY_SLEEP="1.5", DEPLOY_FAIL="1")
    wait_for(lambda: _lines(fleet.log), "the first attempt to start", 30)
    waiters = fleet("b", 2)
    failed = runner.all_reported()
    assert failed[0]["outcome"] == "raised" and failed[0]["exc"] == "RuntimeError", failed
    told = waiters.all_reported()
    assert _outcomes(told) == ["failed", "failed"], told
    assert all("first attempt fails" in (r["error"] or "") for r in told), told
    assert "migrate: failed" in _status(fleet.engine.url)
    later = fleet("c", 2)
    assert _outcomes(later.all_reported()) == ["done", "ran"]
    assert len([x for x in _lines(fleet.log) if x.startswith("start")]) == 2


def test_an_unreachable_engine_raises_by_default_and_never_guesses(
    hosts: Any, tmp_path: Path, engine: Postgres | Etcd
) -> None:
    port = free_port()  # nothing listens there
    url = engine.url_via(port, lease=f"{LEASE:g}")
    log = tmp_path / "log"
    common = {"WORKERID_BACKEND": url, "WORKERID_DEPLOY": "r1", "DEPLOY_LOG": str(log)}
    default = hosts("default", 2, **common)
    skip = hosts("skip", 2, DEPLOY_DEGRADED="skip", **common)
    raised = default.all_reported()
    assert [r["outcome"] for r in raised] == ["raised", "raised"], raised
    assert all(r["exc"] == "OnceUnavailable" and "unavailable" in r["msg"] for r in raised)
    skipped = skip.all_reported()
    assert _outcomes(skipped) == ["degraded", "degraded"], skipped
    assert all(not r["ran"] and "skip" in r["detail"] for r in skipped)
    assert not log.exists()


def test_wait_done_reports_where_it_stands_without_running_it(
    fleet: Any, monkeypatch: pytest.MonkeyPatch, fresh: Path
) -> None:
    engine = fleet.engine
    monkeypatch.setenv("WORKERID_BACKEND", engine.url_via(engine.port, lease=f"{LEASE:g}"))
    monkeypatch.setenv("WORKERID_DEPLOY", f"r-{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("WORKERID_NAMESPACE", "app")  # this process and the one below
    workerid._identity._reset_for_tests()
    assert workerid.wait_done("migrate", timeout=1, scope="deploy").state is Outcome.NOT_RUN
    first = workerid.run_once("migrate", lambda: 42, scope="deploy")
    assert first.state is Outcome.RAN and first.value == 42
    assert workerid.run_once("migrate", lambda: 43, scope="deploy").state is Outcome.DONE
    # another process of the same deploy sees it done
    code = (
        "import workerid; print(workerid.wait_done('migrate', timeout=5, scope='deploy')"
        ".state.value)"
    )
    ours = {k: v for k, v in os.environ.items() if k.startswith("WORKERID_")}
    ours.pop("WORKERID_DIR")
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env_for(fresh / "other", **ours),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip().splitlines()[-1] == "done", out.stderr
