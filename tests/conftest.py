"""Fixtures that run real pre-fork servers (``tests/prefork.py``) and read their workers."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

import workerid._identity
from helpers import alive, env_for

# CI runs the same examples every time (a red CI blocks a landing, so it must
# not depend on luck); developers' runs explore new ones.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

PREFORK = str(Path(__file__).with_name("prefork.py"))
SRC = Path(__file__).resolve().parent.parent / "src" / "workerid"


def _same_tree(imported: Path, source: Path) -> bool:
    """Every module of ``source`` is in ``imported`` with the same bytes."""
    for path in source.rglob("*.py"):
        twin = imported / path.relative_to(source)
        if not twin.is_file() or twin.read_bytes() != path.read_bytes():
            return False
    return True


def pytest_configure(config: pytest.Config) -> None:
    # Tests must run against the code in this tree, never a stale installed
    # copy (scripts/test.sh installs the tree and puts src/ first on the path).
    imported = Path(workerid._identity.__file__).resolve().parent
    if not _same_tree(imported, SRC):
        raise pytest.UsageError(
            f"workerid was imported from {imported}, which is not this tree's {SRC}: "
            "run the tests with scripts/test.sh (or PYTHONPATH=src)"
        )


class Server:
    """One run of ``prefork.py``: a master and its N workers."""

    def __init__(self, out: Path, workers: int, env: dict[str, str]) -> None:
        self.out = out
        self.workers = workers
        out.mkdir(parents=True, exist_ok=True)
        os.chmod(out, 0o777)  # workers may run as nobody
        self.proc = subprocess.Popen([sys.executable, PREFORK, str(out), str(workers)], env=env)
        self.master = self._wait_file(out / "master.json")

    def _wait_file(self, path: Path, timeout: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if path.exists():
                return json.loads(path.read_text())  # type: ignore[no-any-return]
            if self.proc.poll() is not None:
                raise AssertionError(f"prefork master exited with {self.proc.returncode}")
            time.sleep(0.02)
        raise AssertionError(f"{path} did not appear within {timeout}s")

    def identities(self, expect: int | None = None, timeout: float = 20) -> list[dict[str, Any]]:
        """Identities of the live workers, once ``expect`` of them have reported."""
        expect = self.workers if expect is None else expect
        deadline = time.monotonic() + timeout
        while True:
            found = []
            for path in self.out.glob("[0-9]*.json"):
                data = json.loads(path.read_text())
                if alive(data["pid"]):
                    found.append(data)
            if len(found) >= expect or time.monotonic() > deadline:
                return sorted(found, key=lambda d: (d["worker_id"] or 0, d["pid"]))
            time.sleep(0.02)

    def helpers(self) -> list[dict[str, Any]]:
        return [json.loads(p.read_text()) for p in self.out.glob("helper-*.json")]

    def kill9(self, pid: int) -> None:
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        (self.out / f"{pid}.json").unlink(missing_ok=True)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for helper in self.helpers():
            with contextlib.suppress(ProcessLookupError):
                os.kill(helper["pid"], signal.SIGKILL)


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A temporary directory any user can reach (pytest's own is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="workerid-test-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def lock_dir(shared_tmp: Path) -> Path:
    return shared_tmp / "locks"


@pytest.fixture
def start_server(shared_tmp: Path, lock_dir: Path) -> Iterator[Any]:
    servers: list[Server] = []
    runs = iter(range(1000))

    def start(workers: int = 4, **env: str) -> Server:
        server = Server(shared_tmp / f"run{next(runs)}", workers, env_for(lock_dir, **env))
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch, lock_dir: Path) -> Iterator[Path]:
    """This test process starts with no workerid state and a private lock dir."""
    for var in list(os.environ):
        if var.startswith("WORKERID_"):
            monkeypatch.delenv(var)
    monkeypatch.setenv("WORKERID_DIR", str(lock_dir))
    workerid._identity._reset_for_tests()
    yield lock_dir
    workerid._identity._reset_for_tests()
