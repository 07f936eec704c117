"""Soak / adversary campaign: real processes, real SIGKILL, hostile state, fuzzed ledgers.

Run: ``python bench/soak.py --profile short|long [--json FILE] [--seed S] [--only a,b]``
(as root, for the hostile cases; ``/opt/workerid/venv/bin/python`` has hypothesis).

It builds on the one-shot tests and reuses their helpers (``tests/prefork.py`` as the
pre-fork master, ``tests/conftest.py``'s ``Server``, ``tests/helpers``,
``tests/test_supervisors.py``'s PID-namespace server, ``tests/test_state_loss.py``'s
stall-and-kill steps, every case of ``tests/test_hostile.py``, and
``tests/test_fuzz_state.py``'s strategies and properties). Every server is started with
``PYTHONPATH`` at this tree's ``src``, so it tests this tree. Scenarios:

``kill``      SIGKILL random live workers of one server (one, several at once, or a
              replacement right after its fork, before it reports) at N=4 and N=16,
              sampling the live workers' reports and the real lock holders
              (``workerid.status.scan``) all along; violations: two live processes
              with one ID, an ID outside 1..N, a second start time, generation or worker
              count in the run, a report that disagrees with the lock holders, a
              server that does not get back to N workers.
``restarts``  stop/start the master in one lock dir and namespace, then the same with
              the master as PID 1 of a fresh PID namespace: start times strictly
              increase every time, IDs are 1..N in each run.
``hostile``   every case of tests/test_hostile.py (plus garbage bytes at each state
              file): answered within the documented bound, with the first reason.
``fuzz``      the ledger parser + ``assign`` + dump/parse round trip: the fuzz tests'
              properties run by hypothesis with a large budget, and a seeded random
              mutator over valid ledgers (``--fuzz-repro SEED:I`` replays one example).
``beside``    one long-lived run, its worker killed over and over (every other time
              with its master stalled) while other servers come and go in the same
              lock dir and namespace: the run's ID, start time and generation never
              change.

Exit status 0 only if no scenario found a violation; the last line says
``SOAK RESULT: violations=<n>``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import itertools
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
TESTS = ROOT / "tests"
sys.path[:0] = [str(SRC), str(TESTS)]

import pytest  # noqa: E402  (the reused test modules need it; nothing here runs pytest)
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import seed as hyp_seed  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import test_fuzz_state as fuzz  # noqa: E402
import test_hostile as hostile  # noqa: E402
import test_state_loss as state_loss  # noqa: E402
import test_supervisors as supervisors  # noqa: E402
import workerid  # noqa: E402
from conftest import Server  # noqa: E402
from helpers import (  # noqa: E402
    alive,
    children_of,
    duplicates,
    env_for,
    live_ids,
    read_json,
)
from workerid import _generation, _layout, status  # noqa: E402
from workerid.verify import procs  # noqa: E402

PROFILES: dict[str, dict[str, Any]] = {
    "short": {
        "kill": {4: 200, 16: 200},
        "restarts": 10,
        "ns_restarts": 5,
        "hyp_examples": 400,  # per property (5 properties)
        "mutator_examples": 2000,
        "beside": 6,
        "kill_budget": 40.0,
    },
    "long": {
        "kill": {4: 10_000, 16: 10_000},
        "restarts": 100,
        "ns_restarts": 100,
        "hyp_examples": 5_000,
        "mutator_examples": 100_000,
        "beside": 60,
        "kill_budget": 720.0,
    },
}
SCENARIOS = ("kill", "restarts", "hostile", "fuzz", "beside")

#: every server this process started, for the final clean-up
_SERVERS: list[Any] = []
_LOG_LOCK = threading.Lock()


def say(line: str = "") -> None:
    with _LOG_LOCK:
        print(line, flush=True)


@dataclasses.dataclass
class Result:
    name: str
    figures: dict[str, Any] = dataclasses.field(default_factory=dict)
    violations: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    def violate(self, kind: str, **detail: Any) -> None:
        self.violations.append({"kind": kind, **detail})
        if len(self.violations) <= 10:
            say(f"  VIOLATION [{self.name}] {kind}: {json.dumps(detail, default=str)[:600]}")


# --- process plumbing ---------------------------------------------------------------------


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of ``pid``, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(") ", 1)[-1].split()
    except OSError:
        return None
    return rest[0], int(rest[1])


def _is_prefork(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"prefork.py" in f.read()
    except OSError:
        return False


def start_server(out: Path, workers: int, env: dict[str, str]) -> Server:
    server = Server(out, workers, env)
    _SERVERS.append(server)
    return server


def stop_server(server: Any) -> None:
    """Stop a server (conftest's Server or test_supervisors' NsServer) and make sure
    nothing it started lives on: survivors are killed by PID, after checking they are
    prefork processes of ours."""
    master = getattr(server, "master", {}) or {}
    with contextlib.suppress(ProcessLookupError, PermissionError, TypeError):
        if isinstance(server, Server):
            os.kill(master["pid"], signal.SIGCONT)
    with contextlib.suppress(Exception):
        server.stop()
    pids = set()
    out = Path(server.out)
    for path in out.glob("*.json"):
        data = read_json(path)
        if data and isinstance(data.get("pid"), int):
            pids.add(data["pid"])
    if isinstance(server, Server):
        pids.update(children_of(server.proc.pid))
    for pid in pids:
        if not isinstance(server, Server):
            continue  # namespace PIDs: kill_group in NsServer.stop took the whole tree
        if alive(pid) and _is_prefork(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    if server in _SERVERS:
        _SERVERS.remove(server)


def cleanup_all() -> None:
    for server in list(_SERVERS):
        stop_server(server)


# --- 1. kill -9 replacements ---------------------------------------------------------------


class KillCampaign:
    """One prefork server whose workers are SIGKILLed over and over, watched all along."""

    def __init__(self, base: Path, n: int, rng: random.Random, result: Result) -> None:
        self.n = n
        self.rng = rng
        self.result = result
        self.lock = base / f"locks-kill{n}"
        self.ns = f"soak-kill{n}"
        env = env_for(self.lock, WORKERID_NAMESPACE=self.ns, WORKERID_COUNT=str(n))
        self.server = start_server(base / f"kill{n}", n, env)
        self.out = self.server.out
        self.mpid = self.server.master["pid"]
        first = self.server.identities()
        self.run_start = first[0]["start_time"]
        self.run_gen = first[0]["generation"]
        self.seen = {i["pid"] for i in first}
        self.c: Counter[str] = Counter()
        self.none_reasons: Counter[str] = Counter()
        self.none_pids: set[int] = set()
        self.flagged: set[tuple[Any, ...]] = set()
        ids = sorted(i["worker_id"] or 0 for i in first)
        if ids != list(range(1, n + 1)):
            result.violate("cold-start-ids", n=n, live=live_ids(first))
        self.check(first, scan=True)

    # sampling ----------------------------------------------------------------------------

    def live(self) -> list[dict[str, Any]]:
        found = []
        for path in self.out.glob("[0-9]*.json"):
            data = read_json(path)
            if data is None:
                continue
            got = _stat(data["pid"])
            if got and got[0] not in "ZX" and got[1] == self.mpid:
                found.append(data)
        return found

    def holders(self) -> list[dict[str, Any]]:
        report = status.scan(str(self.lock))
        for ns in report["namespaces"]:
            if ns["namespace"] == self.ns:
                return ns["slots"]  # type: ignore[no-any-return]
        return []

    def anomalies(
        self, live: list[dict[str, Any]], slots: list[dict[str, Any]] | None
    ) -> dict[tuple[Any, ...], dict[str, Any]]:
        found: dict[tuple[Any, ...], dict[str, Any]] = {}
        for wid, pids in duplicates(live).items():
            found[("duplicate", wid, *sorted(pids))] = {"worker_id": wid, "pids": pids}
        for i in live:
            wid, pid = i["worker_id"], i["pid"]
            if wid is None:
                if not i["degraded"]:
                    found[("silent-none", pid)] = {"pid": pid}
                continue
            if not 1 <= wid <= self.n:
                found[("out-of-range", pid, wid)] = {"pid": pid, "worker_id": wid}
            if i["start_time"] != self.run_start:
                found[("start-time", pid)] = {"pid": pid, "got": i["start_time"]}
            if i["generation"] != self.run_gen:
                found[("generation", pid)] = {"pid": pid, "got": i["generation"]}
            if i["worker_count"] != self.n:
                found[("worker-count", pid)] = {"pid": pid, "got": i["worker_count"]}
        if slots is not None:
            reported = {i["pid"]: i["worker_id"] for i in live}
            held: dict[int, list[int]] = {}
            for slot in slots:
                held.setdefault(slot["pid"], []).append(slot["worker_id"])
                if slot["worker_id"] > self.n:
                    found[("held-out-of-range", slot["pid"], slot["worker_id"])] = dict(slot)
                want = reported.get(slot["pid"], slot["worker_id"])
                if want is not None and want != slot["worker_id"]:
                    key = ("holder-disagrees", slot["pid"], slot["worker_id"])
                    found[key] = {"holder": slot, "reported": want}
            for pid, wids in held.items():
                if len(wids) > 1:
                    found[("holds-several", pid, *wids)] = {"pid": pid, "worker_ids": wids}
            holder_of = {s["worker_id"]: s["pid"] for s in slots}
            for i in live:
                if i["worker_id"] is not None and holder_of.get(i["worker_id"]) != i["pid"]:
                    key = ("not-held", i["pid"], i["worker_id"])
                    found[key] = {"pid": i["pid"], "worker_id": i["worker_id"]}
        return found

    def check(self, live: list[dict[str, Any]], *, scan: bool) -> None:
        self.c["samples"] += 1
        slots = self.holders() if scan else None
        if scan:
            self.c["scans"] += 1
        for i in live:
            if i["worker_id"] is None and i["pid"] not in self.none_pids:
                self.none_pids.add(i["pid"])
                self.none_reasons[(i["degraded"] or ["-"])[0]] += 1
        found = self.anomalies(live, slots)
        if not found:
            return
        # A real one persists (live workers idle forever); a race with our own kill
        # does not. Look again before calling it.
        time.sleep(0.3)
        again_live = self.live()
        again = self.anomalies(again_live, self.holders() if scan else None)
        for key, detail in found.items():
            if key in again and key not in self.flagged:
                self.flagged.add(key)
                self.result.violate(
                    key[0], n=self.n, **detail, live=live_ids(again_live), slots=slots
                )
            elif key not in again:
                self.c["transient"] += 1

    # killing -------------------------------------------------------------------------------

    def _new_child(self, exclude: set[int], timeout: float = 3) -> int | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for pid in children_of(self.mpid):
                if pid not in self.seen and pid not in exclude:
                    return pid
            time.sleep(0.001)
        return None

    def round(self) -> None:
        live = self.live()
        self.check(live, scan=True)
        if not live:
            return
        mode = self.rng.random()
        victims: list[int]
        if mode < 0.55:
            victims = [self.rng.choice(live)["pid"]]
            self.c["kills_single"] += 1
        elif mode < 0.85:
            top = self.n if self.rng.random() < 0.2 else max(2, min(self.n, self.n // 2))
            k = self.rng.randint(2, max(2, top))
            victims = [i["pid"] for i in self.rng.sample(live, min(k, len(live)))]
            self.c["kills_batch"] += 1
            self.c["kills_in_batches"] += len(victims)
        else:
            first = self.rng.choice(live)["pid"]
            os.kill(first, signal.SIGKILL)
            victims = [first]
            child = self._new_child({first})
            if child is not None:
                reported = (self.out / f"{child}.json").exists()
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signal.SIGKILL)
                self.seen.add(child)
                victims.append(child)
                self.c["kills_after_fork"] += 1
                self.c["after_fork_before_report" if not reported else "after_fork_late"] += 1
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.c["kills"] += len(victims)
        left = procs.wait_gone(victims, 10, poll=0.002)
        if left:
            self.result.violate("unkillable", pids=left)
        for pid in victims:
            (self.out / f"{pid}.json").unlink(missing_ok=True)
        self.wait_full(set(victims))

    def wait_full(self, victims: set[int], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        polls = 0
        while True:
            live = self.live()
            polls += 1
            for i in live:
                if i["pid"] not in self.seen:
                    self.seen.add(i["pid"])
                    self.c["replacements"] += 1
            pids = {i["pid"] for i in live}
            full = len(live) >= self.n and not pids & victims
            self.check(live, scan=full or polls % 4 == 0)
            if full:
                return
            if time.monotonic() > deadline:
                self.result.violate("not-back-to-n", n=self.n, timeout=timeout, live=live_ids(live))
                return
            time.sleep(0.005)


def scenario_kill(base: Path, prof: dict[str, Any], rng: random.Random, res: Result) -> None:
    for n, target in prof["kill"].items():
        began = time.monotonic()
        camp = KillCampaign(base, n, rng, res)
        capped = False
        try:
            while camp.c["replacements"] < target:
                if time.monotonic() - began > prof["kill_budget"]:
                    capped = True
                    break
                camp.round()
            camp.check(camp.live(), scan=True)
        finally:
            stop_server(camp.server)
        took = time.monotonic() - began
        c = camp.c
        rate = c["replacements"] / took if took else 0.0
        nv = sum(1 for v in res.violations if v.get("n") == n)
        fig = {
            "replacements": c["replacements"],
            "target": target,
            "time_capped": capped,
            "seconds": round(took, 1),
            "replacements_per_s": round(rate, 1),
            "kills": c["kills"],
            "kills_single": c["kills_single"],
            "batches": c["kills_batch"],
            "killed_in_batches": c["kills_in_batches"],
            "after_fork": c["kills_after_fork"],
            "after_fork_before_report": c["after_fork_before_report"],
            "samples": c["samples"],
            "lock_scans": c["scans"],
            "transient_rechecked": c["transient"],
            "none_ids": len(camp.none_pids),
            "none_reasons": dict(camp.none_reasons),
            "violations": nv,
        }
        res.figures[f"N={n}"] = fig
        say(
            f"  N={n:<3} replacements {c['replacements']} (target {target}"
            f"{', TIME-CAPPED' if capped else ''}) in {took:.1f} s = {rate:.1f}/s; kills "
            f"{c['kills']}: single {c['kills_single']}, {c['kills_batch']} batches "
            f"({c['kills_in_batches']} killed), {c['kills_after_fork']} right after fork "
            f"({c['after_fork_before_report']} before reporting)"
        )
        say(
            f"         samples {c['samples']}, lock scans {c['scans']}, rechecked-transient "
            f"{c['transient']}, None IDs {len(camp.none_pids)}; violations {nv}"
        )


# --- 2. restarts --------------------------------------------------------------------------


def scenario_restarts(base: Path, prof: dict[str, Any], rng: random.Random, res: Result) -> None:
    lock = base / "locks-restart"
    env = env_for(lock, WORKERID_NAMESPACE="soak-restart", WORKERID_COUNT="2")
    history: list[tuple[str, int, str]] = []
    ahead: list[int] = []

    def one(kind: str, index: int) -> None:
        out = base / f"restart-{kind}-{index}"
        began = time.time()
        server: Any
        if kind == "plain":
            server = start_server(out, 2, env)
        else:
            server = supervisors.NsServer(out, 2, env)
            _SERVERS.append(server)
        try:
            idents = server.identities()
        finally:
            stop_server(server)
            shutil.rmtree(out, ignore_errors=True)
        ids = sorted(i["worker_id"] or 0 for i in idents)
        starts = {i["start_time"] for i in idents}
        gens = {i["generation"] for i in idents}
        if ids != [1, 2] or len(starts) != 1 or len(gens) != 1:
            res.violate(
                "run-not-1..N-one-start",
                kind=kind,
                index=index,
                live=live_ids(idents),
                starts=sorted(starts, key=str),
            )
        start = idents[0]["start_time"]
        if kind == "pid1" and server.master["pid"] != 1:
            res.violate("not-pid1", index=index, master=server.master)
        if history and not (isinstance(start, int) and start > history[-1][1]):
            res.violate(
                "start-time-not-increasing",
                kind=kind,
                index=index,
                previous=history[-1],
                got=start,
            )
        if any(g == idents[0]["generation"] for _, _, g in history):
            res.violate("generation-reused", kind=kind, index=index)
        history.append((kind, start, idents[0]["generation"]))
        ahead.append(start - int(began))

    for kind, count in (("plain", prof["restarts"]), ("pid1", prof["ns_restarts"])):
        began = time.monotonic()
        for index in range(count):
            one(kind, index)
        took = time.monotonic() - began
        nv = len(res.violations)
        res.figures[kind] = {"restarts": count, "seconds": round(took, 1)}
        say(
            f"  {kind:<5} {count} stop/start cycles in {took:.1f} s "
            f"({count / took:.1f}/s); violations so far {nv}"
        )
    starts = [s for _, s, _ in history]
    increasing = all(a < b for a, b in itertools.pairwise(starts))
    res.figures["start_times"] = {
        "runs": len(starts),
        "strictly_increasing": increasing,
        "first": starts[0] if starts else None,
        "last": starts[-1] if starts else None,
        "max_ahead_of_clock_s": max(ahead, default=0),
        "violations": len(res.violations),
    }
    say(
        f"  {len(starts)} runs in one lock dir + namespace: start times strictly increasing: "
        f"{increasing} ({starts[0]} .. {starts[-1]}); at most {max(ahead, default=0)} s "
        f"ahead of the clock (bound {_generation.MAX_AHEAD} s); violations {len(res.violations)}"
    )


# --- 3. hostile lock directories ----------------------------------------------------------


@dataclasses.dataclass
class Case:
    name: str
    calls: list[float] = dataclasses.field(default_factory=list)
    #: what each workerid call answered: one identity, or a server's workers
    answers: list[list[dict[str, Any]]] = dataclasses.field(default_factory=list)
    outcome: str = "?"
    error: str = ""


_CASE = threading.local()
_orig_run_py = hostile.run_py
_orig_identity = hostile.identity


def _rec_run_py(args: list[str], env: dict[str, str], **kw: Any) -> Any:
    proc, elapsed = _orig_run_py(args, env, **kw)
    case = getattr(_CASE, "case", None)
    if case is not None:
        case.calls.append(elapsed)
    return proc, elapsed


def _rec_identity(env: dict[str, str], **kw: Any) -> dict[str, Any]:
    ident = _orig_identity(env, **kw)
    case = getattr(_CASE, "case", None)
    if case is not None:
        case.answers.append([ident])
    return ident


class _TimedServer(Server):
    """conftest's Server, timing how long its workers take to answer (hostile cases)."""

    def __init__(self, out: Path, workers: int, env: dict[str, str]) -> None:
        self._t0 = time.monotonic()
        self._case = getattr(_CASE, "case", None)
        super().__init__(out, workers, env)

    def identities(self, expect: int | None = None, timeout: float = 20) -> list[dict[str, Any]]:
        found = super().identities(expect, timeout)
        if self._case is not None:
            self._case.calls.append(time.monotonic() - self._t0)
            self._case.answers.append(found)
        return found


