"""The work a master does before each fork for its child (issue 14), and when it is not used.

``_identity._premake`` runs in the before-fork handler of a process that imported workerid:
the child's settings, detection, run and ledger entry, read once in the master. A child
uses them (``_proc.premade == "used"``) only if every input is still what it would read
itself; each test here changes one input after the fork and checks that the child then
answers exactly what the control (the same child without them) answers. See also
``test_master_precompute.py`` (changes the master makes between two forks).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from helpers import env_for, run_script, wait_for

HELPER = Path(__file__).parent / "helpers" / "premade.py"


def _run(change: str, tmp: Path, lock_dir: Path | None, **env: str) -> dict[str, dict[str, Any]]:
    out = tmp / f"{change}.jsonl"
    out.touch()
    out.chmod(0o666)  # children that setuid report too
    environ = env_for(lock_dir or tmp / "unused", PREMADE=f"{change}:{out}", **env)
    if lock_dir is None:
        del environ["WORKERID_DIR"]
    for var in ("WEB_CONCURRENCY", "XDG_RUNTIME_DIR", "GUNICORN_CMD_ARGS"):
        environ.pop(var, None)
    run_script(HELPER, environ, f"{change} is not possible here")
    # "orphan": the master exits before its children report
    lines = wait_for(
        lambda: ls if len(ls := out.read_text().splitlines()) == 2 else None,
        f"{change}: the two children's results",
        timeout=30,
    )
    got = {x["name"]: x for x in map(json.loads, lines)}
    assert set(got) == {"A", "B"}, got
    assert got["B"]["premade"] is None  # the control dropped it
    return got


def _same(got: dict[str, dict[str, Any]], *, own_run: bool = False) -> dict[str, Any]:
    """A (the master's work, or its refusal) answers exactly what B (the control) does.

    ``own_run``: each child is a server of its own (its run names it), as it must be."""
    a, b = (dict(got[n]["identity"]) for n in "AB")
    for ident in (a, b):
        del ident["pid"]
        if own_run or ident["supervisor_pid"] is None:
            assert ident["supervisor_pid"] is None, ident
            ident["generation"] = ident["start_time"] = None
            ident["degraded"] = [re.sub(r"\d+", "N", d) for d in ident["degraded"]]
    assert a == b
    return a


def test_unchanged_the_child_uses_the_masters_work(shared_tmp: Path, lock_dir: Path) -> None:
    got = _run("none", shared_tmp, lock_dir)
    ident = _same(got)
    assert got["A"]["premade"] == "used"
    assert ident["worker_id"] == 1
    assert ident["start_time_source"] == "ledger"
    assert ident["supervisor_pid"] == got["A"]["ppid"]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("namespace", "environment"),
        ("count", "environment"),
        ("configure", "configure"),
        ("modules", "modules"),
        ("published", "modules"),
        ("master-title", "parent's command line"),
    ],
)
def test_changed_in_the_child_after_the_fork(
    shared_tmp: Path, lock_dir: Path, change: str, reason: str
) -> None:
    got = _run(change, shared_tmp, lock_dir)
    ident = _same(got)
    assert got["A"]["premade"] == f"stale: {reason}"
    if change == "namespace":
        assert ident["namespace"] == "changed-in-child"
    elif change == "count":
        assert (ident["worker_count"], ident["worker_count_source"]) == (3, "env")
    elif change == "configure":
        assert ident["namespace"] == "configured-in-child"
    elif change == "modules":
        assert (ident["loader"], ident["worker_id"]) == ("gunicorn", None)


def test_tmpdir_changed_in_the_child(shared_tmp: Path) -> None:
    # the default lock directory comes from TMPDIR (for any user but root)
    dirs = [shared_tmp / "tmp1", shared_tmp / "tmp2"]
    for path in dirs:
        path.mkdir()
        if os.geteuid() == 0:
            os.chown(path, 65534, 65534)
    got = _run(
        "tmpdir",
        shared_tmp,
        None,
        TMPDIR=str(dirs[0]),
        PREMADE_TMP2=str(dirs[1]),
        PREMADE_AS="65534",
    )
    ident = _same(got)
    assert got["A"]["premade"] == "stale: environment"
    assert ident["lock_dir"].startswith(str(dirs[1]))


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to setuid")
def test_setuid_in_the_child(shared_tmp: Path) -> None:
    lock_dir = shared_tmp / "nobody"
    lock_dir.mkdir()
    os.chown(lock_dir, 65534, 65534)
    got = _run("setuid", shared_tmp, lock_dir)
    assert _same(got)["worker_id"] == 1
    assert got["A"]["premade"] == "stale: ids"


def test_own_command_line_changed_in_the_child(shared_tmp: Path, lock_dir: Path) -> None:
    # a setproctitle in a worker: no longer a copy of its parent, a server of its own
    got = _run("title", shared_tmp, lock_dir)
    _same(got, own_run=True)
    assert got["A"]["premade"] == "stale: command line"


def test_ledger_replaced_after_the_fork(shared_tmp: Path, lock_dir: Path) -> None:
    got = _run("ledger", shared_tmp, lock_dir)
    _same(got)
    assert got["A"]["premade"] == "used; ledger read again"


def test_parent_gone_before_the_first_call(shared_tmp: Path, lock_dir: Path) -> None:
    got = _run("orphan", shared_tmp, lock_dir)
    _same(got, own_run=True)
    assert got["A"]["premade"] == "stale: parent"
    assert got["A"]["ppid"] != got["A"]["identity"]["supervisor_pid"]


def test_changed_in_the_master_between_forks_is_made_anew(shared_tmp: Path, lock_dir: Path) -> None:
    got = _run("master-env", shared_tmp, lock_dir)
    assert (_same(got)["worker_count"], got["A"]["identity"]["worker_count_source"]) == (5, "env")
    assert got["A"]["premade"] == "used"


def test_nothing_is_made_when_the_parent_may_still_become_a_worker(
    shared_tmp: Path, lock_dir: Path
) -> None:
    # a named namespace and a master exec'd by another program: its child is a worker only
    # as long as the master holds no ID (_helpers.find), which it may take after the fork
    got = _run("named", shared_tmp, lock_dir, WORKERID_NAMESPACE="named")
    assert _same(got)["worker_id"] == 1
    assert got["A"]["premade"] is None


_FORKS = """
import os, sys, time, workerid
t = time.perf_counter()
for _ in range(1000):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
spent = time.perf_counter() - t
if os.fork() > 0:  # a daemonising fork: the parent exits, the child forks on
    os._exit(0)
pid = os.fork()
if pid == 0:
    os._exit(0)
os.waitpid(pid, 0)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(spent))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
"""


def _tree(root: Path) -> dict[str, tuple[int, int, int, int]]:
    found = {}
    for path in [root, *root.rglob("*")]:
        st = path.lstat()
        found[str(path)] = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    return found


@pytest.mark.parametrize("existing", [False, True])
def test_a_thousand_forks_without_a_question_write_nothing(
    shared_tmp: Path, existing: bool
) -> None:
    lock_dir = shared_tmp / "state" / "locks"
    if existing:  # a run's state as its first worker left it: the master reads it, only
        subprocess.run(
            [sys.executable, "-c", "import workerid; workerid.worker_id()"],
            env=env_for(lock_dir),
            check=True,
            timeout=60,
        )
    before = _tree(shared_tmp / "state") if existing else None
    done = shared_tmp / "done"
    subprocess.run(
        [sys.executable, "-c", _FORKS, str(done)], env=env_for(lock_dir), check=True, timeout=120
    )
    deadline = time.monotonic() + 30
    while not done.exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    if existing:
        assert _tree(shared_tmp / "state") == before
    else:
        assert not (shared_tmp / "state").exists()


_THREADED = """
import json, os, sys, threading, workerid
from workerid import _identity
N = int(sys.argv[2])
stop = threading.Event()
def busy():  # another thread of the master asks workerid, read-only, all along
    while not stop.is_set():
        _identity.peek()
        workerid.settings()
