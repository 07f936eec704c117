"""The scenarios of ``workerid verify``, each adding check rows to the report.

One :class:`Session` per server: its own directory, lock directory and probe
database, kept across the scenarios so start times can be compared run to
run. Scenarios run in order: cold start, kill -9, full restarts, graceful
reload, recycling, degraded lock directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pwd
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import checks, client, procs, records
from .report import Report, Verdict
from .sampler import Sampler
from .servers import Options, Server, ServerError

#: requests per worker before it is recycled, in the recycling scenario
RECYCLE_AFTER = 10
#: how long to drive requests until every worker has answered
DRIVE_TIMEOUT = 30.0


@dataclasses.dataclass
class Session:
    server: Server
    report: Report
    conn: sqlite3.Connection
    restarts: int = 3
    #: the start time of the latest server run
    start: int | None = None
    db_lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    @property
    def name(self) -> str:
        return self.server.name

    @property
    def n(self) -> int:
        return self.server.opts.workers

    def check(self, scenario: str, check: str, verdict: Verdict) -> bool:
        self.report.add(self.name, scenario, check, verdict)
        return verdict.ok

    def mark(self) -> tuple[int, int]:
        with self.db_lock:
            return records.high_water(self.conn)

    def workers_since(self, mark: tuple[int, int]) -> list[records.WorkerRow]:
        with self.db_lock:
            return records.workers(self.conn, mark[0])

    def seeds_since(self, mark: tuple[int, int]) -> list[records.SeedRow]:
        with self.db_lock:
            return records.seeds(self.conn, mark[1])

    def said(self) -> dict[tuple[int, int], int | None]:
        """(pid, start ticks) -> the worker ID each recorded worker said it had."""
        with self.db_lock:
            rows = self.conn.execute("SELECT pid, ticks, worker_id FROM workers").fetchall()
        return {(int(p), int(t)): w for p, t, w in rows}

    def sampler(self) -> Sampler:
        return Sampler(self.server.worker_pids, lambda: self.server.opts.lock_dir, self.said)

    @contextlib.contextmanager
    def traffic(self) -> Iterator[None]:
        """Keep requests flowing in the background (new workers elect as they come up)."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.is_set():
                client.get(self.server.port, timeout=2)
                stop.wait(0.01)

        threads = [threading.Thread(target=loop, daemon=True) for _ in range(2)]
        for t in threads:
            t.start()
        try:
            yield
        finally:
            stop.set()
            for t in threads:
                t.join()

    def drive(self, scenario: str, record: bool = True) -> client.Coverage:
        cov = client.drive(self.server.port, self.server.worker_pids, self.n, DRIVE_TIMEOUT)
        if record:
            self.check(
                scenario, "every worker answers", checks.answered(cov.live, cov.missing, self.n)
            )
        errors = sorted(
            {str(a["record_error"]) for a in cov.answers.values() if "record_error" in a}
        )
        if errors:
            self.check(
                scenario,
                "probe records",
                Verdict("no record errors", "; ".join(errors), False),
            )
        return cov

    # -- the checks every settled server run gets ----------------------------------

    def settled(
        self,
        scenario: str,
        cov: client.Coverage,
        mark: tuple[int, int],
        *,
        seeds: int,
        start: str,
    ) -> None:
        """IDs, count, one start time (``start``: "new", "same" or "any"), seed runs."""
        live = cov.live_answers()
        self.check(
            scenario, "worker IDs", checks.ids_exactly([a["worker_id"] for a in live], self.n)
        )
        self.check(
            scenario, "worker_count", checks.all_equal([a["worker_count"] for a in live], self.n)
        )
        starts = [a["start_time"] for a in live]
        self.check(scenario, "one start_time", checks.one_value(starts))
        current = starts[0] if len(set(starts)) == 1 else None
        if start == "new":
            self.check(
                scenario, "start_time advances", checks.strictly_greater(current, self.start)
            )
        elif start == "same":
            self.check(scenario, "start_time kept", checks.unchanged(current, self.start))
        self.check(scenario, "degraded reasons", checks.no_degraded([a["degraded"] for a in live]))
        ran = self.seeds_since(mark)
        self.check(
            scenario,
            "seed (once) runs",
            checks.seed_runs(len(ran), seeds, ", ".join(f"pid {r.pid}" for r in ran)),
        )
        if current is not None:
            self.start = current


def _ids_by_pid(cov: client.Coverage) -> dict[int, int | None]:
    return {a["pid"]: a["worker_id"] for a in cov.live_answers()}


