"""A host whose workers each call ``run_once(NAME, fn, scope="deploy")`` once.

``python tests/helpers/deployonce.py OUT N``: the master forks N workers (the
environment carries ``WORKERID_*``: lock dir, backend, deploy). Each worker
calls ``run_once`` and writes ``OUT/<pid>.json``: the outcome, whether it ran,
how long it waited, and how many lines the shared ``DEPLOY_LOG`` held when
its call returned (a worker that was told "done" must see the run's line).
Workers stay alive until the master is signalled, so IDs stay held.

The function appends ``start <pid>`` to ``DEPLOY_LOG`` and then:
``DEPLOY_SLEEP`` seconds of sleep if it is the first ``start`` line (later
runners do not sleep: a test kills the first one), then ``end <pid>``;
``DEPLOY_FAIL=1`` makes the first attempt raise ``RuntimeError`` after its
sleep; ``DEPLOY_FORK=1`` makes the first attempt fork a child that sleeps a
minute (its PID goes to the log as ``child <pid>``) before its own sleep.
"""

from __future__ import annotations

import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _report import write


def _lines(path: str) -> list[str]:
    try:
        with open(path) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def _worker(out: str) -> None:
    import workerid

    log = os.environ["DEPLOY_LOG"]
    sleep = float(os.environ.get("DEPLOY_SLEEP", "0"))
    fail = os.environ.get("DEPLOY_FAIL") == "1"
    timeout = float(os.environ.get("DEPLOY_TIMEOUT", "30"))
    degraded = os.environ.get("DEPLOY_DEGRADED", "default")

    def migrate() -> str:
        with open(log, "a") as f:
            f.write(f"start {os.getpid()}\n")
        first = sum(1 for line in _lines(log) if line.startswith("start")) == 1
        if first and os.environ.get("DEPLOY_FORK") == "1":
            child = os.fork()
            if child == 0:
                time.sleep(60)
                os._exit(0)
            with open(log, "a") as f:
                f.write(f"child {child}\n")
        if first:
            time.sleep(sleep)
        with open(log, "a") as f:
            f.write(f"end {os.getpid()}\n")
        if first and fail:
            raise RuntimeError("first attempt fails")
        return "migrated"

    report: dict[str, object] = {"pid": os.getpid()}
    try:
        result = workerid.run_once(
            "migrate",
            migrate,
            timeout=timeout,
            scope="deploy",
            degraded=degraded,  # type: ignore[arg-type]
        )
        report.update(
            outcome=result.state.value,
            ran=result.ran,
            value=result.value,
            waited=result.waited,
            error=result.error,
            detail=result.detail,
        )
    except Exception as exc:
        report.update(outcome="raised", exc=type(exc).__name__, msg=str(exc))
    report["lines"] = _lines(log)
    report["at"] = time.time()
    write(os.path.join(out, f"{os.getpid()}.json"), report)
    signal.pause()


def main() -> None:
    out, count = sys.argv[1], int(sys.argv[2])
    pids = []
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            try:
                _worker(out)
            finally:
                os._exit(1)
        pids.append(pid)
    write(os.path.join(out, "master.json"), {"pid": os.getpid(), "workers": pids})

    def stop(_sig: int, _frame: object) -> None:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for pid in pids:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
