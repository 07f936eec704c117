"""Worker IDs and start times under every kind of supervisor: real processes, real SIGKILL.

The promises, whatever started the workers (a fork-without-exec master, one
that is PID 1 of its own PID namespace, a fork+exec process manager, a shell,
multiprocessing's spawn/forkserver/fork):

(a) within one lock dir and namespace no two live processes hold the same
    worker ID; where workerid cannot be sure, it answers ``worker_id`` None
    and says why in ``identity().degraded``, never a silent duplicate;
(b) every worker of one server run sees one start time for the run's life.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import (
    EXECSUPERVISOR,
    EXECWORKER,
    MPMASTER,
    PREFORK,
    alive,
    children_of,
    duplicates,
    env_for,
    kill_group,
    live_ids,
    ns_pids,
    read_json,
    reports,
    start,
    wait_dead,
    wait_for,
)

#: words of a degraded reason that would admit an ID is not to be trusted
_DOUBT = ("held by live", "took ", "duplicate", "unique", "worker_id is none", "not sure")


def _doubts(ident: dict[str, Any]) -> list[str]:
    return [r for r in ident["degraded"] if any(w in r.lower() for w in _DOUBT)]


def _assert_no_silent_duplicates(idents: list[dict[str, Any]]) -> None:
    """Promise (a): distinct IDs among the live; a None ID always says why."""
    dups = duplicates(idents)
    assert not dups, f"live processes share worker IDs {dups}; live (id, pid): {live_ids(idents)}"
    silent = [i["pid"] for i in idents if i["worker_id"] is None and not i["degraded"]]
    assert not silent, f"worker_id None without a reason in degraded: pids {silent}"


# --- 1. a fork-without-exec master that is PID 1 of a fresh PID namespace ------


class NsServer:
    """``unshare --pid --fork --mount-proc python tests/prefork.py OUT N``.

    The master is PID 1 of the new namespace; reports carry namespace PIDs,
    which :meth:`host_pid` maps to this test's PIDs (``NSpid`` in /proc).
    """

    def __init__(self, out: Path, workers: int, env: dict[str, str]) -> None:
        self.out = out
        self.workers = workers
        out.mkdir(parents=True, exist_ok=True)
        self.proc = start(
            [
                "unshare",
                "--pid",
                "--fork",
                "--mount-proc",
                sys.executable,
                PREFORK,
                str(out),
                str(workers),
            ],
            env,
        )
        self.init = wait_for(lambda: (children_of(self.proc.pid) or [None])[0], "namespace init")
        self.master = wait_for(lambda: read_json(out / "master.json"), "master.json")

    def host_pid(self, nspid: int) -> int | None:
        return ns_pids(self.init).get(nspid)

    def identities(self, expect: int | None = None, timeout: float = 15) -> list[dict[str, Any]]:
        expect = self.workers if expect is None else expect

        def live() -> list[dict[str, Any]] | None:
            pids = ns_pids(self.init)
            found = [r for r in reports(self.out) if r["pid"] in pids]
            return found if len(found) >= expect else None

        return sorted(
            wait_for(live, f"{expect} live workers", timeout),
            key=lambda d: (d["worker_id"] or 0, d["pid"]),
        )

    def kill9(self, nspid: int) -> None:
        host = self.host_pid(nspid)
        assert host is not None, f"namespace pid {nspid} is not alive"
        os.kill(host, signal.SIGKILL)
        wait_dead(host)
        (self.out / f"{nspid}.json").unlink(missing_ok=True)

    def stop(self) -> None:
        if alive(self.init):
            os.kill(self.init, signal.SIGTERM)
            with contextlib.suppress(AssertionError):
                wait_for(lambda: not alive(self.init), "namespace init to exit", 10)
        kill_group(self.proc)


@pytest.fixture
def ns_server(shared_tmp: Path, lock_dir: Path) -> Iterator[Any]:
    servers: list[NsServer] = []

    def make(workers: int = 4, **extra: str) -> NsServer:
        server = NsServer(shared_tmp / f"ns{len(servers)}", workers, env_for(lock_dir, **extra))
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def test_pid1_master_workers_get_exactly_1_to_n_and_one_start_time(ns_server: Any) -> None:
    """A pre-fork master that is PID 1 (a container's entry point) is still the supervisor.

    Its 4 forked workers get IDs exactly 1..4, one generation, one start time,
    and no doubt about their IDs; a worker killed with SIGKILL is replaced by
    one that takes the freed ID and the run's start time.
    """
    server = ns_server(workers=4)
    assert server.master["pid"] == 1
    idents = server.identities()
    got = [i["worker_id"] for i in idents]
    assert got == [1, 2, 3, 4], f"live (id, pid): {live_ids(idents)}"
    assert len({i["start_time"] for i in idents}) == 1, [i["start_time"] for i in idents]
    assert len({i["generation"] for i in idents}) == 1, [i["generation"] for i in idents]
    assert {i["supervisor_pid"] for i in idents} == {1}
    assert all(_doubts(i) == [] for i in idents), [i["degraded"] for i in idents]

    victim = next(i for i in idents if i["worker_id"] == 3)
    server.kill9(victim["pid"])
    after = server.identities()
    assert [i["worker_id"] for i in after] == [1, 2, 3, 4], f"live (id, pid): {live_ids(after)}"
    replacement = next(i for i in after if i["worker_id"] == 3)
    assert replacement["pid"] != victim["pid"]
    assert replacement["start_time"] == victim["start_time"]
    assert replacement["generation"] == victim["generation"]


def test_pid1_master_restarts_strictly_advance_the_start_time(ns_server: Any) -> None:
    """Each new PID-1 master (a container restart) is a new run with a later start time.

    PID 1 is the same number every time; the run must still be told apart.
    """
    starts = []
    for _ in range(4):  # a first run and 3 restarts
        server = ns_server(workers=2)
        idents = server.identities()
        assert [i["worker_id"] for i in idents] == [1, 2], f"live (id, pid): {live_ids(idents)}"
        assert len({i["start_time"] for i in idents}) == 1, [i["start_time"] for i in idents]
        starts.append(idents[0]["start_time"])
        server.stop()
    assert all(a < b for a, b in itertools.pairwise(starts)), f"start times per run: {starts}"


# --- 2. workers started by fork+exec under one parent ---------------------------


class ExecFleet:
    """N ``python execworker.py OUT`` processes under one parent (Popen, or ``sh -c``)."""

    def __init__(self, kind: str, out: Path, workers: int, env: dict[str, str]) -> None:
        self.out = out
        self.workers = workers
        out.mkdir(parents=True, exist_ok=True)
        if kind == "popen":
            argv = [sys.executable, EXECSUPERVISOR, str(out), str(workers)]
        else:
            script = 'i=0; while [ "$i" -lt "$1" ]; do "$2" "$3" "$4" & i=$((i+1)); done; wait'
            argv = ["sh", "-c", script, "sh", str(workers), sys.executable, EXECWORKER, str(out)]
        self.proc = start(argv, env)

    def identities(self, expect: int | None = None, timeout: float = 15) -> list[dict[str, Any]]:
        expect = self.workers if expect is None else expect

        def live() -> list[dict[str, Any]] | None:
            found = [r for r in reports(self.out) if alive(r["pid"])]
            return found if len(found) >= expect else None

        return sorted(
            wait_for(live, f"{expect} live workers", timeout),
            key=lambda d: (d["worker_id"] or 0, d["pid"]),
        )

    def stop(self) -> None:
        kill_group(self.proc)


@pytest.fixture
def exec_fleet(shared_tmp: Path, lock_dir: Path) -> Iterator[Any]:
    fleets: list[ExecFleet] = []

    def make(kind: str, workers: int = 8, **extra: str) -> ExecFleet:
        fleet = ExecFleet(
            kind, shared_tmp / f"fleet{len(fleets)}", workers, env_for(lock_dir, **extra)
        )
        fleets.append(fleet)
        return fleet

    yield make
    for fleet in fleets:
        fleet.stop()


@pytest.mark.parametrize("kind", ["popen", "sh"])
def test_exec_workers_with_explicit_namespace_are_one_run(exec_fleet: Any, kind: str) -> None:
    """fork+exec'd workers of one parent, with one WORKERID_NAMESPACE, are one server run.

    8 workers, WORKERID_COUNT=8: IDs exactly 1..8, one start time and one
    generation (the run is the parent's life).
    """
    fleet = exec_fleet(kind, WORKERID_NAMESPACE="fleet", WORKERID_COUNT="8")
    idents = fleet.identities()
    assert len({i["ppid"] for i in idents}) == 1, "the workers must share one parent"
    got = [i["worker_id"] for i in idents]
    assert got == list(range(1, 9)), f"live (id, pid): {live_ids(idents)}"
    assert len({i["start_time"] for i in idents}) == 1, [i["start_time"] for i in idents]
    assert len({i["generation"] for i in idents}) == 1, [i["generation"] for i in idents]
    assert all(_doubts(i) == [] for i in idents), [i["degraded"] for i in idents]


def test_exec_worker_replaced_by_its_supervisor_keeps_id_and_start_time(exec_fleet: Any) -> None:
    """A respawned fork+exec worker takes the freed ID and the run's start time."""
    fleet = exec_fleet("popen", WORKERID_NAMESPACE="fleet", WORKERID_COUNT="8")
    idents = fleet.identities()
    _assert_no_silent_duplicates(idents)
    victim = next((i for i in idents if i["worker_id"] == 5), None)
    assert victim is not None, f"no worker 5; live (id, pid): {live_ids(idents)}"
    os.kill(victim["pid"], signal.SIGKILL)
    wait_dead(victim["pid"])
    after = fleet.identities()
    _assert_no_silent_duplicates(after)
    replacement = next(i for i in after if i["pid"] not in {j["pid"] for j in idents})
    assert replacement["worker_id"] == 5, f"live (id, pid): {live_ids(after)}"
    assert replacement["start_time"] == victim["start_time"]


@pytest.mark.parametrize("kind", ["popen", "sh"])
def test_exec_workers_in_default_namespace_never_share_an_id(exec_fleet: Any, kind: str) -> None:
    """No explicit namespace or count: IDs may be anything, but never two live alike.

    (Start times may differ between these workers; their IDs may not collide,
    and a worker that cannot be sure says so and answers None.)
    """
    fleet = exec_fleet(kind)
    idents = fleet.identities()
    _assert_no_silent_duplicates(idents)


# --- 5. children of a worker ----------------------------------------------------


class MpServer:
    def __init__(self, out: Path, workers: int, mode: str, env: dict[str, str]) -> None:
        self.out = out
        self.workers = workers
        self.once_file = out / "once.txt"
        out.mkdir(parents=True, exist_ok=True)
        self.once_file.touch()
        self.proc = start(
            [sys.executable, MPMASTER, str(out), str(workers), mode, str(self.once_file)], env
        )
        wait_for(lambda: read_json(out / "master.json"), "master.json")

    def workers_alive(self, expect: int | None = None) -> list[dict[str, Any]]:
        expect = self.workers if expect is None else expect

        def live() -> list[dict[str, Any]] | None:
            found = [r for r in reports(self.out, "worker-*.json") if alive(r["pid"])]
            return found if len(found) >= expect else None

        return sorted(
            wait_for(live, f"{expect} live workers"), key=lambda d: (d["worker_id"] or 0, d["pid"])
        )

    def child(self, pid: int) -> dict[str, Any]:
        return wait_for(lambda: read_json(self.out / f"child-{pid}.json"), f"child {pid} report")

    def stop(self) -> None:
        kill_group(self.proc)


@pytest.mark.parametrize(
    "mode", ["spawn", "forkserver", "fork", "helper-worker-first", "helper-helper-first"]
)
def test_children_of_a_worker_inherit_its_identity_and_hold_no_slot(
    shared_tmp: Path, lock_dir: Path, mode: str
) -> None:
    """A worker's child (multiprocessing spawn/forkserver/fork, or a helper forked before
    the worker's first workerid call) reports the worker's ID, start time and generation
    with ``inherited=True``, holds no slot (the worker's replacement after SIGKILL takes
    the same ID while the child lives on), and ``once("x")`` runs once for the run.

    ``helper-helper-first``: the helper asks before its worker has any ID; it may then
    answer None with a reason, but never an ID of its own.
    """
    server = MpServer(shared_tmp / "mp", 2, mode, env_for(lock_dir, WORKERID_COUNT="2"))
    try:
        workers = server.workers_alive()
        assert [w["worker_id"] for w in workers] == [1, 2], f"workers: {live_ids(workers)}"
        children = {w["pid"]: server.child(w["child_pid"]) for w in workers}
        everyone = workers + list(children.values())
        _assert_no_silent_duplicates(
            [*workers, *(c for c in children.values() if not c["inherited"])]
        )
        for w in workers:
            c = children[w["pid"]]
            seen = (c["worker_id"], c["inherited"], c["start_time"], c["generation"])
            want = (w["worker_id"], True, w["start_time"], w["generation"])
            if mode == "helper-helper-first" and c["worker_id"] is None:
                assert c["degraded"], f"child {c['pid']}: None without a reason"
                assert c["start_time"] in (None, w["start_time"]) or c["degraded"]
                continue
            assert seen == want, (
                f"child {c['pid']} of worker {w['pid']} (id {w['worker_id']}): "
                f"(id, inherited, start, generation) {seen} != {want}; "
                f"all (id, pid): {live_ids(everyone)}"
            )

        victim = workers[0]
        child_pid = victim["child_pid"]
        os.kill(victim["pid"], signal.SIGKILL)
        wait_dead(victim["pid"])
        assert alive(child_pid), "the child must outlive its worker for this test"
        after = server.workers_alive()
        replacement = next(w for w in after if w["pid"] != workers[1]["pid"])
        assert replacement["worker_id"] == victim["worker_id"], (
            f"replacement of worker {victim['worker_id']} got {replacement['worker_id']} "
            f"while child {child_pid} lives; workers: {live_ids(after)}"
        )
        assert replacement["start_time"] == victim["start_time"]
        server.child(replacement["child_pid"])  # its child has called once() too
        runs = server.once_file.read_text().split()
        assert len(runs) == 1, f"once('x') ran in pids {runs}; workers {live_ids(after)}"
    finally:
        server.stop()