@contextlib.contextmanager
def _fixtures(base: Path) -> Iterator[dict[str, Any]]:
    shared = Path(tempfile.mkdtemp(prefix="case-", dir=base))
    os.chmod(shared, 0o755)
    lock = shared / "locks"
    servers: list[Server] = []
    runs = itertools.count()

    def start(workers: int = 4, **extra: str) -> Server:
        server = _TimedServer(shared / f"run{next(runs)}", workers, env_for(lock, **extra))
        servers.append(server)
        _SERVERS.append(server)
        return server

    try:
        yield {"shared_tmp": shared, "lock_dir": lock, "start_server": start}
    finally:
        for server in servers:
            stop_server(server)
        shutil.rmtree(shared, ignore_errors=True)


def _expand(fn: Callable[..., Any]) -> list[tuple[str, dict[str, Any]]]:
    """The parametrized cases of one test function, as pytest would expand them."""
    axes: list[list[tuple[str, dict[str, Any]]]] = []
    for mark in getattr(fn, "pytestmark", []):
        if mark.name != "parametrize":
            continue
        argname, values = mark.args[0], list(mark.args[1])
        ids = mark.kwargs.get("ids")
        axis = []
        for index, value in enumerate(values):
            label = ids(value) if callable(ids) else ids[index] if ids else str(value)
            axis.append((label, {argname: value}))
        axes.append(axis)
    cases = []
    for combo in itertools.product(*reversed(axes)):
        label = "-".join(lab for lab, _ in combo)
        params: dict[str, Any] = {}
        for _, p in combo:
            params.update(p)
        cases.append((label, params))
    return cases or [("", {})]


