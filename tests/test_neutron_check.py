"""``workerid neutron check``: the release it finds and whether install() is active.

The database and API checks run against real Neutron in tests/e2e; here the two checks
that need no Neutron: the release (``importlib.metadata``, faked) and install(), seen
from outside in ``/proc/locks`` while a real process that called
``workerid.neutron.install()`` lives.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from workerid import _procfs
from workerid.neutron import check

SRC = Path(__file__).resolve().parent.parent / "src"

INSTALLED = """
import sys, time
import workerid.neutron
workerid.neutron.install()
print(workerid.identity().lock_dir, flush=True)
sys.stdin.read()  # until the test closes it
"""


@pytest.fixture
def neutron_conf(tmp_path: Path) -> tuple[Path, Path]:
    """Neutron's config dir, whose lock_path is a fresh directory: (config dir, lock dir)."""
    conf = tmp_path / "etc"
    conf.mkdir()
    lock_path = tmp_path / "lock"
    lock_path.mkdir(mode=0o700)
    (conf / "neutron.conf").write_text(f"[oslo_concurrency]\nlock_path = {lock_path}\n")
    return conf, lock_path / "workerid"


@pytest.fixture
def serving(neutron_conf: tuple[Path, Path]) -> Iterator[subprocess.Popen[str]]:
    """A process that called workerid.neutron.install() with that config, until the test ends."""
    conf, lock_dir = neutron_conf
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKERID_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    env["OS_NEUTRON_CONFIG_DIR"] = str(conf)
    proc = subprocess.Popen(
        [sys.executable, "-c", INSTALLED],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == str(lock_dir)
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_flocks_lists_a_directory_lock_with_its_pid_and_inode(tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        st = os.stat(tmp_path)
        assert (os.getpid(), "READ", st.st_dev, st.st_ino) in _procfs.flocks()
    finally:
        os.close(fd)
    assert all(inode != st.st_ino for _, _, _, inode in _procfs.flocks())


def test_install_is_seen_active_from_outside_while_the_process_lives(
    neutron_conf: tuple[Path, Path], serving: subprocess.Popen[str]
) -> None:
    _, lock_dir = neutron_conf
    assert check.lock_dir_users(str(lock_dir)) == [serving.pid]
    found = check.check_installed(str(lock_dir), workers=1)
    assert found.ok, found
    assert found.expected == "API workers hold workerid's lock dir (1)"
    assert found.observed.startswith(f"1 processes hold {lock_dir}: {serving.pid} ")
    serving.kill()
    serving.wait()
    gone = check.check_installed(str(lock_dir))
    assert not gone.ok and "install() is not active" in gone.observed, gone


def test_install_not_active_when_nobody_holds_the_lock_dir(tmp_path: Path) -> None:
    for lock_dir in (tmp_path, tmp_path / "missing"):
        assert check.lock_dir_users(str(lock_dir)) == []
        found = check.check_installed(str(lock_dir))
        assert not found.ok
        assert f"no process holds {lock_dir}" in found.observed and "--lock-dir" in found.observed


@pytest.mark.parametrize(
    ("version", "ok", "said"),
    [
        ("28.0.0", True, "28.0.0 in /venv"),
        ("29.0.0", True, "29.0.0 in /venv"),
        ("28.0.2.dev12", True, "28.0.2.dev12 in /venv"),
        ("27.0.4", True, "27.0.4 in /venv"),
        ("26.0.0", True, "26.0.0 in /venv"),
        ("25.0.1", False, "25.0.1 in /venv: install() is not made for it"),
        ("30.0.0", False, "30.0.0 in /venv: install() is not made for it"),
        ("2.8.0", False, "2.8.0 in /venv: install() is not made for it"),
        (None, False, "none: no neutron in /venv (run this from Neutron's environment)"),
    ],
)
def test_release_row(version: str | None, ok: bool, said: str) -> None:
    found = check.check_release(version, where="/venv")
    assert found.name == "Neutron release" and found.expected == "26.0.x, 27.0.x, 28.0.x, 29.0.x"
    assert found.ok is ok and found.observed == said


def test_release_comes_from_this_environments_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    def version(name: str) -> str:
        assert name == "neutron"
        return "29.0.0"

    monkeypatch.setattr(check.importlib.metadata, "version", version)
    assert check.neutron_release() == "29.0.0"

    def missing(name: str) -> str:
        raise check.importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(check.importlib.metadata, "version", missing)
    assert check.neutron_release() is None


def test_run_reports_release_and_install_first(
    monkeypatch: pytest.MonkeyPatch, neutron_conf: tuple[Path, Path], serving: Any
) -> None:
    conf, lock_dir = neutron_conf
    monkeypatch.setenv("OS_NEUTRON_CONFIG_DIR", str(conf))
    closed: list[bool] = []

    class Conn:
        def close(self) -> None:
            closed.append(True)

    monkeypatch.setattr(check, "_connect", lambda url: Conn())
    monkeypatch.setattr(check, "check_ranges", lambda conn, types: ([], {}))
    monkeypatch.setattr(check, "check_hash_ring", lambda conn, host, workers: [])
    monkeypatch.setattr(check, "neutron_release", lambda: "28.0.0")
    # the lock dir defaults to <lock_path>/workerid from Neutron's config, as install()'s
    checks = check.run("mysql+pymysql://x@localhost/neutron", None, tunnel_types=["geneve"])
    assert [c.name for c in checks] == ["Neutron release", "workerid install() active"]
    assert all(c.ok for c in checks), checks
    assert str(lock_dir) in checks[1].observed and closed == [True]
    other = check.run("mysql+pymysql://x@localhost/neutron", None, lock_dir=str(conf))
    assert not other[1].ok
