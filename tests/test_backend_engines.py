"""Worker IDs across hosts on real engines: PostgreSQL 15 and etcd 3.4, started by the tests.

A "host" here is a pre-fork server (``helpers/backendserver.py``) with its own
lock directory (its own local ID space, as another machine has); its workers
reach the engine directly or through a TCP proxy on 127.0.0.1 that the test
can stop forwarding (a partition). A sampler thread reads every live worker's
report all along and records any moment two live workers answered one ID.

Leases are 3 s here (``?lease=3``): a silent worker stops answering 2.4 s
after its last answered beat, and the engine frees its ID 3 s after the last
beat it received.
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

from helpers import HERE, alive, env_for, read_json, stop_master, wait_for
from helpers.engines import ENGINES, Etcd, Postgres, Proxy, Sampler, start_engine

LEASE = 3.0
SERVER = str(HERE / "backendserver.py")


@pytest.fixture(scope="module", params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Iterator[Postgres | Etcd]:
    server = start_engine(request.param)
    yield server
    server.destroy()


class Host:
    """One simulated host: a lock directory and a pre-fork server of N workers."""

    def __init__(self, root: Path, name: str, url: str, workers: int, namespace: str) -> None:
        self.out = root / name
        self.out.mkdir(parents=True)
        env = env_for(root / f"{name}-locks", WORKERID_BACKEND=url, WORKERID_NAMESPACE=namespace)
        self.proc = subprocess.Popen(
            [sys.executable, SERVER, str(self.out), str(workers)], env=env, start_new_session=True
        )
        self.workers = workers

    def reports(self) -> list[dict[str, Any]]:
        found = []
        for path in self.out.glob("[0-9]*.json"):
            data = read_json(path)
            if data is not None and alive(data["pid"]):
                found.append(data)
        return found

    def settled(self, timeout: float = 20) -> list[dict[str, Any]]:
        """The live workers' reports once all N have an ID."""

        def check() -> list[dict[str, Any]] | None:
            got = self.reports()
            ok = len(got) == self.workers and all(r["worker_id"] is not None for r in got)
            return got if ok else None

        return wait_for(check, f"{self.workers} workers of {self.out.name} with IDs", timeout)

    def stop(self) -> None:
        stop_master(self.proc)


@pytest.fixture
def cluster(engine: Postgres | Etcd, tmp_path: Path) -> Iterator[Any]:
    namespace = f"t{uuid.uuid4().hex[:10]}"
    hosts: list[Host] = []
    proxies: list[Proxy] = []
    sampler = Sampler(hosts, interval=0.005, join=5)

    class Cluster:
        def __init__(self) -> None:
            self.engine = engine
            self.namespace = namespace
            self.sampler = sampler

        def host(self, name: str, workers: int = 4, *, proxy: Proxy | None = None) -> Host:
            port = proxy.port if proxy else engine.port
            host = Host(
                tmp_path, name, engine.url_via(port, lease=f"{LEASE:g}"), workers, namespace
            )
            hosts.append(host)
            return host

        def proxy(self) -> Proxy:
            proxy = Proxy(engine.port)
            proxies.append(proxy)
            return proxy

    sampler.start()
    try:
        yield Cluster()
    finally:
        sampler.stop()
        for host in hosts:
            host.stop()
        for proxy in proxies:
            proxy.close()
    assert not sampler.violations, sampler.violations
    assert sampler.samples > 10


def _ids(reports: list[dict[str, Any]]) -> list[int]:
    return sorted(r["worker_id"] for r in reports if r["worker_id"] is not None)


def test_workers_of_two_hosts_get_exactly_1_to_8(cluster: Any) -> None:
    a, b = cluster.host("a"), cluster.host("b")
    got = a.settled() + b.settled()
    assert _ids(got) == list(range(1, 9))
    assert all(
        r["worker_id_source"] == cluster.engine.__class__.__name__.lower()
        or r["worker_id_source"] in ("postgresql", "etcd")
        for r in got
    )
    assert all(isinstance(r["fencing_token"], int) and r["fencing_token"] > 0 for r in got)
    # the cluster's count (live claims), refreshed by the beats
    wait_for(
        lambda: all(r["worker_count"] == 8 for r in a.reports() + b.reports()),
        "every worker to count 8",
    )


def test_kill9_replacement_on_the_same_host_gets_the_same_id_at_once(cluster: Any) -> None:
    a, b = cluster.host("a"), cluster.host("b")
    a.settled()
    b.settled()
    victim = next(r for r in a.reports() if r["worker_id"] == max(_ids(a.reports())))
    os.kill(victim["pid"], signal.SIGKILL)
    killed = time.monotonic()

    def replacement() -> dict[str, Any] | None:
        return next(
            (
                r
                for r in a.reports()
                if r["pid"] != victim["pid"] and r["worker_id"] == victim["worker_id"]
            ),
            None,
        )

    new = wait_for(replacement, "the replacement to take the same ID", timeout=LEASE * 3)
    took = time.monotonic() - killed
    # no waiting for the lease: the local lock proved the predecessor dead
    assert took < LEASE * 0.8, took
    assert new["fencing_token"] > victim["fencing_token"]
    assert _ids(a.settled() + b.settled()) == list(range(1, 9))


