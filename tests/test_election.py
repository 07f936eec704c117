"""Worker IDs in real pre-fork servers: real fork, real SIGKILL, real record locks."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from helpers import alive, wait_for


def ids(idents: list[dict[str, Any]]) -> list[int]:
    return sorted(i["worker_id"] for i in idents)


def test_n_workers_elect_exactly_1_to_n(start_server: Any) -> None:
    server = start_server(workers=4)
    idents = server.identities()
    assert ids(idents) == [1, 2, 3, 4]
    assert {i["worker_id_source"] for i in idents} == {"lock"}
    assert len({i["start_time"] for i in idents}) == 1
    assert len({i["generation"] for i in idents}) == 1
    assert {i["supervisor_pid"] for i in idents} == {server.master["pid"]}
    assert all(i["degraded"] == [] for i in idents)


def test_worker_count_from_environment(start_server: Any) -> None:
    idents = start_server(workers=3, WORKERID_COUNT="3").identities()
    assert [(i["worker_count"], i["worker_count_source"]) for i in idents] == [(3, "env")] * 3


def test_sixteen_workers_elect_exactly_1_to_16(start_server: Any) -> None:
    assert ids(start_server(workers=16).identities()) == list(range(1, 17))


def test_kill9_replacement_gets_the_freed_id(start_server: Any) -> None:
    server = start_server(workers=4)
    before = {i["worker_id"]: i for i in server.identities()}
    victim = before[2]
    server.kill9(victim["pid"])
    after = {i["worker_id"]: i for i in server.identities()}
    assert sorted(after) == [1, 2, 3, 4]
    assert after[2]["pid"] != victim["pid"]
    for wid in (1, 3, 4):
        assert after[wid]["pid"] == before[wid]["pid"]
    assert after[2]["start_time"] == victim["start_time"]
    assert after[2]["generation"] == victim["generation"]


def test_helper_forked_by_a_worker_does_not_keep_the_slot(start_server: Any) -> None:
    server = start_server(workers=3, PREFORK_HELPER="1")
    before = {i["worker_id"]: i for i in server.identities()}
    victim = before[3]
    # the worker reports before its helper has (the helper is forked first, then writes)
    helper = wait_for(
        lambda: next((h for h in server.helpers() if h["pid"] == victim["helper_pid"]), None),
        "the helper's report",
    )
    # The helper reports its worker's values but holds nothing.
    assert helper["worker_id"] == 3
    assert helper["inherited"] is True
    server.kill9(victim["pid"])
    assert alive(victim["helper_pid"]), "the helper must outlive its worker for this test"
    after = {i["worker_id"]: i for i in server.identities()}
    assert sorted(after) == [1, 2, 3]
    assert after[3]["pid"] != victim["pid"]


def test_two_namespaces_do_not_interfere(start_server: Any) -> None:
    a = start_server(workers=3, WORKERID_NAMESPACE="alpha").identities()
    b = start_server(workers=3, WORKERID_NAMESPACE="beta").identities()
    assert ids(a) == ids(b) == [1, 2, 3]
    assert {i["namespace"] for i in a} == {"alpha"}
    assert {i["namespace"] for i in b} == {"beta"}


def test_two_programs_get_their_own_namespaces_and_each_gets_1_to_n(start_server: Any) -> None:
    a = start_server(workers=2).identities()
    b = start_server(workers=2).identities()  # another command line: another program
    assert ids(a) == ids(b) == [1, 2]
    assert a[0]["namespace"] != b[0]["namespace"]
    assert a[0]["generation"] != b[0]["generation"]


def test_two_servers_in_one_namespace_never_share_an_id(start_server: Any) -> None:
    """Promise (a): one namespace is one ID space, whichever run a process is in."""
    a = start_server(workers=2, WORKERID_NAMESPACE="shared").identities()
    b = start_server(workers=2, WORKERID_NAMESPACE="shared").identities()
    assert ids(a) == [1, 2]
    assert ids(b) == [3, 4]
    assert a[0]["generation"] != b[0]["generation"]
    assert b[0]["start_time"] > a[0]["start_time"]


def test_restarts_in_the_same_second_strictly_advance(start_server: Any) -> None:
    """Two runs whose masters started in the same second still get distinct, rising start
    times (Neutron compares them with !=). Retried until two restarts did fall in one
    second, so the test cannot pass without exercising that case."""
    from workerid import _procfs

    same_second = False
    starts: list[int] = []
    for _attempt in range(5):
        hints = []
        for _ in range(4):
            # one namespace: the restarts of one server (the fixture gives each
            # run its own output directory, so its own command line)
            server = start_server(workers=2, WORKERID_NAMESPACE="app")
            idents = server.identities()
            assert len({i["start_time"] for i in idents}) == 1
            starts.append(idents[0]["start_time"])
            hints.append(_procfs.start_time(server.master["pid"]))
            server.stop()
        if len(set(hints)) < len(hints):
            same_second = True
            break
    assert same_second, "no two restarts fell in one second: the case was not exercised"
    assert starts == sorted(set(starts)), starts


def test_new_run_waits_for_old_workers_to_exit_then_gets_1_to_n(start_server: Any) -> None:
    """A new run whose IDs are still held by an old run's workers waits (settle)."""
    env = {"WORKERID_NAMESPACE": "app", "WORKERID_COUNT": "3"}
    old = start_server(workers=3, **env)
    assert ids(old.identities()) == [1, 2, 3]
    new = start_server(workers=3, **env)  # old is still fully alive
    time.sleep(0.5)
    assert new.identities(expect=1, timeout=0.1) == []  # waiting, not sharing 1..3
    old.stop()
    after = new.identities()
    assert ids(after) == [1, 2, 3]
    assert all(i["degraded"] == [] for i in after)


