"""The applications in examples/, each served by its real server, 4 workers.

Each test copies one example to a temporary directory, starts the command its
README gives on 127.0.0.1 with a free port (``WORKERID_DIR`` in the temporary
directory, this tree's src/ first on ``PYTHONPATH``), requests ``/`` until 4
distinct PIDs have answered, and checks what a user of the example relies on:
worker IDs exactly 1..4, the worker count 4, one start time, and the one-time
work done exactly once across the workers (the examples append a line per
event to the file ``EXAMPLE_EVENTS`` names). The server is stopped by PID
(SIGTERM, then SIGKILL of the process group this test created after 15 s).

A framework the test interpreter cannot import skips its example; gunicorn and
uvicorn are run by this interpreter (so they see the same packages), found
next to it or in /opt/workerid/venv/bin. Apache's embedded Python honours
PYTHONPATH too, so it loads this tree's src/ when www-data can read it, else
the copy installed in mod_wsgi-express's venv (scripts/test.sh installs this
tree there first).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from helpers import env_for
from helpers.serving import (
    VENV_BIN,
    find_program,
    free_port,
    mod_wsgi_skip,
    serving,
    tail,
    www_data,
)

pytestmark = pytest.mark.servers

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
WORKERS = 4
COLLECT_TIMEOUT = 60.0


def missing(*modules: str, program: str) -> str | None:
    """Why this example cannot run here, or None."""
    absent = [m for m in modules if importlib.util.find_spec(m) is None]
    if absent:
        return (
            f"{', '.join(absent)} not importable by {sys.executable} "
            "(scripts/setup-system.sh must install it for this example to run)"
        )
    if find_program(program) is None:
        return f"{program} not found next to {sys.executable} or in {VENV_BIN}"
    return None


def skip_unless(*modules: str, program: str) -> pytest.MarkDecorator:
    reason = missing(*modules, program=program)
    return pytest.mark.skipif(reason is not None, reason=reason or "")


def copy_example(name: str, dest: Path) -> Path:
    """The example, copied where the server (and www-data) can read it and write bytecode."""
    app = dest / name
    shutil.copytree(EXAMPLES / name, app, ignore=shutil.ignore_patterns("__pycache__"))
    for path in [app, *app.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return app


def get(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
            return json.load(r)  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None


def collect(proc: Any, port: int, log: Path) -> list[dict[str, Any]]:
    """One answer per worker, once ``WORKERS`` distinct PIDs have answered.

    Requests go out 8 at a time: a server that hands sequential requests to
    the same idle worker (mod_wsgi's daemon threads do) still shows them all.
    """
    seen: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + COLLECT_TIMEOUT
    with ThreadPoolExecutor(8) as pool:
        while len(seen) < WORKERS:
            if proc.poll() is not None:
                pytest.fail(f"server exited with {proc.returncode}:\n{tail(log)}")
            if time.monotonic() > deadline:
                pytest.fail(
                    f"only {len(seen)} of {WORKERS} workers answered within "
                    f"{COLLECT_TIMEOUT:.0f}s: {sorted(seen)}\n{tail(log)}"
                )
            answers = [a for a in pool.map(get, [port] * 8) if a is not None]
            for answer in answers:
                seen[answer["pid"]] = answer
            if not answers:
                time.sleep(0.2)
    return sorted(seen.values(), key=lambda a: (a["worker_id"] or 0, a["pid"]))


def events(path: Path, name: str) -> list[tuple[int, int | None]]:
    """(pid, worker_id) of every ``name`` line the example appended to ``path``."""
    found = []
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text().splitlines():
            event, pid, wid = line.split()
            if event == name:
                found.append((int(pid), None if wid == "None" else int(wid)))
    return found


def check_identities(answers: list[dict[str, Any]], log: Path) -> None:
    assert [a["worker_id"] for a in answers] == list(range(1, WORKERS + 1)), (answers, tail(log))
    assert {a["worker_count"] for a in answers} == {WORKERS}, answers
    starts = {a["start_time"] for a in answers}
    assert len(starts) == 1, answers
    assert None not in starts, answers


def check_once(path: Path, name: str, answers: list[dict[str, Any]]) -> tuple[int, int | None]:
    """``name`` ran exactly once, in one of the workers that answered."""
    ran = events(path, name)
    assert len(ran) == 1, (name, ran, answers)
    assert ran[0][0] in {a["pid"] for a in answers}, (name, ran, answers)
    return ran[0]


# --- gunicorn: Flask and Django -------------------------------------------------


@skip_unless("flask", "gunicorn", program="gunicorn")
@pytest.mark.parametrize(
    "config",
    [["-w", str(WORKERS), "-c", "python:workerid.gunicorn"], ["-c", "gunicorn.conf.py"]],
    ids=["hooks-module", "gunicorn.conf.py"],
)
def test_flask_under_gunicorn(shared_tmp: Path, lock_dir: Path, config: list[str]) -> None:
    app = copy_example("flask", shared_tmp)
    port, log, record = free_port(), shared_tmp / "server.log", shared_tmp / "events"
    gunicorn = str(find_program("gunicorn"))
    # The command line's -b overrides gunicorn.conf.py's bind.
    argv = [sys.executable, gunicorn, *config, "-b", f"127.0.0.1:{port}", "app:app"]
    env = env_for(lock_dir, EXAMPLE_EVENTS=str(record))
    with serving(argv, app, env, log) as proc:
        answers = collect(proc, port, log)
    check_identities(answers, log)
    check_once(record, "warm-cache", answers)


@skip_unless("django", "gunicorn", program="gunicorn")
def test_django_under_gunicorn_migrates_once(shared_tmp: Path, lock_dir: Path) -> None:
    app = copy_example("django", shared_tmp)
    port, log, record = free_port(), shared_tmp / "server.log", shared_tmp / "events"
    data = shared_tmp / "data"
    gunicorn = str(find_program("gunicorn"))
    argv = [sys.executable, gunicorn, "-w", str(WORKERS), "-c", "python:workerid.gunicorn",
            "-b", f"127.0.0.1:{port}", "app:application"]  # fmt: skip
    env = env_for(lock_dir, EXAMPLE_EVENTS=str(record), DJANGO_DATA_DIR=str(data))
    with serving(argv, app, env, log) as proc:
        answers = collect(proc, port, log)
    check_identities(answers, log)
    check_once(record, "migrate", answers)
    # run_once said so in each worker: it ran in one, the others found it done.
    assert sorted(a["migrate"] for a in answers) == ["done"] * (WORKERS - 1) + ["ran"], answers
    assert {a["tables"] for a in answers} != {0}, answers
    assert (data / "db.sqlite3").is_file()


# --- uvicorn: FastAPI -----------------------------------------------------------


@skip_unless("fastapi", "uvicorn", program="uvicorn")
def test_fastapi_under_uvicorn_scheduler_in_worker_1_only(shared_tmp: Path, lock_dir: Path) -> None:
    app = copy_example("fastapi", shared_tmp)
    port, log, record = free_port(), shared_tmp / "server.log", shared_tmp / "events"
    uvicorn = str(find_program("uvicorn"))
    argv = [sys.executable, uvicorn, "--workers", str(WORKERS), "--host", "127.0.0.1",
            "--port", str(port), "app:app"]  # fmt: skip
    env = env_for(lock_dir, EXAMPLE_EVENTS=str(record))
    with serving(argv, app, env, log) as proc:
        answers = collect(proc, port, log)
    check_identities(answers, log)
    assert [a["worker_id"] for a in answers if a["scheduler"]] == [1], answers
    _, wid = check_once(record, "scheduler-started", answers)
    assert wid == 1


# --- Apache mod_wsgi: a plain WSGI app ----------------------------------------


_MOD_WSGI_SKIP = mod_wsgi_skip()


@pytest.mark.skipif(_MOD_WSGI_SKIP is not None, reason=_MOD_WSGI_SKIP or "")
def test_plain_wsgi_under_mod_wsgi_express(shared_tmp: Path, lock_dir: Path) -> None:
    app = copy_example("mod_wsgi", shared_tmp)
    port, log = free_port(), shared_tmp / "server.log"
    out = shared_tmp / "out"  # the workers append their events here
    record = out / "events"
    lock_dir.mkdir(mode=0o700)
    out.mkdir(mode=0o700)
    argv = [str(find_program("mod_wsgi-express")), "start-server", str(app / "app.wsgi"),
            "--processes", str(WORKERS), "--server-metrics",
            "--host", "127.0.0.1", "--port", str(port),
            "--server-root", str(shared_tmp / "server"), "--log-to-terminal"]  # fmt: skip
    user = www_data() if os.geteuid() == 0 else None
    if user is not None:
        argv += ["--user", "www-data", "--group", "www-data"]
        for path in (lock_dir, out):
            os.chown(path, user.pw_uid, user.pw_gid)
    # Apache's daemon processes inherit its environment (SetEnv/--setenv only
    # reach the WSGI environ, too late for an import-time once()).
    env = env_for(lock_dir, EXAMPLE_EVENTS=str(record))
    with serving(argv, app, env, log) as proc:
        answers = collect(proc, port, log)
    check_identities(answers, log)
    check_once(record, "seed", answers)
