"""The first call's cheaper reads and done-paths (issue 14) answer what the old ones did."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from workerid import _config, _generation, _procfs, _statefile


def test_stat_cmdline_and_boot_time_are_the_kernels() -> None:
    raw = Path(f"/proc/{os.getpid()}/stat").read_bytes()
    fields = raw[raw.rfind(b")") + 2 :].split()
    assert _procfs.start_ticks(os.getpid()) == int(fields[19])
    assert _procfs.parent_pid(os.getpid()) == os.getppid()
    argv = [a.decode() for a in Path("/proc/self/cmdline").read_bytes().split(b"\0") if a]
    assert _procfs.cmdline(os.getpid()) == argv
    btime = next(
        int(line.split()[1])
        for line in Path("/proc/stat").read_text().splitlines()
        if line.startswith("btime ")
    )
    assert _procfs.boot_time() == btime
    assert _procfs.cmdline(2**22 + 1) is None  # no such process: None, never an exception


def test_a_long_command_line_is_read_whole(tmp_path: Path) -> None:
    # Longer than a page: /proc/<pid>/cmdline fills the buffer across pages in one read.
    args = [f"arg{i:04d}-" + "x" * 60 for i in range(300)]
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; print(flush=True); sys.stdin.read()", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # past execve (its argv is set up only late in it)
        got = _procfs.cmdline(proc.pid)
        assert got is not None and got[-300:] == args
    finally:
        proc.communicate(b"")


def test_posix_locks_lists_every_record_of_a_long_proc_locks(tmp_path: Path) -> None:
    # Many records: /proc/locks is read until EOF, not up to the first short read.
    path = tmp_path / "many.lock"
    path.touch()
    fd = os.open(path, os.O_RDWR)
    try:
        for i in range(0, 6000, 2):  # not adjacent: a record each, > 64 KiB of /proc/locks
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, i, os.SEEK_SET)
        ino = os.stat(path).st_ino
        mine = [lk for lk in _procfs.posix_locks(os.getpid()) if lk[3] == ino]
        assert sorted(lk[4] for lk in mine) == list(range(0, 6000, 2))
    finally:
        os.close(fd)


def test_a_forked_child_gets_its_pid_namespace_from_the_parent() -> None:
    own = int(os.readlink("/proc/self/ns/pid").split("[")[1].rstrip("]"))
    assert _procfs.pid_namespace() == own
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (child)
        inherited = _procfs._pid_ns
        _procfs._PROC = "/nonexistent"  # what the child knows, it knew without reading
        os.write(w, f"{inherited} {_procfs.pid_namespace()} {_procfs.boot_id()}".encode())
        os._exit(0)
    os.close(w)
    inherited, answer, boot = os.read(r, 200).decode().split()
    os.close(r)
    os.waitpid(pid, 0)
    assert int(inherited) == int(answer) == own  # pid_for_children: the same namespace here
    assert boot == Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def test_a_child_whose_namespace_the_parent_could_not_read_reads_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As after unshare(CLONE_NEWPID) before the new namespace has its init:
    # pid_for_children cannot be read, and the child must not take the parent's.
    monkeypatch.setattr(_procfs, "_pid_ns", 12345)
    real = _procfs._ns_inode
    monkeypatch.setattr(
        _procfs, "_ns_inode", lambda link: None if "for_children" in link else real(link)
    )
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (child)
        os.write(w, f"{_procfs._pid_ns} {_procfs.pid_namespace()}".encode())
        os._exit(0)
    os.close(w)
    before, answer = os.read(r, 200).decode().split()
    os.close(r)
    os.waitpid(pid, 0)
    assert before == "None"
    assert int(answer) == int(os.readlink("/proc/self/ns/pid").split("[")[1].rstrip("]"))


def test_ensure_dir_checks_an_existing_directory_with_one_lstat(tmp_path: Path) -> None:
    good = tmp_path / "good"
    _statefile.ensure_dir(str(good))
    _statefile.ensure_dir(str(good))  # exists now: checked, not made
    assert good.is_dir() and (good.stat().st_mode & 0o777) == 0o700
    os.chmod(good, 0o722)
    with pytest.raises(_statefile.UnsafeStateError, match="writable by other users"):
        _statefile.ensure_dir(str(good))
    link = tmp_path / "link"
    link.symlink_to(good)
    with pytest.raises(_statefile.UnsafeStateError, match="symlink"):
        _statefile.ensure_dir(str(link))
    (tmp_path / "file").touch()
    with pytest.raises(_statefile.UnsafeStateError, match="not a directory"):
        _statefile.ensure_dir(str(tmp_path / "file"))
    with pytest.raises(FileNotFoundError):
        _statefile.ensure_dir(str(tmp_path / "no" / "ns"), create_parents=False)


def test_open_lock_file_says_who_created_it(tmp_path: Path) -> None:
    path = str(tmp_path / "slots.lock")
    fd1, created1 = _statefile.open_lock_file_created(path)
    fd2, created2 = _statefile.open_lock_file_created(path)
    os.close(fd1)
    os.close(fd2)
    assert (created1, created2) == (True, False)
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(_statefile.UnsafeStateError, match="not a regular file"):
        _statefile.open_lock_file_created(str(tmp_path / "fifo"))
    (tmp_path / "sym").symlink_to(tmp_path / "absent")
    with pytest.raises(OSError):
        _statefile.open_lock_file_created(str(tmp_path / "sym"))
    assert not (tmp_path / "absent").exists()


def test_read_json_still_refuses_nan_and_garbage(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"a": NaN}')
    with pytest.raises(ValueError, match="NaN"):
        _statefile.read_json(str(path))
    path.write_bytes(b"\xff")
    with pytest.raises(ValueError, match="not valid JSON"):
        _statefile.read_json(str(path))
    path.write_text('{"a": [1, 2]}')
    assert _statefile.read_json(str(path)) == {"a": [1, 2]}


def test_a_waiter_on_ledger_lock_takes_the_entry_written_meanwhile(tmp_path: Path) -> None:
    """A herd's waiters return the run's entry as soon as it is written, lock or not."""
    lock_dir = tmp_path / "locks"
    lock_dir.mkdir(mode=0o700)
    (lock_dir / "ledger.lock").touch(mode=0o600)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR);"
            " fcntl.lockf(fd, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()",
            str(lock_dir / "ledger.lock"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        owner = _generation.Owner(boot="b", pidns=1, pid=os.getpid(), ticks=1)
        written, _entry, _ = _generation.assign(
            _generation.Ledger(),
            "abc",
            owner,
            hint=1_700_000_000,
            clock=1_700_000_000,
            alive=lambda e: None,
        )

        def write_later() -> None:
            time.sleep(0.05)
            _statefile.write_json_atomic(str(lock_dir / "ledger.json"), _generation.dump(written))

        writer = threading.Thread(target=write_later)
        writer.start()
        # The holder never lets go until this returns: waiting for the lock would
        # end in LockTimeout, not in the entry.
        got = _generation.resolve(
            str(lock_dir), "abc", owner, lambda: None, lambda e: None, wait=30.0
        )
        writer.join()
        assert got.entry.start == 1_700_000_000 and got.entry.run == "abc"
    finally:
        holder.communicate("")


def test_the_once_done_path_holds_only_while_the_identity_it_was_done_under_does(
    fresh: Path,
) -> None:
    import workerid

    calls = []

    @workerid.once("fast")
    def seed() -> int:
        calls.append(1)
        return len(calls)

    assert seed() == 1
    assert seed() is None and seed() is None  # done: the done-path answers
    workerid.configure(namespace="another")  # a new ID space: nothing is known done there
    assert seed() == 2
    assert seed() is None
    workerid.configure()
    assert seed() is None  # done in the first namespace's run already (its marker says so)
    assert len(calls) == 2


def test_no_workerid_variable_skips_the_parse_and_each_variable_still_counts() -> None:
    """With none of WORKERID_DIR/NAMESPACE/COUNT/MAX_SLOTS/BACKEND/DEPLOY set (or only
    empty ones, or unrelated WORKERID_* names), the settings are configure()'s, unchanged;
    each of the six, set alone, changes them, so the shortcut hides none of them."""
    explicit = _config.explicit_settings(
        lock_dir="/tmp/x",
        namespace=None,
        worker_count=3,
        max_slots=None,
        settle_timeout=None,
    )
    for settings in (_config.Settings(), explicit):
        for environ in ({}, {"WORKERID_DIR": "", "WORKERID_OTHER": "1", "PATH": "/bin"}):
            assert _config.from_env(environ, settings) == settings
    values = {
        "WORKERID_DIR": "/srv/locks",
        "WORKERID_NAMESPACE": "app",
        "WORKERID_COUNT": "7",
        "WORKERID_MAX_SLOTS": "128",
        "WORKERID_BACKEND": "postgresql://u@h/db",
        "WORKERID_DEPLOY": "2026.1-abc",
    }
    assert set(values) == set(_config.ENV_VARS)
    for var, value in values.items():
        got = _config.from_env({var: value}, _config.Settings())
        assert got != _config.Settings(), var
        assert var == _config.ENV_BACKEND or "env" in got.origin.values(), var