def cold_start(s: Session) -> None:
    scenario = "cold start"
    mark = s.mark()
    with s.sampler() as sampler:
        s.server.start()
        cov = s.drive(scenario)
    s.settled(scenario, cov, mark, seeds=1, start="new" if s.start is not None else "any")
    s.check(scenario, "live IDs unique", sampler.verdict())


def kill9(s: Session) -> None:
    scenario = "kill -9"
    before = _ids_by_pid(s.drive(scenario, record=False))
    victim = next((pid for pid, wid in before.items() if wid == 1), None)
    if victim is None:
        s.check(scenario, "worker 1 to kill", Verdict("a live worker 1", str(before), False))
        return
    mark = s.mark()
    with s.sampler() as sampler:
        s.server.kill9(victim)
        s.server.wait_workers(old=frozenset({victim}))
        cov = s.drive(scenario)
    after = _ids_by_pid(cov)
    s.check(scenario, "freed ID reused", checks.replacement_took_freed(before, after, victim))
    s.settled(scenario, cov, mark, seeds=0, start="same")
    s.check(scenario, "live IDs unique", sampler.verdict())


def _server_started(answer: dict[str, Any] | None) -> int | None:
    value = (answer or {}).get("server_started")
    return int(value) if isinstance(value, int | float) else None


def _first_answer(s: Session, timeout: float = 10) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = client.get(s.server.port, timeout=2)
        if got is not None:
            return got
        time.sleep(0.02)
    return None


def _one_restart(s: Session, scenario: str, kind: str) -> None:
    mark = s.mark()
    with s.sampler() as sampler, s.traffic():
        s.server.restart(kind)
        cov = s.drive(scenario)
    s.settled(scenario, cov, mark, seeds=1, start="new")
    s.check(scenario, "live IDs unique", sampler.verdict())


def _same_second_pair(s: Session, scenario: str, kind: str, attempts: int = 4) -> None:
    """Two restarts whose runs begin in one second of the server's own clock.

    Timed to begin just after that second ticks over, and retried until both
    runs land in one second (the report says whether they did).
    """
    for attempt in range(1, attempts + 1):
        phase = 0.0 if s.server.start_clock == "wall" else procs.procfs_second_phase()
        mark = s.mark()
        with s.sampler() as sampler:
            if kind == "stop+start":
                # The same restart, with its start timed: stop, wait, start.
                s.server.stop()
                procs.sleep_to_phase(phase)
                s.server.start()
            else:
                procs.sleep_to_phase(phase)
                s.server.restart(kind)
            first = _first_answer(s)  # the first run must exist in the ledger
            s.server.restart(kind)
            cov = s.drive(scenario, record=False)
        live = cov.live_answers()
        started = (_server_started(first), _server_started(live[0] if live else None))
        same = started[0] is not None and started[0] == started[1]
        if same or attempt == attempts or s.server.native_start_time:
            break
    s.check(scenario, "every worker answers", checks.answered(cov.live, cov.missing, s.n))
    first_start = (first or {}).get("start_time")
    s.check(scenario, "1st start_time advances", checks.strictly_greater(first_start, s.start))
    s.start = first_start if isinstance(first_start, int) else s.start
    if s.server.native_start_time:
        # uWSGI's own start time (whole seconds) is passed through untouched,
        # and its stop alone takes about a second: two runs cannot share one
        # second here, and if they could the value would be uWSGI's, not ours.
        s.report.notes[f"{s.name} same-second restarts"] = (
            f"runs began at {started[0]} and {started[1]} (uWSGI's own start-time, "
            "passed through; its SIGINT stop takes ~1 s, so two runs never share a second)"
        )
    else:
        s.check(
            scenario,
            "both runs began in 1 s",
            Verdict(
                "the server's own start seconds equal",
                f"{started[0]} and {started[1]} (attempt {attempt})",
                same,
            ),
        )
    s.settled(scenario, cov, mark, seeds=2, start="new")
    s.check(scenario, "live IDs unique", sampler.verdict())


def restarts(s: Session) -> None:
    kinds = s.server.restart_kinds()
    k = s.restarts
    single = k - 2 if k >= 2 else k
    for i in range(single):
        kind = kinds[i % len(kinds)]
        _one_restart(s, f"restart {i + 1}/{k} ({kind})", kind)
    if k >= 2:
        kind = kinds[-1]
        _same_second_pair(s, f"restart {k - 1}+{k}/{k} in 1 s ({kind})", kind)


def reload(s: Session) -> None:
    scenario = "graceful reload"
    s.report.notes[f"{s.name} reload"] = s.server.reload_doc
    mark = s.mark()
    with s.sampler() as sampler, s.traffic():
        s.server.reload()
        cov = s.drive(scenario)
    new = s.server.reload_new_generation
    s.settled(scenario, cov, mark, seeds=1 if new else 0, start="new" if new else "same")
    s.check(scenario, "live IDs unique", sampler.verdict())