# Garbage bytes at each state file (tests/test_state_loss.py garbles the ledger under live
# workers; here a fresh process meets it): the call answers within the bound and either
# uses the directory (the file holds no data, or is replaced whole) or says why not.


def _garbage(what: str, shared_tmp: Path) -> None:
    lock = shared_tmp / "locks"
    lock.mkdir(mode=0o700)
    ns = hostile.seed_ledger(lock)
    rnd = random.Random(what)
    size = 200_000 if what == "huge-ledger.json" else 4096
    data = bytes(rnd.getrandbits(8) for _ in range(size))
    path = {
        "ledger.json": lock / _layout.LEDGER,
        "huge-ledger.json": lock / _layout.LEDGER,
        "ledger.lock": lock / _layout.LEDGER_LOCK,
        "slots.lock": Path(_layout.slots_file(str(ns))),
    }[what]
    path.write_bytes(data)
    os.chmod(path, 0o600)
    ident = hostile.identity(hostile.clean_env(WORKERID_DIR=str(lock)), own_run=True)
    assert ident["start_time"] is not None
    hostile._assert_sane_start(ident["start_time"])
    if ident["worker_id"] is None:
        assert ident["degraded"], "worker_id None without a reason"
    else:
        assert ident["worker_id"] == 1, ident
    if what.endswith("ledger.json") and ident["worker_id"] is not None:
        _generation.parse(hostile.ledger_on_disk(lock))  # replaced by a real ledger


