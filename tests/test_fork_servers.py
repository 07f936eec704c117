"""Fork semantics of real servers that load the app in their master first.

uWSGI without ``lazy-apps`` and gunicorn with ``--preload`` import the app
(and so may call workerid) in the master, then fork the workers. uWSGI forks
in C without running Python's at-fork handlers; gunicorn uses ``os.fork``.
Either way every worker must elect its own ID. (The full matrix of servers,
restarts and reloads is ``workerid verify``.)
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import env_for

BIN = Path(sys.executable).parent
APP = """
import json, os, workerid
AT_IMPORT = workerid.identity().as_dict()
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json"), ("Connection", "close")])
    return [json.dumps({"at_import": AT_IMPORT, "now": workerid.identity().as_dict()}).encode()]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def collect(port: int, workers: int, timeout: float = 90) -> dict[int, dict[str, Any]]:
    seen: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    while len(seen) < workers and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                data = json.load(r)
            seen[data["now"]["pid"]] = data
        except OSError:
            time.sleep(0.1)
    return seen


@pytest.fixture
def app_dir(shared_tmp: Path) -> Iterator[Path]:
    (shared_tmp / "app.py").write_text(APP)
    yield shared_tmp


@contextlib.contextmanager
def serving(argv: list[str], cwd: Path, lock_dir: Path, **extra: str) -> Iterator[Any]:
    """A real server started with ``argv``, stopped (SIGINT, then SIGKILL) on the way out."""
    env = env_for(lock_dir, **extra)
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_server(
    argv: list[str], cwd: Path, lock_dir: Path, port: int, workers: int, **extra: str
) -> list[dict[str, Any]]:
    with serving(argv, cwd, lock_dir, **extra) as proc:
        seen = collect(port, workers)
    assert len(seen) == workers, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
    return list(seen.values())


@pytest.mark.skipif(not (BIN / "uwsgi").exists(), reason="uwsgi not installed in this venv")
@pytest.mark.parametrize("lazy", [False, True], ids=["preload", "lazy-apps"])
def test_uwsgi_workers_get_uwsgi_ids_whatever_the_master_saw(
    app_dir: Path, lock_dir: Path, lazy: bool
) -> None:
    port = free_port()
    argv = [str(BIN / "uwsgi"), "--master", "--processes", "3", "--die-on-term",
            "--http-socket", f"127.0.0.1:{port}", "--wsgi-file", "app.py"]  # fmt: skip
    argv += ["--lazy-apps"] if lazy else []
    answers = run_server(argv, app_dir, lock_dir, port, 3)
    assert sorted(a["now"]["worker_id"] for a in answers) == [1, 2, 3]
    assert {a["now"]["worker_id_source"] for a in answers} == {"uwsgi"}
    assert {a["now"]["worker_count"] for a in answers} == {3}
    assert len({a["now"]["start_time"] for a in answers}) == 1
    if not lazy:
        # The app was imported once, in the master, which is no worker.
        assert {a["at_import"]["worker_id"] for a in answers} == {None}


@pytest.mark.skipif(not (BIN / "gunicorn").exists(), reason="gunicorn not installed in this venv")
def test_gunicorn_ttin_ttou_every_live_worker_sees_the_arbiters_count(
    app_dir: Path, lock_dir: Path
) -> None:
    """With the hooks, workers forked before a TTIN see the new count too."""
    port = free_port()
    argv = [str(BIN / "gunicorn"), "-w", "2", "-b", f"127.0.0.1:{port}",
            "-c", "python:workerid.gunicorn", "app:application"]  # fmt: skip
    with serving(argv, app_dir, lock_dir) as proc:
        first = collect(port, 2)
        assert {a["now"]["worker_count"] for a in first.values()} == {2}
        proc.send_signal(signal.SIGTTIN)
        deadline = time.monotonic() + 20
        seen: dict[int, dict[str, Any]] = {}
        while time.monotonic() < deadline:
            seen = collect(port, 3, timeout=5)
            if len(seen) == 3 and {a["now"]["worker_count"] for a in seen.values()} == {3}:
                break
        assert len(seen) == 3 and set(first) < set(seen), seen.keys()
        assert {(p, a["now"]["worker_count"]) for p, a in seen.items()} == {(p, 3) for p in seen}
        assert sorted(a["now"]["worker_id"] for a in seen.values()) == [1, 2, 3]