def recycle(s: Session) -> None:
    scenario = f"recycling ({s.server.recycle_option} {RECYCLE_AFTER})"
    s.server.stop()
    s.server.opts = dataclasses.replace(s.server.opts, max_requests=RECYCLE_AFTER)
    mark = s.mark()
    try:
        with s.sampler() as sampler:
            s.server.start()
            # Until workers have been replaced (uvicorn notices its limit on a tick).
            deadline = time.monotonic() + DRIVE_TIMEOUT
            while time.monotonic() < deadline:
                client.hammer(s.server.port, s.n * RECYCLE_AFTER, s.n)
                if len(s.workers_since(mark)) > 2 * s.n:
                    break
            cov = s.drive(scenario)
        s.settled(scenario, cov, mark, seeds=1, start="new")
        rows = s.workers_since(mark)
        s.check(scenario, "every ID ever seen", checks.within([r.worker_id for r in rows], s.n))
        s.check(scenario, "workers recycled", checks.recycled(len(rows), s.n))
        s.check(
            scenario, "one start_time in the run", checks.one_value([r.start_time for r in rows])
        )
        s.check(scenario, "live IDs unique", sampler.verdict())
    finally:
        s.server.stop()
        s.server.opts = dataclasses.replace(s.server.opts, max_requests=0)


def degraded(s: Session, ro_dir: Path) -> None:
    """The lock directory exists but is root's: the worker user cannot write to it."""
    scenario = "degraded lock dir"
    ro_dir.mkdir(mode=0o755, exist_ok=True)
    good = s.server.opts
    s.server.opts = dataclasses.replace(good, lock_dir=ro_dir)
    mark = s.mark()
    try:
        s.server.start()
        cov = s.drive(scenario)
        live = cov.live_answers()
        native = s.name == "uwsgi"
        ids = [a["worker_id"] for a in live]
        if native:
            s.check(scenario, "worker IDs (uWSGI's own)", checks.ids_exactly(ids, s.n))
        else:
            s.check(
                scenario,
                "worker IDs",
                Verdict("None on every worker", checks._ids(ids), set(ids) == {None}),
            )
        s.check(
            scenario,
            "says why",
            checks.degraded_reason([a["degraded"] for a in live], "lock directory"),
        )
        s.check(scenario, "one start_time", checks.one_value([a["start_time"] for a in live]))
        # Documented: without a lock dir once() runs in worker 1 only when IDs exist,
        # else in every worker.
        ran = s.seeds_since(mark)
        s.check(scenario, "seed (once) runs", checks.seed_runs(len(ran), 1 if native else s.n))
    finally:
        s.server.stop()
        s.server.opts = good


def _ensure_running(s: Session) -> None:
    if s.server.supervisor_pid() is None:
        s.server.start()


def run_all(s: Session, ro_dir: Path) -> None:
    """Every scenario in order; one that raises ``ServerError`` becomes a FAIL row."""
    steps: list[tuple[str, Any]] = [
        ("cold start", cold_start),
        ("kill -9", kill9),
        ("restarts", restarts),
        ("graceful reload", reload),
        ("recycling", recycle),
        ("degraded lock dir", lambda s: degraded(s, ro_dir)),
    ]
    try:
        for label, step in steps:
            try:
                if label in ("kill -9", "restarts", "graceful reload"):
                    _ensure_running(s)
                step(s)
            except ServerError as exc:
                s.check(label, "server runs", Verdict("server starts and serves", str(exc), False))
                s.server.stop()
    finally:
        s.server.stop()


def worker_user(opts: Options) -> tuple[int, int]:
    entry = pwd.getpwnam(opts.user)
    return entry.pw_uid, entry.pw_gid


def prepare_dirs(root: Path, opts: Options) -> None:
    """Directories: run dir readable by all, state and lock dirs the worker user's own."""
    uid, gid = worker_user(opts)
    root.mkdir(mode=0o755, parents=True, exist_ok=True)
    os.chmod(root, 0o755)  # noqa: S103 - the worker user must reach its dirs inside
    for path, mode in ((opts.run_dir, 0o755), (opts.state_dir, 0o755), (opts.lock_dir, 0o700)):
        path.mkdir(mode=mode, parents=True, exist_ok=True)
        os.chmod(path, mode)
    os.chown(opts.state_dir, uid, gid)
    os.chown(opts.lock_dir, uid, gid)
