"""Three hosts on one machine, each a real ``gunicorn -w 4``, sharing one engine's ID space.

Each host is ``unshare --uts --pid --mount-proc``: its own host name, its own
PID namespace (gunicorn's arbiter is its PID 1), its own lock directory and
its own TCP proxy on 127.0.0.1 in front of the engine. All along, a sampler
checks that no two live workers (of any host) answer one worker ID.

The proof of issue 13: IDs exactly 1..12 across the three; ``kill -9`` of a
worker: its replacement gets the same ID without waiting for a lease; one
host's link cut: its workers stop answering within the lease, and when the
link is back they claim again with larger fencing tokens; the engine
restarted: 1..12 again, never two holders.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import HERE, children_of, env_for, ns_pids, read_json, wait_for
from helpers.engines import ENGINES, Etcd, Postgres, Proxy, Sampler, start_engine
from helpers.serving import free_port

LEASE = 3.0
BIN = Path(__import__("sys").executable).parent
UNSHARE = shutil.which("unshare")


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (unshare of UTS and PID namespaces)"
    if UNSHARE is None:
        return "needs unshare (util-linux)"
    if not (BIN / "gunicorn").exists():
        return "gunicorn not installed in this venv"
    return None


pytestmark = [
    pytest.mark.servers,
    pytest.mark.skipif(_missing() is not None, reason=_missing() or ""),
]


class Host:
    def __init__(self, root: Path, name: str, url: str, namespace: str) -> None:
        self.name = name
        self.out = root / "reports"
        self.out.mkdir(exist_ok=True)
        env = env_for(
            root / f"{name}-locks",
            WORKERID_BACKEND=url,
            WORKERID_NAMESPACE=namespace,
            BACKENDAPP_OUT=str(self.out),
        )
        port = free_port()
        script = (
            f"hostname {name} && exec {BIN / 'gunicorn'} -w 4 -b 127.0.0.1:{port} "
            f"--chdir {HERE} --graceful-timeout 1 backendapp:app"
        )
        self.proc = subprocess.Popen(
            [UNSHARE or "unshare", "--uts", "--pid", "--fork", "--mount-proc", "sh", "-c", script],
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=open(root / f"{name}.log", "wb"),  # noqa: SIM115
        )
        self.init = wait_for(lambda: (children_of(self.proc.pid) or [None])[0], f"{name}'s PID 1")

    def reports(self) -> list[dict[str, Any]]:
        """Reports of this host's live workers, each with its PID in the test's namespace."""
        pids = ns_pids(self.init)
        found = []
        for path in self.out.glob(f"{self.name}-*.json"):
            data = read_json(path)
            if data is None or data["pid"] not in pids or data["pid"] == 1:
                continue
            data["host_pid"] = pids[data["pid"]]
            found.append(data)
        return found

    def stop(self) -> None:
        try:
            os.kill(self.init, signal.SIGTERM)  # gunicorn's arbiter: stops its workers
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def _ids(reports: list[dict[str, Any]]) -> list[int]:
    return sorted(r["worker_id"] for r in reports if r["worker_id"] is not None)


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Iterator[Postgres | Etcd]:
    server = start_engine(request.param)
    yield server
    server.destroy()


def test_three_hosts_of_gunicorn_w4(engine: Postgres | Etcd, tmp_path: Path) -> None:
    namespace = f"h{uuid.uuid4().hex[:10]}"
    proxies = [Proxy(engine.port) for _ in range(3)]
    hosts: list[Host] = []
    sampler = Sampler(hosts, interval=0.01, join=10)
    sampler.start()
    try:
        for i, proxy in enumerate(proxies, 1):
            hosts.append(
                Host(
                    tmp_path, f"host{i}", engine.url_via(proxy.port, lease=f"{LEASE:g}"), namespace
                )
            )

        def all_held() -> list[dict[str, Any]] | None:
            live = [r for h in hosts for r in h.reports()]
            return live if len(live) == 12 and _ids(live) == list(range(1, 13)) else None

        live = wait_for(all_held, "IDs 1..12 across the three hosts", timeout=60)
        assert {r["host"] for r in live} == {"host1", "host2", "host3"}
        assert all(len(h.reports()) == 4 for h in hosts)

        # kill -9 of a worker: gunicorn's replacement gets the same ID at once
        victim = hosts[1].reports()[0]
        os.kill(victim["host_pid"], signal.SIGKILL)
        killed = time.monotonic()
        new = wait_for(
            lambda: next(
                (
                    r
                    for r in hosts[1].reports()
                    if r["worker_id"] == victim["worker_id"] and r["pid"] != victim["pid"]
                ),
                None,
            ),
            "the replacement to take the killed worker's ID",
            timeout=30,
        )
        assert time.monotonic() - killed < 15  # gunicorn respawns; the claim itself waits no lease
        assert new["fencing_token"] > victim["fencing_token"]

        # host3's link is cut: its workers stop answering within the lease
        before = {r["worker_id"]: r["fencing_token"] for r in hosts[2].reports()}
        proxies[2].partition()
        cut = time.monotonic()
        wait_for(
            lambda: all(r["worker_id"] is None for r in hosts[2].reports()),
            "host3's workers to stop answering",
            timeout=LEASE * 2,
        )
        assert time.monotonic() - cut < LEASE
        time.sleep(max(0.0, cut + LEASE + 0.5 - time.monotonic()))  # the engine let them go
        proxies[2].heal()
        again = wait_for(
            lambda: (r := hosts[2].reports()) and all(x["worker_id"] for x in r) and r,
            "host3's workers to claim again",
            timeout=LEASE * 4,
        )
        assert _ids(again) == sorted(before)
        for r in again:
            assert r["fencing_token"] > before[r["worker_id"]]

        # the engine restarts: all claim again, never two holders
        engine.restart()
        wait_for(all_held, "IDs 1..12 after the engine's restart", timeout=LEASE * 8)
    finally:
        sampler.stop()
        for host in hosts:
            host.stop()
        for proxy in proxies:
            proxy.close()
    assert not sampler.violations, sampler.violations
    assert sampler.samples > 20
