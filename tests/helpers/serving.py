"""Real servers for the tests: find their programs, start them, stop them by PID.

A server runs in a session of its own (its process group is the test's to
kill), logs to a file the failure message quotes, and is stopped with
SIGTERM, then SIGKILL of its whole group after ``STOP_TIMEOUT`` seconds.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from helpers import kill_group

VENV_BIN = Path("/opt/workerid/venv/bin")
STOP_TIMEOUT = 15.0


def find_program(name: str) -> Path | None:
    """``name`` next to this interpreter, else in the project venv."""
    for directory in (Path(sys.executable).parent, VENV_BIN):
        candidate = directory / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def www_data() -> pwd.struct_passwd | None:
    """Apache's service user, which its workers run as when the tests are root."""
    try:
        return pwd.getpwnam("www-data")
    except KeyError:
        return None


def mod_wsgi_skip() -> str | None:
    """Why mod_wsgi-express cannot serve here, or None."""
    if find_program("mod_wsgi-express") is None:
        return f"mod_wsgi-express not found next to {sys.executable} or in {VENV_BIN}"
    if os.geteuid() == 0 and www_data() is None:
        return "running as root and there is no www-data user for Apache's workers"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tail(log: Path, chars: int = 3000) -> str:
    try:
        return log.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no server log)"


@contextlib.contextmanager
def serving(
    argv: list[str], cwd: Path, env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """The server ``argv``, stopped by PID on the way out: SIGTERM, SIGKILL after 15 s."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(STOP_TIMEOUT)
        # Whatever of its session is still there (the server ignored SIGTERM,
        # or left a worker behind): the group is this test's own.
        kill_group(proc)