def _hostile_cases() -> list[tuple[str, Callable[..., Any], dict[str, Any]]]:
    cases: list[tuple[str, Callable[..., Any], dict[str, Any]]] = []
    for name in dir(hostile):
        fn = getattr(hostile, name)
        if not name.startswith("test_") or not callable(fn):
            continue
        for label, params in _expand(fn):
            short = name.removeprefix("test_")
            cases.append((f"{short}[{label}]" if label else short, fn, params))
    for what in ("ledger.json", "huge-ledger.json", "ledger.lock", "slots.lock"):
        cases.append((f"garbage_bytes_at[{what}]", functools.partial(_garbage, what), {}))
    return cases


def _run_case(base: Path, name: str, fn: Callable[..., Any], params: dict[str, Any]) -> Case:
    import inspect

    case = Case(name)
    _CASE.case = case
    try:
        with _fixtures(base) as fixtures:
            wanted = inspect.signature(fn).parameters
            kwargs = {k: v for k, v in fixtures.items() if k in wanted}
            kwargs.update(params)
            fn(**kwargs)
        case.outcome = "ok"
    except pytest.skip.Exception as exc:
        case.outcome = "skipped"
        case.error = str(exc)
    except (AssertionError, pytest.fail.Exception) as exc:
        case.outcome = "FAILED"
        case.error = f"{type(exc).__name__}: {exc}"
    except Exception as exc:
        case.outcome = "ERROR"
        case.error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    finally:
        _CASE.case = None
    return case


