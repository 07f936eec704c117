"""Backends: election latency against the engine's round trip, 48 workers at once, hot path.

Run (as root: PostgreSQL runs as the postgres user):
``/opt/workerid/venv/bin/python bench/backend.py [N]`` (N workers, default 48).

For each engine (a real PostgreSQL 15 and etcd 3.4 started here on free
ports, as the tests do):

* ``rtt``: the engine's round trip, median of 200 (PostgreSQL ``SELECT 1`` on
  an open connection; etcd a one-key range over the gateway's kept-alive HTTP);
* ``election``: N processes forked by one master and released at once; each
  times its first ``worker_id()`` (local election + connect + claim + the first
  beat), and the IDs must be exactly 1..N;
* ``hot path``: ns per ``worker_id()`` after the first, with the backend set,
  vs without one, vs a function returning a cached int (same run, best of 7).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
import timeit
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent / "src"))

from helpers.engines import Etcd, Postgres  # noqa: E402

_CACHED = 3


def baseline() -> int | None:
    return _CACHED


def rtt_postgresql(url: str) -> float:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        times = []
        for _ in range(200):
            t = time.perf_counter()
            conn.execute("SELECT 1").fetchone()
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def rtt_etcd(port: int) -> float:
    import etcd3gw

    client = etcd3gw.Etcd3Client(host="127.0.0.1", port=port)
    client.get("bench-rtt")
    times = []
    for _ in range(200):
        t = time.perf_counter()
        client.get("bench-rtt")
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def election(url: str, n: int) -> tuple[list[float], list[int]]:
    """N forked workers released at once; (first-call seconds, IDs)."""
    lock_dir = tempfile.mkdtemp(prefix="workerid-bench-")
    # a namespace per run: the previous run's claims may still be held (an
    # etcd lease outlives a process that did not give it back, os._exit here)
    namespace = f"bench-{os.getpid()}-{time.monotonic_ns()}"
    env = {"WORKERID_DIR": lock_dir, "WORKERID_BACKEND": url, "WORKERID_NAMESPACE": namespace}
    go_r, go_w = os.pipe()
    out_r, out_w = os.pipe()
    pids = []
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            os.close(go_w)
            os.environ.update(env)
            os.read(go_r, 1)  # released at once
            import workerid

            t = time.perf_counter()
            wid = workerid.worker_id()
            took = time.perf_counter() - t
            os.write(out_w, (json.dumps([took, wid]) + "\n").encode())
            time.sleep(3)  # hold the ID while the others claim
            os._exit(0)
        pids.append(pid)
    os.close(go_r)
    os.close(out_w)
    time.sleep(0.5)  # all forked and waiting
    os.write(go_w, b"x" * n)
    os.close(go_w)
    data = b""
    while chunk := os.read(out_r, 65536):
        data += chunk
    for pid in pids:
        os.waitpid(pid, 0)
    rows = [json.loads(line) for line in data.decode().splitlines()]
    return [r[0] for r in rows], sorted(r[1] or 0 for r in rows)


def hot_path(url: str) -> tuple[float, float]:
    """ns per worker_id() without, then with the backend, alternating, in one fresh child."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        import workerid

        lock_dir = tempfile.mkdtemp(prefix="workerid-bench-")
        best = {"local": float("inf"), "backend": float("inf")}
        for _ in range(3):
            for kind in ("local", "backend"):
                os.environ["WORKERID_DIR"] = lock_dir
                if kind == "backend":
                    os.environ["WORKERID_BACKEND"] = url
                else:
                    os.environ.pop("WORKERID_BACKEND", None)
                workerid.configure(namespace=f"bench-hot-{os.getpid()}")
                assert workerid.worker_id() is not None, workerid.identity().degraded
                ident = workerid.identity()
                assert (ident.backend is not None) == (kind == "backend"), ident
                took = min(timeit.repeat(workerid.worker_id, number=1_000_000, repeat=3))
                best[kind] = min(best[kind], took * 1e3)
        os.write(w, json.dumps(best).encode())
        os._exit(0)
    os.close(w)
    got = json.loads(os.read(r, 1000).decode())
    os.waitpid(pid, 0)
    return got["local"], got["backend"]


def import_time(module: str) -> float:
    """Seconds to import ``module`` in a fresh fork of this (workerid-free) process."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        t = time.perf_counter()
        __import__(module)
        os.write(w, str(time.perf_counter() - t).encode())
        os._exit(0)
    os.close(w)
    value = float(os.read(r, 100).decode())
    os.waitpid(pid, 0)
    return value


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


MODULES = {Postgres: "workerid.backends.postgresql", Etcd: "workerid.backends.etcd"}
#: what "+pre" imports in the master before forking (not workerid: a process
#: that imported workerid before forking makes its children its helpers)
CLIENTS = {Postgres: "psycopg", Etcd: "etcd3gw"}


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [1, 8, 48]
    base_ns = min(timeit.repeat(baseline, number=1_000_000, repeat=7)) * 1e3
    print(f"hot path baseline (a function returning a cached int): {base_ns:.1f} ns")
    print()
    print(
        f"{'engine':>10} {'N':>3} {'rtt':>8} {'p50':>9} {'p99':>9} {'max':>9} {'p50/rtt':>8} "
        f"{'ids ok':>6} {'hot ns':>7} {'local':>6} {'ratio':>6}"
    )
    for make in (Postgres, Etcd):
        server = make()
        try:
            if isinstance(server, Postgres):
                rtt = rtt_postgresql(server.url)
            else:
                rtt = rtt_etcd(server.port)
            url = server.url_via(server.port, lease="10")
            local_ns, hot = hot_path(url)
            module = MODULES[make]
            print(f"{'':>10} first import of {module} (client): {import_time(module) * 1e3:.1f}ms")
            runs = [(n, False) for n in sizes] + [(max(sizes), True)]
            for n, preload in runs:
                if preload:  # as an app that imports the client before the fork
                    __import__(CLIENTS[make])
                times, ids = election(url, n)
                p50 = pct(times, 0.5)
                name = make.__name__.lower() + ("+pre" if preload else "")
                print(
                    f"{name:>10} {n:>3} {rtt * 1e6:>6.0f}µs {p50 * 1e3:>7.1f}ms "
                    f"{pct(times, 0.99) * 1e3:>7.1f}ms {max(times) * 1e3:>7.1f}ms "
                    f"{p50 / rtt:>7.0f}× {ids == list(range(1, n + 1))!s:>6} "
                    f"{hot:>7.1f} {local_ns:>6.1f} {hot / local_ns:>5.2f}×"
                )
        finally:
            server.destroy()


if __name__ == "__main__":
    main()