t = threading.Thread(target=busy)
t.start()
first = os.fork()
if first == 0:
    workerid.worker_id()
    os._exit(0)
os.waitpid(first, 0)
report_r, report_w = os.pipe()
go_r, go_w = os.pipe()
pids = []
for _ in range(N):
    pid = os.fork()
    if pid == 0:
        os.close(report_r); os.close(go_w)
        ident = workerid.identity()
        line = [_identity._proc.premade, ident.worker_id, ident.generation, ident.start_time]
        os.write(report_w, (json.dumps(line) + "\\n").encode())
        os.read(go_r, 1)  # hold the ID until every sibling has reported
        os._exit(0)
    pids.append(pid)
stop.set()
t.join()
os.close(report_w); os.close(go_r)
buf = b""
while buf.count(b"\\n") < N:
    chunk = os.read(report_r, 65536)
    if not chunk:
        break
    buf += chunk
os.close(go_w)
for pid in pids:
    os.waitpid(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(buf.decode())
"""


def test_forks_while_another_thread_asks(shared_tmp: Path, lock_dir: Path) -> None:
    out = shared_tmp / "threaded.jsonl"
    n = 24
    subprocess.run(
        [sys.executable, "-c", _THREADED, str(out), str(n)],
        env=env_for(lock_dir),
        check=True,
        timeout=120,
    )
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == n
    assert {r[0] for r in rows} == {"used"}, rows
    assert sorted(r[1] for r in rows) == list(range(1, n + 1))
    assert len({(r[2], r[3]) for r in rows}) == 1


_APP = """
import json, workerid
from workerid import _identity
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json"), ("Connection", "close")])
    now = workerid.identity().as_dict()
    return [json.dumps({"now": now, "premade": _identity._proc.premade}).encode()]
"""


@pytest.mark.skipif(
    not (Path(sys.executable).parent / "gunicorn").exists(), reason="gunicorn not in this venv"
)
@pytest.mark.parametrize("hooks", [True, False], ids=["hooks", "no-hooks"])
def test_gunicorn_preload_workers_use_the_arbiters_work(
    shared_tmp: Path, lock_dir: Path, hooks: bool
) -> None:
    # The hooks' post_fork publishes the arbiter's count in each worker before its first
    # call: the arbiter made its work with that count (its nworkers_changed hook's page).
    from test_fork_servers import free_port, run_server

    (shared_tmp / "app.py").write_text(_APP)
    port = free_port()
    argv = [str(Path(sys.executable).parent / "gunicorn"), "--preload", "-w", "3",
            "-b", f"127.0.0.1:{port}", "app:application"]  # fmt: skip
    argv += ["-c", "python:workerid.gunicorn"] if hooks else []
    answers = run_server(argv, shared_tmp, lock_dir, port, 3)
    # a fresh start forks all three before any asks: the first to ask records the run's
    # entry, so each reads the ledger itself ("used; ledger read again")
    assert all(a["premade"].startswith("used") for a in answers), answers
    now = [a["now"] for a in answers]
    assert sorted(n["worker_id"] for n in now) == [1, 2, 3]
    assert {(n["worker_count"], n["worker_count_source"]) for n in now} == {
        (3, "gunicorn") if hooks else (3, "procfs")
    }
    assert len({(n["generation"], n["start_time"]) for n in now}) == 1
