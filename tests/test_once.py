"""once(): bounded waits, outcomes, recorded failures, degraded modes, fork safety.

Where the behaviour is between processes, the processes are real: a held
record lock in a subprocess, or a script that forks workers of one master (so
they share one server run) and reports what each saw.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import workerid
from helpers import env_for
from workerid import _identity, _once
from workerid._once import (
    OnceFailed,
    OnceResult,
    OnceTimeout,
    OnceUnavailable,
    Outcome,
    run_once,
    try_once,
    wait_done,
)

#: shared by the scripts: fork n workers of this master, each runs body(i)
#: and reports a JSON object; returns them once all have reported
PRELUDE = """
import json, logging, os, sys, threading, time
import workerid
from workerid import _once
from workerid._once import Outcome, run_once

def workers(n, body):
    r, w = os.pipe()
    hold_r, hold_w = os.pipe()
    pids = []
    for i in range(n):
        pid = os.fork()
        if pid == 0:
            os.close(r)
            os.close(hold_w)
            try:
                out = body(i)
            except BaseException as exc:
                out = {"exc": type(exc).__name__, "msg": str(exc)}
            out["pid"] = os.getpid()
            os.write(w, (json.dumps(out) + "\\n").encode())
            os.read(hold_r, 1)  # workers keep their IDs until all have reported
            os._exit(0)
        pids.append(pid)
    os.close(w)
    data = b""
    while data.count(b"\\n") < n:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        data += chunk
    os.close(hold_w)
    for pid in pids:
        os.waitpid(pid, 0)
    return [json.loads(line) for line in data.decode().splitlines()]
