"""Scrape latency against recycled worker generations, PID keys against worker keys.

    python bench/prometheus_scrape.py [--generations 10,100,1000] [--workers 4]

For each number of generations G, a master forks 4 workers at a time and
replaces each one as it exits, until G workers have lived; each worker
increments a counter, observes a histogram and moves a ``livesum`` gauge, as
a request would, then exits (a recycled worker). Then the master scrapes the
directory with prometheus_client's ``MultiProcessCollector`` (what
``/metrics`` does) 15 times and reports the median. Both keyings run in one
invocation, each in a fresh interpreter (prometheus_client picks its value
class once per process): prometheus_client's own PID keys (with
``mark_process_dead`` for each exited worker, as its gunicorn recipe does)
and ``workerid.prometheus.install()``. The ratio of the two is the figure;
absolute times depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"

CHILD = """
import json, os, statistics, sys, time
keying, generations, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.environ["WORKERID_DIR"] = sys.argv[4]
if keying == "workerid":
    import workerid.prometheus
    workerid.prometheus.install()
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
REQUESTS = Counter("requests", "requests")
IN_PROGRESS = Gauge("in_progress", "in progress", multiprocess_mode="livesum")
LATENCY = Histogram("latency", "latency")

def work():
    for _ in range(20):
        with IN_PROGRESS.track_inprogress():
            REQUESTS.inc()
            LATENCY.observe(0.01)

def fork():
    pid = os.fork()
    if pid == 0:
        try:
            work()
        finally:
            os._exit(0)
    return pid

def inc_ns():
    # the hot path: one Counter.inc() in a worker, median of 5 rounds of 100,000
    rounds = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(100_000):
            REQUESTS.inc()
        rounds.append((time.perf_counter() - t) / 100_000 * 1e9)
    return statistics.median(rounds)

r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.write(w, str(inc_ns()).encode())
    os._exit(0)
os.waitpid(pid, 0)
inc = float(os.read(r, 100))
os.close(r)
os.close(w)
started = 0
live = set()
t0 = time.perf_counter()
while started < generations or live:
    while started < generations and len(live) < workers:
        live.add(fork())
        started += 1
    pid, _ = os.wait()
    live.discard(pid)
    if keying == "pid":
        mark_process_dead(pid)
recycle = time.perf_counter() - t0
registry = CollectorRegistry()
MultiProcessCollector(registry)
times = []
for _ in range(15):
    t = time.perf_counter()
    samples = [s for m in registry.collect() for s in m.samples]
    total = sum(s.value for s in samples if s.name == "requests_total")
    times.append(time.perf_counter() - t)
path = os.environ["PROMETHEUS_MULTIPROC_DIR"]
files = [f for f in os.listdir(path) if f.endswith(".db")]
print(json.dumps({"scrape_ms": statistics.median(times) * 1000, "files": len(files),
                  "bytes": sum(os.path.getsize(os.path.join(path, f)) for f in files),
                  "total": total - 500_000, "expected": generations * 20, "recycle_s": recycle,
                  "inc_ns": inc}))
"""


def run(keying: str, generations: int, workers: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="workerid-bench-") as tmp:
        metrics = Path(tmp) / "metrics"
        metrics.mkdir()
        env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(metrics))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH")) if p)
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                textwrap.dedent(CHILD),
                keying,
                str(generations),
                str(workers),
                str(Path(tmp) / "locks"),
            ],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--generations", default="10,100,1000")
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    print(f"{'generations':>11} {'keying':>8} {'files':>6} {'MiB':>7} {'scrape ms':>10} "
          f"{'counted':>9} {'inc() ns':>9}  scrape PID/workerid, inc() workerid/PID")  # fmt: skip
    for g in (int(x) for x in args.generations.split(",")):
        pid = run("pid", g, args.workers)
        wid = run("workerid", g, args.workers)
        for name, r in (("pid", pid), ("workerid", wid)):
            ok = "ok" if r["total"] == r["expected"] else f"LOST {r['expected'] - r['total']:.0f}"
            ratio = ""
            if name == "workerid":
                ratio = f"{pid['scrape_ms'] / wid['scrape_ms']:.1f}x, "
                ratio += f"{wid['inc_ns'] / pid['inc_ns']:.2f}x"
            print(f"{g:>11} {name:>8} {r['files']:>6.0f} {r['bytes'] / 2**20:>7.1f} "
                  f"{r['scrape_ms']:>10.2f} {ok:>9} {r['inc_ns']:>9.0f}  {ratio}")  # fmt: skip


if __name__ == "__main__":
    main()