def scenario_hostile(base: Path, prof: dict[str, Any], rng: random.Random, res: Result) -> None:
    if os.geteuid() != 0:
        res.notes.append("skipped: the hostile cases run processes as other users (needs root)")
        say("  skipped: not root")
        return
    hostile.run_py = _rec_run_py
    hostile.identity = _rec_identity
    cases = _hostile_cases()
    began = time.monotonic()
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            done = list(pool.map(lambda c: _run_case(base, *c), cases))
    finally:
        hostile.run_py = _orig_run_py
        hostile.identity = _orig_identity
    took = time.monotonic() - began
    rows = []
    width = max(len(c.name) for c in done)
    for case in done:
        answered = max(case.calls, default=0.0)
        last = case.answers[-1] if case.answers else [{}]
        wids = sorted((i.get("worker_id") for i in last), key=lambda w: w or 0)
        wid = wids[0] if len(wids) == 1 else wids
        reason = next((i["degraded"][0] for i in last if i.get("degraded")), "-")
        reason = reason.replace(str(base), "$TMP")
        over = answered > hostile.BOUND
        if case.outcome in ("FAILED", "ERROR") or over:
            res.violate(
                "hostile-case",
                case=case.name,
                outcome=case.outcome,
                answered=answered,
                error=case.error[:400],
            )
        rows.append(
            {
                "case": case.name,
                "outcome": case.outcome,
                "answered_s": round(answered, 2),
                "worker_id": wid,
                "first_reason": reason,
                "error": case.error[:400],
            }
        )
        say(
            f"  {case.name:<{width}}  {case.outcome:<7} answered in {answered:5.2f} s  "
            f"worker_id {wid!s:<6} reason: {reason[:110]}"
        )
    outcomes = Counter(r["outcome"] for r in rows)
    slowest = max((r["answered_s"] for r in rows), default=0.0)
    no_reason = [r["case"] for r in rows if r["first_reason"] == "-" and r["outcome"] == "ok"]
    res.figures = {
        "cases": len(rows),
        "outcomes": dict(outcomes),
        "slowest_answer_s": slowest,
        "bound_s": hostile.BOUND,
        "answered_without_a_reason": no_reason,
        "rows": rows,
        "violations": len(res.violations),
    }
    say(
        f"  {len(rows)} cases in {took:.1f} s: {dict(outcomes)}; slowest answer {slowest:.2f} s "
        f"(bound {hostile.BOUND:g} s); ok without any reason in degraded: {len(no_reason)}; "
        f"violations {len(res.violations)}"
    )


# --- 4. fuzz ------------------------------------------------------------------------------


