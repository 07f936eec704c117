"""Where a fresh worker's first ``worker_id()`` spends its time, stage by stage (issue 14).

Run: ``python bench/first_call_stages.py [--samples N] [--src DIR]``.

A zygote started with its own command line (so it is the top of its tree, as a server's
master is) forks N workers one after another, each after the previous one has exited (so each
elects ID 1 of a run whose ledger entry exists: the first worker, which writes it, is left
out). In ``import in master`` the zygote imported workerid before forking (gunicorn
``--preload``, uWSGI without lazy-apps); in ``import after fork`` each worker imports it
itself. Each worker wraps the pipeline's stages (``_identity._build``) with its CPU clock
(``time.process_time_ns``: what the call costs this process, whatever the cores are doing)
and reports their medians. The wrappers cost about 1 µs each; ``rest`` is the first call
minus the stages (settings, identity, logging of ``degraded``, caching).

Stages, and which of them work done once in the master (issue 14) could spare a worker:

* ``helper?`` (``_helpers.find``: is the parent a worker?), ``plan`` (loader detection,
  the run key) and ``ledger`` (the run's start time): per run, not per worker; these are
  what the master could compute before the fork, if the worker can prove it still valid;
* ``dirs`` (``ensure_dir`` of the lock and namespace directories), ``open`` (``slots.lock``)
  and ``elect`` (the lock loop): per worker.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
STAGES = (
    ("_helpers", "find", "helper?"),
    ("_identity", "_plan", "plan"),
    ("_statefile", "ensure_dir", "dirs"),
    ("_slots", "open_slots", "open"),
    ("_identity", "_record", "ledger"),
    ("_identity", "_elect", "elect"),
)


def _worker(report: int) -> None:
    import importlib

    import workerid

    clock = time.process_time_ns
    spent: dict[str, int] = {}
    for module, name, label in STAGES:
        mod = importlib.import_module(f"workerid.{module}")
        real = getattr(mod, name)

        def timed(*args: object, _real: object = real, _label: str = label, **kw: object) -> object:
            t = clock()
            try:
                return _real(*args, **kw)  # type: ignore[operator]
            finally:
                spent[_label] = spent.get(_label, 0) + clock() - t

        setattr(mod, name, timed)
    t = clock()
    workerid.worker_id()
    spent["total"] = clock() - t
    spent["rest"] = spent["total"] - sum(v for k, v in spent.items() if k != "total")
    os.write(report, json.dumps(spent).encode())


def zygote(shape: str, samples: int) -> None:
    if shape == "master":
        import workerid  # noqa: F401

    found: list[dict[str, int]] = []
    for _ in range(samples + 1):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(r)
                _worker(w)
            finally:
                os._exit(0)
        os.close(w)
        data = os.read(r, 65536)
        os.close(r)
        os.waitpid(pid, 0)
        found.append(json.loads(data))
    print(json.dumps(found[1:]))  # the first wrote the run's ledger entry


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=60)
    parser.add_argument("--src", default=os.path.join(os.path.dirname(HERE), "src"))
    parser.add_argument("--zygote", choices=("master", "after-fork"))
    args = parser.parse_args()
    if args.zygote:
        zygote(args.zygote, args.samples)
        return
    shapes = {"import in master": "master", "import after fork": "after-fork"}
    results: dict[str, list[dict[str, int]]] = {}
    with tempfile.TemporaryDirectory(prefix="workerid-stages-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WORKERID_")}
        env["PYTHONPATH"] = args.src
        for title, shape in shapes.items():
            env["WORKERID_DIR"] = os.path.join(tmp, shape)
            out = subprocess.run(
                [sys.executable, __file__, "--zygote", shape, "--samples", str(args.samples)],
                env=env,
                check=True,
                capture_output=True,
            ).stdout
            results[title] = json.loads(out)
    labels = [label for _, _, label in STAGES] + ["rest", "total"]
    print(f"CPU µs, median of {args.samples} fresh workers (load: {os.getloadavg()[0]:.1f})")
    print(f"{'stage':>10}" + "".join(f"{t:>20}" for t in results))
    for label in labels:
        row = [statistics.median(s.get(label, 0) for s in got) / 1000 for got in results.values()]
        print(f"{label:>10}" + "".join(f"{v:20.1f}" for v in row))
    for title, got in results.items():
        per_run = statistics.median(
            sum(s.get(k, 0) for k in ("helper?", "plan", "ledger")) for s in got
        )
        total = statistics.median(s["total"] for s in got)
        print(
            f"{title}: per-run stages (helper?, plan, ledger) {per_run / 1000:.1f} µs "
            f"of {total / 1000:.1f} µs ({100 * per_run / total:.0f}%)"
        )


if __name__ == "__main__":
    main()