def test_a_partitioned_host_stops_answering_and_its_ids_go_to_others(cluster: Any) -> None:
    proxy = cluster.proxy()
    a, b = cluster.host("a"), cluster.host("b", proxy=proxy)
    a.settled()
    before = {r["worker_id"]: r for r in b.settled()}
    proxy.partition()
    cut = time.monotonic()
    wait_for(
        lambda: all(r["worker_id"] is None for r in b.reports()) and len(b.reports()) == 4,
        "the cut-off host's workers to stop answering",
        timeout=LEASE * 2,
    )
    assert time.monotonic() - cut < LEASE, "stopped answering only after the lease"
    lost = b.reports()
    assert all(any("lost worker ID" in d for d in r["degraded"]) for r in lost), lost
    # once the engine has let the cut-off claims go, a new host takes them over
    time.sleep(max(0.0, cut + LEASE + 0.5 - time.monotonic()))
    c = cluster.host("c")
    after = {r["worker_id"]: r for r in c.settled(timeout=LEASE * 4)}
    assert sorted(after) == sorted(before)
    for wid, r in after.items():
        assert r["fencing_token"] > before[wid]["fencing_token"]
    proxy.heal()  # the cut-off host comes back: it claims what is free, 9..12
    got = b.settled(timeout=LEASE * 4)
    assert _ids(got) == list(range(9, 13))


def test_engine_restart_workers_claim_again_never_two_holders(cluster: Any) -> None:
    a, b = cluster.host("a"), cluster.host("b")
    a.settled()
    b.settled()
    cluster.engine.restart()
    got = wait_for(
        lambda: (
            (r := a.reports() + b.reports()) and len(r) == 8 and _ids(r) == list(range(1, 9)) and r
        ),
        "all 8 workers to hold IDs again after the restart",
        timeout=LEASE * 6,
    )
    assert len({r["pid"] for r in got}) == 8


def test_status_lists_the_holders(cluster: Any) -> None:
    a = cluster.host("a", workers=2)
    a.settled()
    out = subprocess.run(
        [sys.executable, "-m", "workerid", "status", "--backend", cluster.engine.url, "--json"],
        env=env_for("/nonexistent"),
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    rows = [h for h in report["holders"] if h["namespace"] == cluster.namespace]
    assert sorted(h["worker_id"] for h in rows) == [1, 2]
    assert {h["pid"] for h in rows} == {r["pid"] for r in a.reports()}
    assert all(h["host"] == os.uname().nodename for h in rows)
    text = subprocess.run(
        [sys.executable, "-m", "workerid", "status", "--backend", cluster.engine.url],
        env=env_for("/nonexistent"),
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert cluster.namespace in text.stdout and "worker   1" in text.stdout, text.stdout


def _sockets(pid: int) -> set[str]:
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            found.add(target)
    return found


def test_a_helper_reports_its_workers_cluster_id_and_keeps_no_connection(
    engine: Postgres | Etcd, tmp_path: Path
) -> None:
    """A process forked by a worker inherits its ID (``inherited``) but not its connection:
    one that kept the socket would keep a dead worker's PostgreSQL session, and its ID, alive."""
    out = tmp_path / "out"
    out.mkdir()
    env = env_for(
        tmp_path / "locks",
        WORKERID_BACKEND=engine.url_via(engine.port, lease=f"{LEASE:g}"),
        WORKERID_NAMESPACE=f"t{uuid.uuid4().hex[:10]}",
        PREFORK_HELPER="1",
    )
    proc = subprocess.Popen(
        [sys.executable, str(HERE.parent / "prefork.py"), str(out), "2"],
        env=env,
        start_new_session=True,
    )
    try:
        workers = wait_for(
            lambda: (
                (r := [d for p in out.glob("[0-9]*.json") if (d := read_json(p))])
                and len(r) == 2
                and r
            ),
            "two workers",
        )
        helpers = wait_for(
            lambda: (
                (r := [d for p in out.glob("helper-*.json") if (d := read_json(p))])
                and len(r) == 2
                and r
            ),
            "two helpers",
        )
        by_pid = {w["pid"]: w for w in workers}
        for worker in workers:
            helper = next(h for h in helpers if h["pid"] == worker["helper_pid"])
            assert helper["inherited"] is True
            assert helper["worker_id"] == worker["worker_id"] is not None
            assert helper["fencing_token"] == worker["fencing_token"]
            if isinstance(engine, Postgres):
                assert _sockets(worker["pid"]), "the worker holds its connection"
                assert not _sockets(helper["pid"]) & _sockets(worker["pid"])
        victim = min(workers, key=lambda w: w["worker_id"])
        os.kill(victim["pid"], signal.SIGKILL)
        new = wait_for(
            lambda: next(
                (
                    d
                    for p in out.glob("[0-9]*.json")
                    if (d := read_json(p))
                    and d["pid"] not in by_pid
                    and d["worker_id"] == victim["worker_id"]
                ),
                None,
            ),
            "the replacement to take the killed worker's ID",
            timeout=LEASE * 3,
        )
        assert new["fencing_token"] > victim["fencing_token"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        for helper in [d for p in out.glob("helper-*.json") if (d := read_json(p))]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(helper["pid"], signal.SIGKILL)