def _hyp_properties(scratch: Path) -> list[tuple[str, Callable[..., Any], dict[str, Any]]]:
    """test_fuzz_state.py's properties: (name, undecorated body, strategies)."""
    f = fuzz
    ondisk = st.binary(max_size=512) | st.builds(lambda v: json.dumps(v).encode(), f.json_values)
    steps = st.lists(
        st.tuples(st.booleans(), f.hex_keys, f.owners, f.hints, f.clocks, f.liveness, f.knowns),
        min_size=1,
        max_size=4,
    )
    inner = {
        name: getattr(f, name).hypothesis.inner_test
        for name in dir(f)
        if name.startswith("test_") and hasattr(getattr(f, name), "hypothesis")
    }
    return [
        (
            "parse(any JSON value)",
            inner["test_any_json_value_parses_or_raises_value_error"],
            {"obj": f.json_values},
        ),
        (
            "parse(mutated real ledger)",
            inner["test_ledger_shaped_objects_parse_or_raise_value_error"],
            {"obj": f.hostile_ledger_objects()},
        ),
        (
            "read_json+parse(any bytes)",
            functools.partial(
                inner["test_any_bytes_read_from_disk_parse_or_raise_value_error"], scratch
            ),
            {"data": ondisk},
        ),
        (
            "read_json+parse(byte-mutated file)",
            functools.partial(
                inner["test_byte_mutations_of_a_valid_ledger_file_parse_or_raise_value_error"],
                scratch,
            ),
            {"data": st.data()},
        ),
        (
            "assign+dump+parse round trip",
            inner["test_assign_never_writes_a_ledger_the_parser_rejects"],
            {
                "obj": f.hostile_ledger_objects() | f.ledgers_at_the_limits() | f.full_ledgers(),
                "steps": steps,
                "data": st.data(),
            },
        ),
    ]


def _run_property(
    body: Callable[..., Any], strategies: dict[str, Any], examples: int, seed: int
) -> tuple[int, str | None]:
    count = [0]

    def wrapped(**kw: Any) -> None:
        count[0] += 1
        body(**kw)

    # hypothesis reads the signature: give the wrapper the keyword-only parameters
    import inspect

    wrapped.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY) for k in strategies]
    )
    test = settings(
        max_examples=examples,
        database=None,
        deadline=None,
        derandomize=False,
        print_blob=True,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
    )(given(**strategies)(wrapped))
    test = hyp_seed(seed)(test)
    try:
        test()
    except Exception as exc:
        return count[0], "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return count[0], None


def _mutate(rnd: random.Random, obj: Any) -> Any:
    f = fuzz
    obj = json.loads(json.dumps(obj))
    for _ in range(rnd.randint(0, 3)):
        paths = list(f._paths(obj))
        ints = [p for p in paths if p and type(f._get(obj, p)) is int]
        path = rnd.choice(ints if ints and rnd.random() < 0.5 else paths)
        if not path:
            continue
        parent, last = f._get(obj, path[:-1]), path[-1]
        op = rnd.choice(["edge", "edge", "edge", "scalar", "drop", "add", "dup", "neg", "type"])
        if op == "edge":
            parent[last] = rnd.choice(f.EDGE_INTS)
        elif op == "scalar":
            parent[last] = rnd.choice(
                [None, True, False, "", "x", 1.5, -0.0, 1e300, [], {}, "0" * 16, "é"]
            )
        elif op == "drop":
            del parent[last]
        elif op == "add" and isinstance(parent, dict):
            parent[rnd.choice(["run", "start", "seq", "x", "v", "floor", ""])] = rnd.choice(
                f.EDGE_INTS
            )
        elif op == "dup" and isinstance(parent, list) and parent:
            parent.append(json.loads(json.dumps(rnd.choice(parent))))
        elif op == "neg" and type(parent[last]) is int:
            parent[last] = -parent[last] - rnd.randint(0, 2)
        elif op == "type" and type(parent[last]) is int:
            parent[last] = rnd.choice([str(parent[last]), float(parent[last]), [parent[last]]])
    return obj