def test_master_that_asked_first_gives_its_slot_to_the_workers(start_server: Any) -> None:
    server = start_server(workers=3, PREFORK_MASTER_FIRST="1")
    before = server._wait_file(server.out / "master-before.json")
    assert before["worker_id"] == 1  # a lone process is worker 1 of 1 ...
    assert ids(server.identities()) == [1, 2, 3]  # ... until it forks workers
    master = server.master["identity"]
    assert master["worker_id"] is None
    assert any("master" in reason for reason in master["degraded"])
    assert master["start_time"] == server.identities()[0]["start_time"]


def test_once_runs_in_exactly_one_worker_per_run(start_server: Any, shared_tmp: Path) -> None:
    seeds = shared_tmp / "seeds"
    seeds.touch(mode=0o666)
    first = start_server(workers=4, PREFORK_ONCE=str(seeds))
    first.identities()
    assert len(seeds.read_text().split()) == 1
    first.kill9(first.identities()[0]["pid"])  # a respawn is the same run
    first.identities()
    assert len(seeds.read_text().split()) == 1
    first.stop()
    second = start_server(workers=4, PREFORK_ONCE=str(seeds))
    second.identities()
    assert len(seeds.read_text().split()) == 2


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to start a root master")
def test_workers_that_drop_privileges_still_find_their_master(
    start_server: Any, lock_dir: Path
) -> None:
    """A root master's /proc/<pid>/exe is unreadable to its www-data workers."""
    lock_dir.mkdir(mode=0o700)
    os.chown(lock_dir, 65534, 65534)
    server = start_server(workers=3, PREFORK_WORKER_USER="nobody")
    idents = server.identities()
    assert ids(idents) == [1, 2, 3]
    assert {i["supervisor_pid"] for i in idents} == {server.master["pid"]}
    assert len({i["start_time"] for i in idents}) == 1


def test_master_gives_its_slot_back_before_the_fork_not_after(shared_tmp: Path) -> None:
    """A child that elects at once gets slot 1, however late its parent runs after fork().

    The script's own after-fork handler (registered before workerid's, so it runs first)
    keeps the parent busy for a while after each fork: if the master let go of slot 1 only
    after fork(), the child, electing meanwhile, would find it held and take 2.
    """
    script = textwrap.dedent(
        f"""
        import os, time
        os.register_at_fork(after_in_parent=lambda: time.sleep(0.5))
        os.environ["WORKERID_DIR"] = {str(shared_tmp / "locks")!r}
        import workerid
        assert workerid.worker_id() == 1  # a lone process is worker 1 of 1
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.write(w, str(workerid.worker_id()).encode())
            os._exit(0)
        os.waitpid(pid, 0)
        print(os.read(r, 16).decode(), workerid.worker_id())
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.split() == ["1", "None"]


def test_once_is_not_rerun_when_another_run_of_the_namespace_ran_it_since(
    start_server: Any, shared_tmp: Path
) -> None:
    """Two live runs of one namespace: neither makes the other's replacement seed again."""
    seeds = shared_tmp / "seeds"
    env = {"WORKERID_NAMESPACE": "shared", "PREFORK_ONCE": str(seeds)}
    first = start_server(workers=2, **env)
    victim = first.identities()[0]
    start_server(workers=2, **env).identities()
    assert len(seeds.read_text().split()) == 2  # once per run
    first.kill9(victim["pid"])
    replacement = first.identities()
    assert victim["pid"] not in {i["pid"] for i in replacement}
    assert len(seeds.read_text().split()) == 2, "the replacement ran once('seed') again"