"""


def run_script(lock_dir: Path, body: str, timeout: float = 20) -> Any:
    """Run PRELUDE + body in a fresh interpreter; its last stdout line is JSON."""
    env = env_for(lock_dir)
    proc = subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(body)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture
def fast_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_once, "WARN_INTERVAL", 0.1)


class Holder:
    """A thread inside run_once(name) until released."""

    def __init__(self, name: str, fn: Callable[[], Any] | None = None) -> None:
        self.inside = threading.Event()
        self.release = threading.Event()
        self.result: OnceResult[Any] | None = None
        self.error: BaseException | None = None

        def body() -> Any:
            self.inside.set()
            self.release.wait(10)
            return fn() if fn is not None else "held"

        def run() -> None:
            try:
                self.result = run_once(name, body)
            except BaseException as exc:
                self.error = exc

        self.thread = threading.Thread(target=run)
        self.thread.start()
        assert self.inside.wait(5)

    def finish(self) -> None:
        self.release.set()
        self.thread.join(10)


@pytest.fixture
def holders() -> Iterator[Callable[..., Holder]]:
    made: list[Holder] = []

    def make(name: str, fn: Callable[[], Any] | None = None) -> Holder:
        made.append(Holder(name, fn))
        return made[-1]

    yield make
    for h in made:
        h.finish()


def marker(lock_dir: Path, name: str) -> dict[str, Any]:
    (path,) = lock_dir.rglob(f"once.{name}.json")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


# --- outcomes in one process -------------------------------------------------------


def test_ran_then_done_and_the_marker_format(fresh: Path) -> None:
    first = run_once("seed", lambda: 42)
    assert (first.state, first.value, first.ran, first.done) == (Outcome.RAN, 42, True, True)
    again = run_once("seed", lambda: 43)
    assert (again.state, again.value, again.ran) == (Outcome.DONE, None, False)
    data = marker(fresh, "seed")
    # the keys of 0.1, plus the earlier runs it succeeded in (none yet)
    assert set(data) == {"v", "name", "generation", "recent", "pid", "at"}
    assert data["recent"] == []
    assert data["generation"] == workerid.identity().generation
    _identity._reset_for_tests()  # the memo goes; the marker on disk still says done
    assert run_once("seed", lambda: 44).state is Outcome.DONE
    assert isinstance(Outcome.DONE, str) and Outcome.DONE.value == "done"  # prints, logs, JSON


def test_a_marker_written_by_0_1_is_honoured(fresh: Path) -> None:
    generation = workerid.identity().generation
    ns_dir = _identity.state_dir()
    assert ns_dir is not None and generation is not None
    Path(ns_dir, "once.old.json").write_text(
        json.dumps({"v": 1, "name": "old", "generation": generation, "pid": 1, "at": 1})
    )
    os.chmod(Path(ns_dir, "once.old.json"), 0o600)
    assert run_once("old", lambda: pytest.fail("ran although done")).state is Outcome.DONE


def test_decorator_keeps_its_contract(fresh: Path) -> None:
    calls: list[int] = []

    @workerid.once("deco")
    def seed(x: int) -> int:
        calls.append(x)
        return x + 1

    assert seed(1) == 2
    assert seed(2) is None
    assert calls == [1]


def test_bad_arguments_are_refused_when_decorating() -> None:
    with pytest.raises(ValueError, match="degraded"):
        workerid.once("x", degraded="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout"):
        workerid.once("x", timeout=-1)


def test_calling_itself_from_inside_is_an_error_not_a_deadlock(fresh: Path) -> None:
    def inner() -> None:
        run_once("rec", lambda: None)

    with pytest.raises(RuntimeError, match="inside its own function"):
        run_once("rec", inner)
    assert run_once("rec", lambda: 1).state is Outcome.RAN  # nothing was left held


# --- every wait is bounded -------------------------------------------------------------


def test_the_wait_for_another_thread_is_bounded(
    fresh: Path, holders: Callable[..., Holder]
) -> None:
    h = holders("t")
    began = time.monotonic()
    busy = run_once("t", lambda: pytest.fail("ran while another thread runs it"), timeout=0.5)
    waited = time.monotonic() - began
    assert busy.state is Outcome.BUSY and not busy.done
    assert 0.5 <= waited < 1.5 and busy.waited >= 0.5
    assert busy.pid == os.getpid()

    began = time.monotonic()
    assert try_once("t", lambda: None).state is Outcome.BUSY
    assert time.monotonic() - began < 0.3

    began = time.monotonic()
    with pytest.raises(OnceTimeout) as caught:
        workerid.once("t", timeout=0.3)(lambda: None)()
    assert time.monotonic() - began < 1.3
    assert isinstance(caught.value, TimeoutError)
    assert caught.value.name == "t" and caught.value.waited >= 0.3
    assert "'t'" in str(caught.value) and "0.3" in str(caught.value)

    h.finish()
    assert h.result is not None and h.result.state is Outcome.RAN
    assert run_once("t", lambda: None).state is Outcome.DONE


@pytest.fixture
def held_by_another_process(fresh: Path) -> Iterator[Callable[[str], subprocess.Popen[str]]]:
    """A real process holding the record lock of once(name)."""
    procs: list[subprocess.Popen[str]] = []

    def hold(name: str) -> subprocess.Popen[str]:
        ns_dir = _identity.state_dir()
        assert ns_dir is not None
        path = os.path.join(ns_dir, f"once.{name}.lock")
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        code = (
            "import fcntl, os, sys, time\n"
            f"fd = os.open({path!r}, os.O_RDWR)\n"
            "fcntl.lockf(fd, fcntl.LOCK_EX)\n"
            "print('held', flush=True)\n"
            "time.sleep(30)\n"
        )
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline() == "held\n"
        procs.append(proc)
        return proc

    yield hold
    for proc in procs:
        proc.kill()
        proc.wait()


def test_the_wait_for_another_process_is_bounded_and_names_it(
    fresh: Path,
    held_by_another_process: Callable[[str], subprocess.Popen[str]],
    fast_warnings: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    proc = held_by_another_process("p")
    began = time.monotonic()
    busy = run_once("p", lambda: pytest.fail("ran while another worker runs it"), timeout=0.5)
    assert busy.state is Outcome.BUSY
    assert 0.5 <= time.monotonic() - began < 1.5
    assert busy.pid == proc.pid
    assert any(f"worker pid {proc.pid}" in r.getMessage() for r in caplog.records)
    assert wait_done("p", 0.2).state is Outcome.BUSY


def test_an_unbounded_wait_logs_while_it_waits(
    fresh: Path,
    held_by_another_process: Callable[[str], subprocess.Popen[str]],
    fast_warnings: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    proc = held_by_another_process("hang")
    threading.Timer(0.7, proc.kill).start()  # the hung worker dies: the lock is free
    caplog.set_level(logging.WARNING, logger="workerid")
    result = run_once("hang", lambda: "here", timeout=None)
    assert (result.state, result.value) == (Outcome.RAN, "here")
    still = [r.getMessage() for r in caplog.records if "still running" in r.getMessage()]
    assert len(still) >= 3, still
    assert all(f"worker pid {proc.pid}" in m for m in still)
    assert result.waited >= 0.6


def test_a_thread_wait_without_timeout_logs_too(
    fresh: Path,
    holders: Callable[..., Holder],
    fast_warnings: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = holders("slow")
    threading.Timer(0.5, h.release.set).start()
    assert run_once("slow", lambda: None).state is Outcome.DONE
    still = [r.getMessage() for r in caplog.records if "still running" in r.getMessage()]
    assert still and "another thread of this process" in still[0]


# --- failures ----------------------------------------------------------------------------


def test_a_failure_is_recorded_and_the_waiting_thread_does_not_retry(
    fresh: Path, holders: Callable[..., Holder]
) -> None:
    runs: list[int] = []

    def bad() -> None:
        runs.append(1)
        raise ValueError("boom")

    h = holders("bad", bad)
    waiter: list[BaseException] = []

    def wait() -> None:
        try:
            workerid.once("bad")(bad)()
        except BaseException as exc:
            waiter.append(exc)

    t = threading.Thread(target=wait)
    t.start()
    time.sleep(0.2)  # the waiter is waiting for the holder's attempt
    h.finish()
    t.join(5)
    assert isinstance(h.error, ValueError)  # the runner gets its own exception
    (failed,) = waiter
    assert isinstance(failed, OnceFailed) and failed.error == "ValueError: boom"
    assert failed.pid == os.getpid()
    assert runs == [1]
    data = marker(fresh, "bad")
    assert {"v", "name", "generation", "pid", "at"} <= set(data)
    assert data["generation"] == ""  # never succeeded: an 0.1 reader sees "not done"
    assert data["failed"]["generation"] == workerid.identity().generation
    assert data["failed"]["error"] == "ValueError: boom"
    status = wait_done("bad", 1)
    assert (status.state, status.error) == (Outcome.FAILED, "ValueError: boom")

    # A later, separate call tries again, and a success clears the failure.
    assert run_once("bad", lambda: "ok").value == "ok"
    assert "failed" not in marker(fresh, "bad")
    assert wait_done("bad", 1).state is Outcome.DONE


def test_an_interrupt_is_not_recorded_as_a_failure(fresh: Path) -> None:
    def interrupted() -> None:
        raise SystemExit(3)

    with pytest.raises(SystemExit):
        run_once("intr", interrupted)
    assert wait_done("intr", 1).state is Outcome.NOT_RUN
    assert run_once("intr", lambda: 1).state is Outcome.RAN


def test_wait_done_never_runs_it(fresh: Path, holders: Callable[..., Holder]) -> None:
    assert wait_done("w", 0).state is Outcome.NOT_RUN
    h = holders("w")
    began = time.monotonic()
    assert wait_done("w", 0.3).state is Outcome.BUSY
    assert time.monotonic() - began < 1.3
    h.finish()
    assert wait_done("w", 1).state is Outcome.DONE


# --- between processes ------------------------------------------------------------------


def test_waiters_never_proceed_before_the_init_has_finished(lock_dir: Path) -> None:
    rows = run_script(
        lock_dir,
        """
        def body(i):
            def init():
                time.sleep(1.0)
                return time.time()
            first = run_once("init", init, timeout=0.3)
            first_at = time.time()
            second = run_once("init", init, timeout=10)
            return {"first": first.state.value, "first_at": first_at, "value": first.value,
                    "waited": first.waited, "second": second.state.value,
                    "second_at": time.time()}
        print(json.dumps(workers(4, body)))
        """,
    )
    assert all("exc" not in r for r in rows), rows
    ran = [r for r in rows if r["first"] == "ran"]
    assert len(ran) == 1, rows
    finished = ran[0]["value"]
    others = [r for r in rows if r is not ran[0]]
    assert all(r["first"] in ("busy", "done") for r in others)
    assert any(r["first"] == "busy" for r in others)
    for r in others:
        if r["first"] == "busy":
            assert r["waited"] < 1.3 and r["first_at"] < finished
        else:  # DONE only ever after it finished
            assert r["first_at"] >= finished
        assert r["second"] == "done" and r["second_at"] >= finished


def test_a_failing_init_is_not_retried_by_every_waiting_worker(
    lock_dir: Path, shared_tmp: Path
) -> None:
    runs = shared_tmp / "runs"
    result = run_script(
        lock_dir,
        f"""
        def bad():
            with open({str(runs)!r}, "a") as f:
                f.write(f"{{os.getpid()}}\\n")
            time.sleep(0.5)
            raise ValueError("boom")

        def body(i, retry=False):
            try:
                r = run_once("bad", bad, timeout=10, retry=retry)
            except ValueError as exc:
                return {{"raised": str(exc)}}
            return {{"state": r.state.value, "error": r.error, "by": r.pid}}

        waited = workers(4, body)
        later = workers(1, body)  # a separate call after the failure: tries again
        retried = workers(3, lambda i: body(i, retry=True))
        print(json.dumps({{"waited": waited, "later": later, "retried": retried}}))
        """,
    )
    waited = result["waited"]
    raised = [r for r in waited if "raised" in r]
    assert len(raised) == 1, waited
    failed = [r for r in waited if r.get("state") == "failed"]
    assert len(failed) == 3, waited
    assert all(r["error"] == "ValueError: boom" and r["by"] == raised[0]["pid"] for r in failed)
    assert result["later"][0].get("raised") == "boom"
    # with retry=True every waiter tries in turn, as asked
    assert all(r.get("raised") == "boom" for r in result["retried"]), result["retried"]
    assert len(runs.read_text().splitlines()) == 1 + 1 + 3


def test_a_hung_init_in_another_worker_is_logged_with_its_pid(lock_dir: Path) -> None:
    rows = run_script(
        lock_dir,
        """
        _once.WARN_INTERVAL = 0.2
        def body(i):
            messages = []
            class Keep(logging.Handler):
                def emit(self, record):
                    messages.append(record.getMessage())
            logging.getLogger("workerid").addHandler(Keep())
            if i:
                time.sleep(0.2)  # worker 0 is inside it by now
            r = run_once("hang", lambda: time.sleep(1.2), timeout=None)
            return {"state": r.state.value, "messages": messages}
        print(json.dumps(workers(2, body)))
        """,
    )
    ran = [r for r in rows if r["state"] == "ran"]
    assert len(ran) == 1, rows
    (waiter,) = [r for r in rows if r["state"] == "done"]
    still = [m for m in waiter["messages"] if "still running" in m]
    assert len(still) >= 2, waiter
    assert f"worker pid {ran[0]['pid']}" in still[0]


def test_fork_while_a_thread_is_inside_once_does_not_deadlock_the_child(lock_dir: Path) -> None:
    out = run_script(
        lock_dir,
        """
        inside, release = threading.Event(), threading.Event()
        def slow():
            inside.set()
            release.wait(10)
            return "parent"
        t = threading.Thread(target=run_once, args=("x", slow))
        t.start()
        inside.wait(5)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            # This thread lock and record lock are held by a parent thread
            # that does not exist here. Unbounded on purpose: the child must
            # wait for the parent's run, then go on.
            began = time.monotonic()
            res = run_once("x", lambda: "child", timeout=None)
            line = json.dumps({"state": res.state.value, "waited": time.monotonic() - began})
            os.write(w, line.encode())
            os._exit(0)
        os.close(w)
        time.sleep(0.5)
        release.set()
        t.join()
        line = os.read(r, 4096).decode()
        os.waitpid(pid, 0)
        print(line)
        """,
        timeout=15,
    )
    assert out["state"] in ("ran", "done")
    assert 0.3 <= out["waited"] < 5  # it did wait for the parent's record lock


# --- degraded mode -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "worker_id", "runs"),
    [
        ("default", None, True),  # no IDs: every worker (0.1's rule)
        ("default", 1, True),
        ("default", 2, False),
        ("worker1", None, False),
        ("worker1", 1, True),
        ("every", 2, True),
        ("skip", 1, False),
    ],
)
def test_degraded_modes(
    fresh: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    mode: _once.Degraded,
    worker_id: int | None,
    runs: bool,
) -> None:
    fresh.write_text("")  # a file where the directory should be
    real = workerid.identity()
    fake = dataclasses.replace(real, worker_id=worker_id)
    monkeypatch.setattr(_identity, "identity", lambda: fake)
    calls: list[int] = []

    def seed() -> str:
        calls.append(1)
        return "v"

    result = run_once("deg", seed, degraded=mode)
    assert result.state is Outcome.DEGRADED and not result.done
    assert result.ran is runs and calls == ([1] if runs else [])
    assert result.value == ("v" if runs else None)
    assert "no usable lock directory" in result.detail
    assert any("no usable lock directory" in r.getMessage() for r in caplog.records)
    again = run_once("deg", seed, degraded=mode)
    assert again.state is Outcome.DEGRADED and not again.ran  # at most once per process
    assert wait_done("deg", 0).state is Outcome.DEGRADED


def test_degraded_raise(fresh: Path) -> None:
    fresh.write_text("")
    with pytest.raises(OnceUnavailable, match="no usable lock directory"):
        run_once("deg", lambda: None, degraded="raise")
    with pytest.raises(OnceUnavailable):
        workerid.once("deg", degraded="raise")(lambda: None)()