def _mutator_example(seed: int, index: int, scratch: Path, c: Counter[str]) -> None:
    """One example: a ledger built through assign, mutated (as JSON or as bytes), parsed,
    then driven through assign; every ledger that parses must round-trip."""
    f = fuzz
    rnd = random.Random(f"{seed}:{index}")
    runs = [f"{rnd.getrandbits(64):016x}" for _ in range(rnd.randint(1, 5))]
    ledger = _generation.Ledger()

    def owner() -> _generation.Owner:
        return _generation.Owner(
            boot=rnd.choice(["", "0" * 16, f"{rnd.getrandbits(64):016x}"]),
            pidns=rnd.choice([0, 4026531836, 2**64 - 1, rnd.getrandbits(64)]),
            pid=rnd.choice([0, 1, 2**22, 2**31 - 1, rnd.getrandbits(31)]),
            ticks=rnd.choice([0, 1, 2**63 - 1, rnd.getrandbits(63)]),
        )

    def liveness() -> tuple[bool | None, ...]:
        return tuple(rnd.choice(f.LIVENESS) for _ in range(rnd.randint(1, 4)))

    for _ in range(rnd.randint(0, 14)):
        ledger = f.assign_step(
            ledger,
            rnd.choice(runs),
            owner(),
            rnd.choice([f.NOW - 100, f.NOW, f.NOW + 1, rnd.randint(1, 2**33)]),
            clock=rnd.choice([f.NOW - 100, f.NOW, f.NOW + 1]),
            liveness=liveness(),
        )
    f.round_trips(ledger)
    obj: Any = f._generation.dump(ledger)
    if rnd.random() < 0.25:
        raw = json.dumps(obj, separators=(",", ":")).encode()
        buf = bytearray(raw)
        for _ in range(rnd.randint(1, 6)):
            pos = rnd.randint(0, len(buf))
            op = rnd.choice(["flip", "set", "insert", "delete", "truncate", "digit"])
            if op == "truncate":
                del buf[pos:]
            elif op == "insert":
                buf[pos:pos] = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 8)))
            elif op == "digit":
                buf[pos:pos] = rnd.choice([b"9", b"99999999999999", b"-", b"e9", b".5"])
            elif pos < len(buf):
                if op == "flip":
                    buf[pos] ^= 1 << rnd.randint(0, 7)
                elif op == "set":
                    buf[pos] = rnd.getrandbits(8)
                else:
                    del buf[pos : pos + rnd.randint(1, 4)]
        c["byte_mutations"] += 1
        try:
            parsed = f.read_and_parse(scratch, bytes(buf))
        except ValueError:
            c["rejected"] += 1
            return
        if parsed is None:
            c["rejected"] += 1
            return
    else:
        obj = _mutate(rnd, obj)
        c["json_mutations"] += 1
        try:
            parsed = _generation.parse(obj)
        except ValueError:
            c["rejected"] += 1
            return
    c["accepted"] += 1
    f.round_trips(parsed)
    for _ in range(rnd.randint(1, 4)):
        existing = [e.run for e in parsed.entries]
        run = (
            rnd.choice(existing)
            if existing and rnd.random() < 0.5
            else f"{rnd.getrandbits(64):016x}"
        )
        hint = rnd.choice(
            [None, 0, 1, f.NOW, f.NOW + f.MAX_AHEAD, 10**12, f.MAX_START, rnd.uniform(-1e12, 1e12)]
        )
        clock = rnd.choice([f.NOW, f.NOW - 1, f.NOW - 86400, f.NOW + 86400, 1, 2**31 - 1])
        known = rnd.choice([None, 1, f.NOW, f.NOW + f.MAX_AHEAD + 1, f.MAX_START, 2**33 - 1])
        parsed = f.assign_step(
            parsed, run, owner(), hint, clock=clock, liveness=liveness(), known=known
        )
        f.round_trips(parsed)
        c["assign_steps"] += 1


def scenario_fuzz(base: Path, prof: dict[str, Any], rng: random.Random, res: Result) -> None:
    scratch = base / "fuzz"
    scratch.mkdir(mode=0o700)
    seed = rng.getrandbits(32)
    total = 0
    total_t = 0.0
    for index, (name, body, strategies) in enumerate(_hyp_properties(scratch)):
        began = time.monotonic()
        count, failure = _run_property(body, strategies, prof["hyp_examples"], seed + index)
        took = time.monotonic() - began
        total += count
        total_t += took
        res.figures[f"hypothesis {name}"] = {
            "examples": count,
            "seconds": round(took, 1),
            "per_s": round(count / took),
        }
        say(
            f"  hypothesis {name:<36} {count:>7} examples in {took:6.1f} s = "
            f"{count / took:6.0f}/s (seed {seed + index})"
        )
        if failure:
            res.violate("fuzz-property", property=name, seed=seed + index, failure=failure[-2000:])
    c: Counter[str] = Counter()
    began = time.monotonic()
    failures = 0
    for index in range(prof["mutator_examples"]):
        try:
            _mutator_example(seed, index, scratch, c)
        except Exception as exc:
            failures += 1
            if failures <= 10:
                res.violate(
                    "fuzz-mutator",
                    repro=f"--fuzz-repro {seed}:{index}",
                    error=f"{type(exc).__name__}: {exc}"[:600],
                )
    took = time.monotonic() - began
    n = prof["mutator_examples"]
    res.figures["seeded mutator"] = {
        "examples": n,
        "seed": seed,
        "seconds": round(took, 1),
        "per_s": round(n / took),
        **dict(c),
        "unexpected_exceptions": failures,
    }
    say(
        f"  seeded mutator (seed {seed}) {n:>7} examples in {took:6.1f} s = {n / took:6.0f}/s: "
        f"{c['accepted']} parsed, {c['rejected']} rejected (ValueError), "
        f"{c['assign_steps']} assign steps round-tripped; unexpected exceptions {failures}"
    )
    res.figures["total"] = {
        "examples": total + n,
        "hypothesis_examples": total,
        "mutator_examples": n,
        "violations": len(res.violations),
    }
    say(
        f"  total {total + n} examples (hypothesis {total} in {total_t:.1f} s, mutator {n}); "
        f"unexpected exceptions / failed properties: {len(res.violations)}"
    )


def fuzz_repro(spec: str) -> int:
    seed, index = (int(x) for x in spec.split(":"))
    scratch = Path(tempfile.mkdtemp(prefix="workerid-soak-repro-"))
    try:
        c: Counter[str] = Counter()
        _mutator_example(seed, index, scratch, c)
        print(f"example {spec}: no failure ({dict(c)})")
        return 0
    except Exception:
        traceback.print_exc()
        return 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# --- 5. many runs beside a live one -------------------------------------------------------


