"""Worker IDs above 64: the search goes through page files, ``slots.lock`` stays the authority.

Real pre-fork servers of up to 200 workers (``tests/prefork.py``), real
``SIGKILL``, real record locks. Pages are 64 IDs (``_layout.PAGE``): ID ``i``
above 64 is byte ``(i-1) % 64`` of ``slots.<(i-1)//64>.lock`` *and* byte
``i-1`` of ``slots.lock``, which is where a worker of a release without pages
(it probes ``slots.lock`` alone) looks for it.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import helpers
from helpers import HERD, duplicates, env_for, kill_group
from workerid import _layout, _procfs

PAGE = _layout.PAGE
BIG = {"WORKERID_MAX_SLOTS": "256", "WORKERID_NAMESPACE": "big"}

#: the election of a release without pages: the lowest byte of slots.lock it can lock
_OLD_WORKER = textwrap.dedent(
    """
    import fcntl, os, sys
    fd = os.open(sys.argv[1], os.O_RDWR)
    wanted = [int(a) for a in sys.argv[2:]]
    got = []
    for index in (range(256) if not wanted else [w - 1 for w in wanted]):
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, index, os.SEEK_SET)
        except OSError:
            continue
        got.append(index + 1)
        if not wanted:
            break
    print(" ".join(map(str, got)), flush=True)
    sys.stdin.read()
    """
)


@contextmanager
def old_worker(slots: Path, *ids: int) -> Iterator[list[int]]:
    """A process electing as a release without pages did (or holding exactly ``ids``)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _OLD_WORKER, str(slots), *map(str, ids)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        yield [int(w) for w in proc.stdout.readline().split()]
    finally:
        proc.kill()
        proc.wait()


def _assert_exactly(idents: list[dict[str, Any]], want: list[int]) -> None:
    assert not duplicates(idents), f"shared IDs {duplicates(idents)}"
    got = [i["worker_id"] for i in idents]
    extra = [
        (i["worker_id"], i["pid"], i["degraded"]) for i in idents if i["worker_id"] not in want
    ]
    assert sorted(w for w in got if w is not None) == want and not extra, (
        f"missing {sorted(set(want) - set(got))}, extra (id, pid, degraded) {extra[:5]}"
    )


def _ns(lock_dir: Path) -> Path:
    return lock_dir / BIG["WORKERID_NAMESPACE"]


def _locks_by_pid(paths: list[Path]) -> dict[int, set[tuple[str, int]]]:
    """PID -> {(file name, byte)} of the write locks on ``paths`` (``/proc/locks``)."""
    inodes = {os.stat(p).st_ino: p.name for p in paths}
    found: dict[int, set[tuple[str, int]]] = {}
    for pid, kind, _dev, ino, start, end in _procfs.posix_locks():
        if kind == "WRITE" and ino in inodes and start == end:
            found.setdefault(pid, set()).add((inodes[ino], start))
    return found


def test_200_workers_elect_exactly_1_to_200_across_pages(start_server: Any, lock_dir: Path) -> None:
    """200 workers released together get 1..200: the page boundaries 64/65, 128/129 and
    192/193 included. Each worker above 64 holds its byte in its page *and* byte i-1 of
    slots.lock; each worker up to 64 holds only its byte of slots.lock; no page 4."""
    server = start_server(workers=200, **BIG)
    idents = server.identities(timeout=90)
    _assert_exactly(idents, list(range(1, 201)))
    assert all(i["degraded"] == [] for i in idents), [i["degraded"] for i in idents][:3]
    ns = _ns(lock_dir)
    pages = sorted(p.name for p in ns.glob("slots.*.lock"))
    assert pages == ["slots.1.lock", "slots.2.lock", "slots.3.lock"]
    for name in pages:
        st = os.lstat(ns / name)
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    want = {}
    for ident in idents:
        wid = ident["worker_id"]
        want[ident["pid"]] = {("slots.lock", wid - 1)}
        if wid > PAGE:
            want[ident["pid"]].add((f"slots.{(wid - 1) // PAGE}.lock", (wid - 1) % PAGE))
    for _read in range(5):  # a read of /proc/locks can skip lines (holding_of)
        held = _locks_by_pid([ns / "slots.lock", *(ns / n for n in pages)])
        if held == want:
            break
    wrong = {pid: (locks, held.get(pid)) for pid, locks in want.items() if held.get(pid) != locks}
    assert not wrong and held == want, list(wrong.items())[:3]