@pytest.mark.skipif(not (BIN / "gunicorn").exists(), reason="gunicorn not installed in this venv")
def test_gunicorn_worker_count_from_gunicorn_cmd_args(app_dir: Path, lock_dir: Path) -> None:
    port = free_port()
    argv = [str(BIN / "gunicorn"), "-b", f"127.0.0.1:{port}", "app:application"]
    answers = run_server(argv, app_dir, lock_dir, port, 3, GUNICORN_CMD_ARGS="--workers 3")
    assert sorted(a["now"]["worker_id"] for a in answers) == [1, 2, 3]
    assert {(a["now"]["worker_count"], a["now"]["worker_count_source"]) for a in answers} == {
        (3, "env")
    }


@pytest.mark.skipif(not (BIN / "gunicorn").exists(), reason="gunicorn not installed in this venv")
def test_gunicorn_count_in_a_config_file_without_the_hook_says_how_to_get_it(
    app_dir: Path, lock_dir: Path
) -> None:
    port = free_port()
    (app_dir / "conf.py").write_text("workers = 3\n")
    argv = [str(BIN / "gunicorn"), "-c", "conf.py", "-b", f"127.0.0.1:{port}", "app:application"]
    answers = run_server(argv, app_dir, lock_dir, port, 3)
    assert sorted(a["now"]["worker_id"] for a in answers) == [1, 2, 3]
    assert {a["now"]["worker_count"] for a in answers} == {None}
    assert all(any("python:workerid.gunicorn" in r for r in a["now"]["degraded"]) for a in answers)


@pytest.mark.skipif(not (BIN / "gunicorn").exists(), reason="gunicorn not installed in this venv")
def test_gunicorn_preload_master_gives_way_to_its_workers(app_dir: Path, lock_dir: Path) -> None:
    port = free_port()
    argv = [str(BIN / "gunicorn"), "--preload", "-w", "3", "-b", f"127.0.0.1:{port}",
            "-c", "python:workerid.gunicorn", "app:application"]  # fmt: skip
    answers = run_server(argv, app_dir, lock_dir, port, 3)
    assert sorted(a["now"]["worker_id"] for a in answers) == [1, 2, 3]
    assert {a["now"]["worker_count"] for a in answers} == {3}
    assert {a["now"]["worker_count_source"] for a in answers} == {"gunicorn"}
    assert len({a["now"]["start_time"] for a in answers}) == 1
    master = answers[0]["at_import"]
    assert master["worker_id"] is None
    assert master["start_time"] == answers[0]["now"]["start_time"]


def test_workers_started_by_spawn_find_their_supervisor(shared_tmp: Path, lock_dir: Path) -> None:
    """uvicorn/hypercorn start workers with multiprocessing's spawn method."""
    script = shared_tmp / "spawner.py"
    script.write_text(
        "import json, multiprocessing as mp, sys\n"
        "def work(q, done):\n"
        "    import workerid; q.put(workerid.identity().as_dict()); done.wait(60)\n"
        "if __name__ == '__main__':\n"
        "    ctx = mp.get_context('spawn'); q = ctx.Queue(); done = ctx.Event()\n"
        "    ps = [ctx.Process(target=work, args=(q, done)) for _ in range(3)]\n"
        "    [p.start() for p in ps]; out = [q.get(timeout=60) for _ in ps]\n"
        "    done.set(); [p.join() for p in ps]\n"
        "    print(json.dumps(out))\n"
    )
    env = env_for(lock_dir)
    out = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, check=True, timeout=120
    )
    idents = json.loads(out.stdout)
    assert sorted(i["worker_id"] for i in idents) == [1, 2, 3]
    assert len({i["supervisor_pid"] for i in idents}) == 1
    assert len({i["start_time"] for i in idents}) == 1


@pytest.mark.skipif(not (BIN / "gunicorn").exists(), reason="gunicorn not installed in this venv")
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for gunicorn --user")
def test_gunicorn_workers_that_drop_to_another_user(app_dir: Path, lock_dir: Path) -> None:
    lock_dir.mkdir(mode=0o700)
    os.chown(lock_dir, 65534, 65534)
    port = free_port()
    argv = [str(BIN / "gunicorn"), "-w", "2", "-b", f"127.0.0.1:{port}", "--user", "nobody",
            "--group", "nogroup", "-c", "python:workerid.gunicorn", "app:application"]  # fmt: skip
    answers = run_server(argv, app_dir, lock_dir, port, 2)
    assert sorted(a["now"]["worker_id"] for a in answers) == [1, 2]
    assert {a["now"]["worker_count"] for a in answers} == {2}