def scenario_beside(base: Path, prof: dict[str, Any], rng: random.Random, res: Result) -> None:
    lock = base / "locks-beside"
    env = env_for(lock, WORKERID_NAMESPACE="soak-beside")
    runs = itertools.count()

    def server(workers: int) -> Server:
        return start_server(base / f"beside{next(runs)}", workers, env)

    long = server(1)
    (first,) = long.identities(expect=1)
    seen: list[dict[str, Any]] = []
    others = 0
    began = time.monotonic()
    try:
        for n in range(prof["beside"]):
            stalled = n % 2 == 1
            if stalled:
                state_loss._stall_master_and_kill(long)
            else:
                (victim,) = long.identities(expect=1)
                long.kill9(victim["pid"])
            # other servers come and go meanwhile: one or two, sometimes two at once
            batch = [server(rng.choice((1, 1, 2))) for _ in range(rng.choice((1, 1, 2)))]
            everyone = []
            for other in batch:
                everyone += other.identities()
                others += 1
            if not stalled:
                everyone += long.identities(expect=1)
            dups = duplicates(everyone)
            if dups:
                res.violate("duplicate", round=n, ids=dups, live=live_ids(everyone))
            for other in batch:
                stop_server(other)
                shutil.rmtree(other.out, ignore_errors=True)
            if stalled:
                seen.append(state_loss._resume(long))
            else:
                seen.append(long.identities(expect=1)[0])
        # The promise here is the run's start time and generation (tests/test_state_loss.py's
        # _check_stable also wants ID 1 back; it is only guaranteed when no other server of
        # the namespace holds 1 at the replacement's election, which this race allows).
        for index, w in enumerate(seen):
            if (w["start_time"], w["generation"]) != (first["start_time"], first["generation"]):
                res.violate(
                    "live-run-start-changed",
                    round=index,
                    got=(w["start_time"], w["generation"]),
                    want=(first["start_time"], first["generation"]),
                )
    finally:
        stop_server(long)
    took = time.monotonic() - began
    changed = sum(
        1
        for w in seen
        if (w["start_time"], w["generation"]) != (first["start_time"], first["generation"])
    )
    not_one = [(i, w["worker_id"]) for i, w in enumerate(seen) if w["worker_id"] != 1]
    res.figures = {
        "replacements": len(seen),
        "replacements_not_id_1": not_one,
        "other_servers": others,
        "seconds": round(took, 1),
        "changed": changed,
        "violations": len(res.violations),
    }
    say(
        f"  long-lived run (start {first['start_time']}): {len(seen)} replacements (half with "
        f"the master stalled), {others} other servers came and went, in {took:.1f} s; "
        f"start time or generation changed: {changed}; ID other than 1 (another server of "
        f"the namespace held 1): {len(not_one)} {not_one[:5]}; "
        f"violations {len(res.violations)}"
    )


# --- main ---------------------------------------------------------------------------------

RUNNERS = {
    "kill": scenario_kill,
    "restarts": scenario_restarts,
    "hostile": scenario_hostile,
    "fuzz": scenario_fuzz,
    "beside": scenario_beside,
}
TITLES = {
    "kill": "1. kill -9 replacements",
    "restarts": "2. restarts (plain master, then PID 1 of a fresh PID namespace)",
    "hostile": "3. hostile lock directories",
    "fuzz": "4. fuzz: ledger parser + assign + dump/parse round trip",
    "beside": "5. many runs beside a live one",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="short")
    parser.add_argument("--json", metavar="FILE", help="write every figure to FILE")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    parser.add_argument("--fuzz-repro", metavar="SEED:I", help="replay one mutator example")
    args = parser.parse_args(argv)
    if args.fuzz_repro:
        return fuzz_repro(args.fuzz_repro)
    imported = Path(workerid.__file__).resolve().parent
    if imported != SRC / "workerid":
        print(f"workerid imported from {imported}, not this tree's {SRC}", file=sys.stderr)
        return 2
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(only) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}")
    prof = PROFILES[args.profile]
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "little")
    rng = random.Random(seed)
    base = Path(tempfile.mkdtemp(prefix="workerid-soak-"))
    os.chmod(base, 0o755)  # workers may run as nobody (hostile cases)

    def on_signal(signo: int, _frame: object) -> None:
        raise SystemExit(128 + signo)

    signal.signal(signal.SIGTERM, on_signal)
    say(
        f"workerid soak campaign: profile {args.profile}, seed {seed}, "
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, {time.strftime('%Y-%m-%d')}"
    )
    began = time.monotonic()
    results: list[Result] = []
    try:
        for name in SCENARIOS:
            if name not in only:
                continue
            say(f"\n{TITLES[name]}")
            res = Result(name)
            t0 = time.monotonic()
            try:
                RUNNERS[name](base, prof, rng, res)
            except Exception as exc:
                res.violate(
                    "scenario-crashed",
                    error="".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[
                        -1500:
                    ],
                )
            res.seconds = time.monotonic() - t0
            say(f"  ({name}: {res.seconds:.1f} s, violations {len(res.violations)})")
            results.append(res)
    finally:
        cleanup_all()
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    wall = time.monotonic() - began
    total = sum(len(r.violations) for r in results)
    say("")
    for r in results:
        say(f"  {r.name:<9} {r.seconds:7.1f} s  violations {len(r.violations)}")
    say(f"wall time {wall:.1f} s")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "profile": args.profile,
                    "seed": seed,
                    "wall_s": round(wall, 1),
                    "cpus": os.cpu_count(),
                    "scenarios": [dataclasses.asdict(r) for r in results],
                    "violations": total,
                },
                indent=2,
                default=str,
            )
        )
    say(f"SOAK RESULT: violations={total}")
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