def _herd(lock_dir: Path, count: int, timeout: float = 240) -> list[dict[str, Any]]:
    """Run ``helpers/herd.py``: ``count`` workers released at once; their (pid, ID, degraded)."""
    # no WORKERID_NAMESPACE: with one, a process exec'd by pytest (this master) is taken
    # for a worker of pytest, and its children for its helpers (design.md, supervisors)
    env = env_for(lock_dir, WORKERID_MAX_SLOTS="4096")
    proc = helpers.start(
        [sys.executable, HERD, str(count)], env, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stdin is not None
    buf = b""
    deadline = time.monotonic() + timeout
    try:
        while (done := buf.count(b"\n")) < count:
            left = deadline - time.monotonic()
            assert left > 0, f"{done} of {count} workers reported in {timeout}s"
            if select.select([proc.stdout], [], [], left)[0]:
                chunk = os.read(proc.stdout.fileno(), 65536)
                assert chunk, f"the herd's master exited ({done} reported)"
                buf += chunk
        rows = [line.split() for line in buf.decode().splitlines()]
        return [
            {"pid": int(pid), "worker_id": None if wid == "None" else int(wid), "degraded": int(n)}
            for pid, wid, n in rows
        ]
    finally:
        proc.stdin.close()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            kill_group(proc)


def test_1100_workers_released_at_once_elect_exactly_1_to_1100(lock_dir: Path) -> None:
    """1,100 workers of one master, every one blocked on one pipe until all are ready, elect
    at the same moment: exactly 1..1,100 (slots.lock and pages 1..17), none shared, none
    degraded."""
    idents = _herd(lock_dir, 1100)
    _assert_exactly(idents, list(range(1, 1101)))
    assert [i for i in idents if i["degraded"]] == []
    (ns,) = [d for d in lock_dir.iterdir() if (d / "slots.lock").exists()]
    pages = {p.name for p in ns.glob("slots.*.lock")}
    assert pages == {f"slots.{k}.lock" for k in range(1, 18)}


def test_kill9_in_page_2_frees_exactly_that_id(start_server: Any, lock_dir: Path) -> None:
    """SIGKILL of the holder of ID 150 (page 2): its replacement gets 150, every other
    worker keeps its ID and PID."""
    server = start_server(workers=160, **BIG)
    idents = server.identities(timeout=90)
    _assert_exactly(idents, list(range(1, 161)))
    before = {i["worker_id"]: i for i in idents}
    victim = before[150]
    server.kill9(victim["pid"])
    idents = server.identities(timeout=60)
    _assert_exactly(idents, list(range(1, 161)))
    after = {i["worker_id"]: i for i in idents}
    assert after[150]["pid"] != victim["pid"]
    assert after[150]["start_time"] == victim["start_time"]
    moved = [w for w in before if w != 150 and after[w]["pid"] != before[w]["pid"]]
    assert moved == []


def test_workers_with_and_without_pages_never_share_an_id(
    start_server: Any, lock_dir: Path
) -> None:
    """A worker of a release without pages holds ID 66 (byte 65 of slots.lock) before a
    server with pages starts 70 workers: they skip 66 (65 and 67..71 instead). Another
    worker without pages, electing after them, gets 72: it sees their IDs in slots.lock."""
    ns = _ns(lock_dir)
    ns.mkdir(parents=True, mode=0o700)
    lock_dir.chmod(0o700)
    (ns / "slots.lock").touch(mode=0o600)
    with old_worker(ns / "slots.lock", 66) as held:
        assert held == [66]
        server = start_server(workers=70, **BIG)
        idents = server.identities(timeout=60)
        _assert_exactly(idents, [*range(1, 66), *range(67, 72)])
        with old_worker(ns / "slots.lock") as later:
            assert later == [72]


def _refusals_of_140(start_server: Any) -> list[tuple[int, str]]:
    """140 workers get exactly 1..140, those in slots.lock (1..PAGE) with nothing to say;
    (worker ID, its degraded reasons) of each worker above PAGE, for the caller to judge."""
    server = start_server(workers=140, **BIG)
    idents = server.identities(timeout=90)
    _assert_exactly(idents, list(range(1, 141)))
    above = []
    for ident in idents:
        reasons = " | ".join(ident["degraded"])
        if ident["worker_id"] <= PAGE:
            assert reasons == "", ident
        else:
            above.append((ident["worker_id"], reasons))
    assert len(above) == 140 - PAGE
    return above


def test_planted_symlink_and_fifo_pages_are_refused_and_ids_stay_exact(
    start_server: Any, shared_tmp: Path, lock_dir: Path
) -> None:
    """slots.1.lock a symlink to a file of ours, slots.2.lock a FIFO: neither is opened
    (the target is untouched; nobody blocks on the FIFO); workers 65..140 say which file
    was refused and still get exactly 1..140, searched in slots.lock alone."""
    ns = _ns(lock_dir)
    ns.mkdir(parents=True, mode=0o700)
    lock_dir.chmod(0o700)
    target = shared_tmp / "target"
    target.write_bytes(b"untouched")
    (ns / "slots.1.lock").symlink_to(target)
    os.mkfifo(ns / "slots.2.lock", 0o600)
    for wid, reasons in _refusals_of_140(start_server):
        assert "refused" in reasons and "slots.1.lock" in reasons, reasons
        if wid > 2 * PAGE:
            assert "slots.2.lock" in reasons and "not a regular file" in reasons, reasons
    assert target.read_bytes() == b"untouched"
    assert (ns / "slots.1.lock").is_symlink()
    assert stat.S_ISFIFO(os.lstat(ns / "slots.2.lock").st_mode)


def test_status_lists_the_holders_of_every_page(start_server: Any, lock_dir: Path) -> None:
    server = start_server(workers=130, **BIG)
    idents = server.identities(timeout=90)
    out = subprocess.run(
        [sys.executable, "-m", "workerid", "status", "--dir", str(lock_dir), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env_for(lock_dir),
    )
    assert out.returncode == 0, out.stderr
    (ns,) = json.loads(out.stdout)["namespaces"]
    held = {slot["worker_id"]: slot["pid"] for slot in ns["slots"]}
    assert held == {i["worker_id"]: i["pid"] for i in idents}
    assert sorted(held) == list(range(1, 131))


def test_lock_dir_removed_under_100_workers_never_duplicates_an_id_above_64(
    start_server: Any, lock_dir: Path
) -> None:
    """The whole lock directory is removed (rm -rf) under 100 live workers; then worker 90
    (page 1) and worker 10 are killed with SIGKILL. Each replacement joins the removed
    slots.lock of the live workers (its page file is a new, empty one) and gets the dead
    worker's ID: never one a live worker holds."""
    server = start_server(workers=100, **BIG)
    _assert_exactly(server.identities(timeout=90), list(range(1, 101)))
    shutil.rmtree(lock_dir)
    for wid in (90, 10):
        victim = next(i for i in server.identities() if i["worker_id"] == wid)
        server.kill9(victim["pid"])
        idents = server.identities(timeout=60)
        _assert_exactly(idents, list(range(1, 101)))
        new = next(i for i in idents if i["worker_id"] == wid)
        assert new["pid"] != victim["pid"]
        assert any("joined their worker IDs" in r for r in new["degraded"]), new["degraded"]


def test_a_spawned_child_of_worker_above_64_finds_its_workers_id_from_outside(
    shared_tmp: Path, lock_dir: Path
) -> None:
    """70 workers each start a multiprocessing *spawn* child, which learns its worker's ID
    from outside (the worker's descriptor of slots.lock and its byte there in /proc/locks,
    not its page): every child of workers 65..70 reports its worker's ID, inherited."""
    from test_supervisors import MpServer

    server = MpServer(shared_tmp / "mp", 70, "spawn", env_for(lock_dir, **BIG))
    try:
        workers = server.workers_alive()
        _assert_exactly(workers, list(range(1, 71)))
        for worker in workers[PAGE:]:
            child = server.child(worker["child_pid"])
            got = (child["worker_id"], child["inherited"], child["generation"])
            assert got == (worker["worker_id"], True, worker["generation"]), child["degraded"]
    finally:
        server.stop()


_CHURN = textwrap.dedent(
    """
    import fcntl, os, sys, time
    fd = os.open(sys.argv[1], os.O_RDWR)
    base = int(sys.argv[2]) * 1000
    end = time.monotonic() + float(sys.argv[3])
    while time.monotonic() < end:
        for i in range(0, 200, 2):
            fcntl.lockf(fd, fcntl.LOCK_EX, 1, base + i, os.SEEK_SET)
        fcntl.lockf(fd, fcntl.LOCK_UN, 0, 0, os.SEEK_SET)
    """
)


def test_a_worker_is_found_from_outside_while_other_locks_come_and_go(
    shared_tmp: Path, lock_dir: Path
) -> None:
    """/proc/locks is read a page at a time: while 6 processes take and drop 100 locks each
    over and over, a single read misses an older process's lines now and then (measured:
    102 of 1,553 reads). 100 looks from outside at a worker holding ID 67 and its run
    range all find both (``_slots.holding_of``, what a spawned helper uses)."""
    from workerid import _slots

    ns = _ns(lock_dir)
    ns.mkdir(parents=True, mode=0o700)
    lock_dir.chmod(0o700)
    slots = ns / "slots.lock"
    slots.touch(mode=0o600)
    worker = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR); "
            "fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 66, os.SEEK_SET); "
            f"fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB, 1796000000, {_layout.RUN_BASE}); "
            "print(flush=True); sys.stdin.read()",
            str(slots),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    other = shared_tmp / "other.lock"
    other.touch()
    churn = [
        subprocess.Popen([sys.executable, "-c", _CHURN, str(other), str(k), "60"]) for k in range(6)
    ]
    try:
        assert worker.stdout is not None
        worker.stdout.readline()  # it holds both
        time.sleep(0.5)  # the churn has started
        missed = []
        for _ in range(100):
            held = _slots.holding_of(worker.pid)
            if held is None or (held.worker_id, held.run_offset) != (67, _layout.RUN_BASE):
                missed.append(held)
        assert missed == []
    finally:
        for proc in (worker, *churn):
            proc.kill()
            proc.wait()


def test_a_page_file_is_refused_for_exactly_what_refuses_any_lock_file(tmp_path: Path) -> None:
    """An election opens its pages with its uid read once (``euid=``) and one test of the
    mode bits; every file any lock file is refused for is refused, with the same reason
    (another owner as root only), and every other mode is accepted."""
    from workerid import _statefile

    euid = os.geteuid()
    # every mode with the owner's rw (else the open itself fails as non-root): the type
    # bits, setuid/setgid/sticky and group/other read and execute must not matter
    cases: list[tuple[str, str, int]] = [
        (f"mode-{m:04o}", "mode", m) for m in sorted({m | 0o600 for m in range(0, 0o10000, 0o7)})
    ]
    cases += [("fifo", "fifo", 0), ("directory", "dir", 0), ("symlink", "symlink", 0)]
    if euid == 0:
        cases += [("owner-65534", "owner", 65534)]
    (tmp_path / "target").touch(mode=0o600)
    for label, kind, value in cases:
        path = tmp_path / label
        if kind == "fifo":
            os.mkfifo(path, 0o600)
        elif kind == "dir":
            path.mkdir(mode=0o700)
        elif kind == "symlink":
            path.symlink_to(tmp_path / "target")
        else:
            path.touch(mode=0o600)
            if kind == "owner":
                os.chown(path, value, value)
            else:
                os.chmod(path, value)
        outcomes = []
        for kwargs in ({}, {"euid": euid}):
            try:
                fd, _created = _statefile.open_lock_file_created(str(path), **kwargs)
            except OSError as exc:
                outcomes.append(f"{type(exc).__name__}: {exc}")
            else:
                os.close(fd)
                outcomes.append("ok")
        usable = kind == "mode" and not value & 0o022
        assert outcomes[0] == outcomes[1], (label, outcomes)
        assert (outcomes[0] == "ok") == usable, (label, outcomes)


def test_group_writable_and_foreign_pages_are_refused_and_ids_stay_exact(
    start_server: Any, lock_dir: Path
) -> None:
    """slots.1.lock group-writable, slots.2.lock another user's (as root): neither is used;
    workers 65..140 say which was refused and why, and still get exactly 1..140."""
    ns = _ns(lock_dir)
    ns.mkdir(parents=True, mode=0o700)
    lock_dir.chmod(0o700)
    (ns / "slots.1.lock").touch(mode=0o600)
    (ns / "slots.1.lock").chmod(0o620)
    foreign = os.geteuid() == 0
    if foreign:
        (ns / "slots.2.lock").touch(mode=0o600)
        os.chown(ns / "slots.2.lock", 65534, 65534)
    for wid, reasons in _refusals_of_140(start_server):
        assert "slots.1.lock is writable by other users" in reasons, reasons
        if foreign and wid > 2 * PAGE:
            assert "slots.2.lock is owned by uid 65534" in reasons, reasons
    assert stat.S_IMODE(os.lstat(ns / "slots.1.lock").st_mode) == 0o620


def test_a_lying_index_costs_ids_while_it_lies_and_never_gives_a_duplicate(
    start_server: Any, lock_dir: Path
) -> None:
    """A process of ours holds the page bytes of IDs 65..67 and nothing in slots.lock (the
    index says "held", slots.lock says free), another holds byte 69 of slots.lock and no
    page byte (ID 70: the index says "free"). 72 workers skip 65..67 and 70: 1..64, 68, 69,
    71..76, each holding its own byte of slots.lock. Once the liar is killed (-9), the
    replacement for a killed worker 68 gets 65: the lowest ID free in both."""
    ns = _ns(lock_dir)
    ns.mkdir(parents=True, mode=0o700)
    lock_dir.chmod(0o700)
    (ns / "slots.lock").touch(mode=0o600)
    (ns / "slots.1.lock").touch(mode=0o600)
    with (
        old_worker(ns / "slots.lock", 70) as held,
        old_worker(ns / "slots.1.lock", 1, 2, 3) as lies,
    ):
        assert (held, lies) == ([70], [1, 2, 3])
        server = start_server(workers=72, **BIG)
        idents = server.identities(timeout=90)
        want = [*range(1, 65), 68, 69, *range(71, 77)]
        _assert_exactly(idents, want)
        mine = {i["pid"]: ("slots.lock", i["worker_id"] - 1) for i in idents}
        for _read in range(5):  # a read of /proc/locks can skip lines (holding_of)
            held_by = _locks_by_pid([ns / "slots.lock"])
            if all(held_by.get(pid, set()) == {lock} for pid, lock in mine.items()):
                break
        wrong = {pid: held_by.get(pid) for pid, lock in mine.items() if held_by.get(pid) != {lock}}
        assert wrong == {}
        owners = {(name, byte): pid for pid, locks in held_by.items() for name, byte in locks}
        assert owners[("slots.lock", 69)] not in mine  # ID 70: the process without pages
    # both helpers are gone now (killed): the index lies no more
    victim = next(i for i in idents if i["worker_id"] == 68)
    server.kill9(victim["pid"])
    idents = server.identities(timeout=60)
    assert not duplicates(idents)
    assert sorted(i["worker_id"] for i in idents) == [*range(1, 66), 69, *range(71, 77)]
