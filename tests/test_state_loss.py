"""A live run keeps distinct IDs and its start time when its state is lost or crowded out.

The promises: (a) within one lock dir and namespace no two live processes
hold one worker ID; where workerid cannot be sure it answers None and says
why in ``identity().degraded``; (b) every worker of one server run sees one
start time for the run's whole life. Here the files are deleted, garbled or
removed under live workers, and other runs come and go in the same lock dir
and namespace (crowding the ledger), while workers of a long-lived run are
killed with SIGKILL and replaced.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from helpers import duplicates, env_for, live_ids
from workerid import _layout, _procfs, _reclock, _slots


def _assert_distinct(idents: list[dict[str, Any]]) -> None:
    dups = duplicates(idents)
    assert not dups, f"live workers share IDs {dups}; live (id, pid): {live_ids(idents)}"
    silent = [i["pid"] for i in idents if i["worker_id"] is None and not i["degraded"]]
    assert not silent, f"worker_id None without a reason: {silent}; live: {live_ids(idents)}"


def _replace(server: Any, victim: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """SIGKILL ``victim``; return its replacement and all live workers."""
    before = {i["pid"] for i in server.identities()}
    server.kill9(victim["pid"])
    after = server.identities()
    new = [i for i in after if i["pid"] not in before]
    assert len(new) == 1, f"expected one replacement, live (id, pid): {live_ids(after)}"
    return new[0], after


# --- 3. other runs come and go beside a long-lived one ----------------------------


def _stall_master_and_kill(server: Any) -> dict[str, Any]:
    """SIGSTOP the master, SIGKILL its worker: the run has no live worker for a while.

    A real master respawns late too (Apache's maintenance runs once a second,
    gunicorn's arbiter sleeps up to a second between checks).
    """
    (victim,) = server.identities(expect=1)
    os.kill(server.master["pid"], signal.SIGSTOP)
    server.kill9(victim["pid"])
    return victim


def _resume(server: Any) -> dict[str, Any]:
    os.kill(server.master["pid"], signal.SIGCONT)
    (worker,) = server.identities(expect=1)
    return worker


def _check_stable(first: dict[str, Any], seen: list[dict[str, Any]]) -> None:
    values = [(w["worker_id"], w["start_time"], w["generation"]) for w in seen]
    want = (1, first["start_time"], first["generation"])
    changed = [(n, v) for n, v in enumerate(values) if v != want]
    assert not changed, (
        f"the long-lived run started at {first['start_time']} ({first['generation']}); its "
        f"replacements (round, (id, start, generation)) changed: {changed[:5]} ..."
    )


def test_start_time_of_a_live_run_survives_30_other_servers(start_server: Any) -> None:
    """A long-lived 1-worker server, its worker killed 32 times while 32 other servers
    start and stop one after another in the same lock dir and namespace: every
    replacement has ID 1 and the run's first start time and generation."""
    long = start_server(workers=1)
    (first,) = long.identities(expect=1)
    seen = []
    try:
        for n in range(32):
            if n % 2:
                _stall_master_and_kill(long)
            else:
                (victim,) = long.identities(expect=1)
                long.kill9(victim["pid"])
            other = start_server(workers=1)
            other.identities(expect=1)
            other.stop()
            seen.append(_resume(long))
    finally:
        os.kill(long.master["pid"], signal.SIGCONT)
    _check_stable(first, seen)


def test_start_time_of_a_live_run_survives_40_single_processes(
    start_server: Any, lock_dir: Path
) -> None:
    """The same with 40 single processes (``python -c 'workerid.identity()'``) instead
    of servers, run while the long-lived run's worker is dead and its master stalled."""
    long = start_server(workers=1)
    (first,) = long.identities(expect=1)
    env = env_for(lock_dir)
    seen = []
    try:
        for _ in range(20):
            _stall_master_and_kill(long)
            for _ in range(2):
                subprocess.run(
                    [sys.executable, "-c", "import workerid; workerid.identity()"],
                    env=env,
                    check=True,
                    timeout=30,
                )
            seen.append(_resume(long))
    finally:
        os.kill(long.master["pid"], signal.SIGCONT)
    _check_stable(first, seen)


def test_once_of_a_live_run_is_not_rerun_after_other_runs_used_it(
    start_server: Any, shared_tmp: Path
) -> None:
    """once("seed") runs once per run: other runs of the same namespace running their
    own once("seed") in between must not make the live run's replacements run it again."""
    mine, theirs = shared_tmp / "mine", shared_tmp / "theirs"
    for path in (mine, theirs):
        path.touch(mode=0o666)
    long = start_server(workers=1, PREFORK_ONCE=str(mine))
    long.identities(expect=1)
    for _ in range(3):
        other = start_server(workers=1, PREFORK_ONCE=str(theirs))
        other.identities(expect=1)
        other.stop()
        (victim,) = long.identities(expect=1)
        long.kill9(victim["pid"])
        long.identities(expect=1)
    assert len(theirs.read_text().split()) == 3, "each other run seeds once"
    runs = mine.read_text().split()
    assert len(runs) == 1, f"the long-lived run's once('seed') ran in pids {runs}"


# --- 4. state lost under live workers ------------------------------------------


def _delete_ledger(lock_dir: Path, ns_dir: Path) -> None:
    (lock_dir / _layout.LEDGER).unlink()


def _garble_ledger(lock_dir: Path, ns_dir: Path) -> None:
    path = lock_dir / _layout.LEDGER
    tmp = lock_dir / "garbage.tmp"
    tmp.write_bytes(b"\x00{not json at all\xff")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _remove_lock_dir(lock_dir: Path, ns_dir: Path) -> None:
    shutil.rmtree(lock_dir)


def _recreate_lock_dir_empty(lock_dir: Path, ns_dir: Path) -> None:
    shutil.rmtree(lock_dir)
    lock_dir.mkdir(mode=0o700)


@pytest.mark.parametrize(
    "damage",
    [_delete_ledger, _garble_ledger, _remove_lock_dir, _recreate_lock_dir_empty],
    ids=["ledger-deleted", "ledger-garbage", "lock-dir-removed", "lock-dir-recreated-empty"],
)
def test_state_lost_under_live_workers_never_duplicates_an_id(
    start_server: Any, lock_dir: Path, damage: Callable[[Path, Path], None]
) -> None:
    """With 4 live workers, the state files are lost; then worker 3, later worker 1, is
    killed with SIGKILL. The live IDs stay distinct (never [1, 1, 2, 4]); each
    replacement gets the dead worker's ID and the run's original start time, or
    worker_id None with a reason in degraded."""
    server = start_server(workers=4)
    idents = server.identities()
    assert [i["worker_id"] for i in idents] == [1, 2, 3, 4], live_ids(idents)
    start, generation = idents[0]["start_time"], idents[0]["generation"]
    ns_dir = Path(_layout.namespace_dir(str(lock_dir), idents[0]["namespace"]))
    assert (lock_dir / _layout.LEDGER).is_file()

    damage(lock_dir, ns_dir)

    for wid in (3, 1):
        victim = next((i for i in server.identities() if i["worker_id"] == wid), None)
        assert victim is not None, f"no live worker {wid}: {live_ids(server.identities())}"
        new, live = _replace(server, victim)
        _assert_distinct(live)
        got = (new["worker_id"], new["start_time"])
        ok = got == (wid, start) or (new["worker_id"] is None and bool(new["degraded"]))
        assert ok, (
            f"replacement of worker {wid} (pid {new['pid']}) got (id, start) {got}, "
            f"want ({wid}, {start}) or None with a reason; degraded {new['degraded']}; "
            f"live (id, pid): {live_ids(live)}"
        )
        assert new["start_time"] in (None, start) or new["degraded"], (
            f"start time {new['start_time']} != the run's {start} and degraded is empty"
        )
        if new["worker_id"] is not None:
            assert new["generation"] == generation


def test_an_orphan_missed_by_one_read_of_proc_locks_is_still_joined(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/proc/locks comes a page per read, so a line can be skipped while other processes
    take and drop locks. A worker holding ID 1 in a slots.lock removed under it must be
    found anyway, or a new worker would start a second ID space and take ID 1 too: the
    look for orphans is the union of several reads (here the first read misses it)."""
    ns_dir = tmp_path / "locks" / "ns"
    ns_dir.mkdir(parents=True, mode=0o700)
    (tmp_path / "locks").chmod(0o700)
    path = ns_dir / _layout.SLOTS
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, sys, time\n"
            "from workerid import _reclock\n"
            f"fd = os.open({str(path)!r}, os.O_RDWR | os.O_CREAT, 0o600)\n"
            "assert _reclock.try_lock(fd, 0)\n"
            f"os.unlink({str(path)!r})\n"
            "print(os.fstat(fd).st_ino, flush=True)\n"
            "time.sleep(60)\n",
        ],
        env=env_for(tmp_path / "unused"),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        orphan_inode = int(holder.stdout.readline())
        real = _procfs.posix_locks
        reads = []

        def skipping(pid: int | None = None) -> list[tuple[int, str, int, int, int, int]]:
            reads.append(pid)
            rows = real(pid)
            return [r for r in rows if r[0] != holder.pid] if len(reads) == 1 else rows

        monkeypatch.setattr(_procfs, "posix_locks", skipping)
        fd, note = _slots.open_slots(str(ns_dir))
        try:
            assert note is not None and f"pid {holder.pid}" in note, note
            assert os.fstat(fd).st_ino == orphan_inode
            assert not _reclock.try_lock(fd, 0)  # ID 1 is the orphan's, not free
            assert len(reads) > 1
        finally:
            os.close(fd)
    finally:
        holder.kill()
        holder.wait()
