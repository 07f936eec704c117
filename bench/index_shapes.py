"""Shapes of the search index for IDs above 64, measured: worker 1,025's first call against 65's.

Run: ``python bench/index_shapes.py [--rounds N] [--shapes current,pages64,...]``
(about 4 minutes for 3 rounds here). Not a test, and not a shape workerid has:
it says why the index is the shape it is (``docs/design.md``, "Why pages").

A holder process lays out 64 or 1,024 held IDs the way 64 or 1,024 workers
would (open-file-description locks, one record per simulated worker, as in
``election.py``): byte ``i`` of ``slots.lock`` and the run range for every
worker, and the index record of each ID above 64 where the shape puts it.
Fresh children of this process (which has imported what ``election.py``'s
zygote has) then call ``workerid.worker_id()`` one after another, each timing
its CPU; for every shape but ``current`` the tree's ``_slots._lowest_free`` is
replaced by one generic search (open each index file once, ``F_GETLK`` each
ID's index byte, then ``F_SETLK`` it and the ID's byte of ``slots.lock``), so
those shapes compare with each other, and ``current`` is the tree's own code
on the ``pages64`` layout. Shapes:

* ``pagesP``: a file per P IDs (``slots.<k>.lock``, byte ``i mod P``), IDs 1..64
  in ``slots.lock`` alone (``current`` is ``pages64``);
* ``regions``: one index file, page ``k`` at byte ``k * 2**20`` (far apart);
* ``single``: one index file, ID ``i`` at byte ``i-1``.

The kernel keeps one list of POSIX locks per inode and walks it from the
front on every request, so the one-file shapes pay a walk of up to 960
records per probe; the page shapes trade a walk of at most P records against
one more file to open per P IDs.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import resource
import statistics
import struct
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "src"))
sys.path.insert(0, HERE)
import election  # noqa: E402,F401  (what the bench's zygote has imported, the children have)

_FLOCK = struct.Struct("@hhqqi4x")
SHAPES = ("current", "pages64", "pages32", "pages128", "regions", "single")


def _index_of(shape: str, i: int) -> tuple[str, int] | None:
    """(file name, byte) of the index record of ID ``i+1``, or None below 65."""
    if i < 64:
        return None
    if shape == "current":
        shape = "pages64"
    if shape.startswith("pages"):
        size = int(shape[5:])
        return f"slots.{i // size}.lock", i % size
    if shape == "regions":
        return "slots.index.lock", (i // 64) * 2**20 + i % 64
    return "slots.index.lock", i


def _ns_dir() -> str:
    """Elect once in a throwaway child: creates the namespace and the run's ledger entry."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        import workerid

        ident = workerid.identity()
        os.write(w, os.path.join(ident.lock_dir or "", ident.namespace).encode())
        os._exit(0)
    os.close(w)
    path = os.read(r, 4096).decode()
    os.close(r)
    os.waitpid(pid, 0)
    return path


def _hold(ns: str, shape: str, count: int) -> tuple[int, int]:
    """Fork a process holding IDs 1..count as ``count`` workers would; (pid, fd to close)."""
    ready_r, ready_w = os.pipe()
    stop_r, stop_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(ready_r)
        os.close(stop_w)
        from workerid import _layout

        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 2 * count + 64), hard))
        keep = []
        run = _layout.RUN_BASE + 12345 * _layout.RUN_SPACING  # a run of its own
        for i in range(count):
            fd = os.open(os.path.join(ns, "slots.lock"), os.O_RDWR | os.O_CLOEXEC)
            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, i, 1, 0))
            fcntl.fcntl(
                fd,
                fcntl.F_OFD_SETLK,
                _FLOCK.pack(fcntl.F_RDLCK, os.SEEK_SET, run, 1_796_000_000, 0),
            )
            keep.append(fd)
            where = _index_of(shape, i)
            if where is not None:
                name, byte = where
                fd = os.open(os.path.join(ns, name), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                fcntl.fcntl(
                    fd, fcntl.F_OFD_SETLK, _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, byte, 1, 0)
                )
                keep.append(fd)
        os.write(ready_w, b"r")
        os.read(stop_r, 1)
        os._exit(0)
    os.close(ready_w)
    os.close(stop_r)
    if os.read(ready_r, 1) != b"r":
        raise SystemExit("the holder failed")
    os.close(ready_r)
    return pid, stop_w


def _install(shape: str) -> None:
    """Replace the tree's search by the generic one over ``shape``'s index (not ``current``)."""
    if shape == "current":
        return
    from workerid import _reclock, _slots, _statefile

    getlk, query, unlocked, wrlck = fcntl.fcntl, fcntl.F_GETLK, fcntl.F_UNLCK, fcntl.F_WRLCK

    def lowest_free(fd: int, pages: Any, max_slots: int) -> tuple[int, int | None] | None:
        byte = _reclock.first_free(fd, 0, 64)
        while byte is not None:
            if _reclock.try_lock(fd, byte):
                return byte + 1, None
            byte = _reclock.first_free(fd, byte + 1, 64)
        opened: dict[str, int] = {}
        try:
            for i in range(64, max_slots):
                name, byte = _index_of(shape, i) or ("", 0)
                index_fd = opened.get(name)
                if index_fd is None:
                    path = os.path.join(pages.ns_dir, name)
                    index_fd = opened[name] = _statefile.open_lock_file(path)
                answer = getlk(index_fd, query, _FLOCK.pack(wrlck, os.SEEK_SET, byte, 1, 0))
                if _FLOCK.unpack(answer)[0] != unlocked:
                    continue
                if _reclock.try_lock(index_fd, byte):
                    if _reclock.try_lock(fd, i):
                        return i + 1, opened.pop(name)
                    _reclock.unlock(index_fd, byte, 1)
        finally:
            for index_fd in opened.values():
                os.close(index_fd)
        return None

    _slots._lowest_free = lowest_free  # type: ignore[assignment]


def _one(shape: str) -> tuple[int | None, int]:
    """A fresh child's first ``worker_id()``: (ID, CPU ns)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        import workerid

        _install(shape)
        c0 = time.process_time_ns()
        wid = workerid.worker_id()
        cpu = time.process_time_ns() - c0
        os.write(w, json.dumps([wid, cpu]).encode())
        os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    wid, cpu = json.loads(data)
    return wid, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--samples", type=int, default=5, help="workers per round, shape and size")
    ap.add_argument("--shapes", default=",".join(SHAPES))
    args = ap.parse_args()
    shapes = args.shapes.split(",")
    base = tempfile.mkdtemp(prefix="workerid-shapes-")
    os.environ["WORKERID_DIR"] = os.path.join(base, "locks")
    os.environ["WORKERID_MAX_SLOTS"] = "4096"
    for k in ("WORKERID_NAMESPACE", "WORKERID_COUNT", "WEB_CONCURRENCY"):
        os.environ.pop(k, None)
    ns = _ns_dir()
    cpu: dict[str, dict[int, list[float]]] = {s: {64: [], 1024: []} for s in shapes}
    began = time.monotonic()
    for _round in range(args.rounds):
        for shape in shapes:
            for count in (64, 1024):
                for name in os.listdir(ns):  # the index files of the shape before
                    if name.startswith("slots.") and name != "slots.lock":
                        os.unlink(os.path.join(ns, name))
                holder, stop = _hold(ns, shape, count)
                try:
                    for _ in range(args.samples):
                        wid, ns_cpu = _one(shape)
                        if wid != count + 1:
                            raise SystemExit(f"{shape}: worker {wid}, not {count + 1}")
                        cpu[shape][count].append(ns_cpu / 1000)
                finally:
                    os.close(stop)
                    os.waitpid(holder, 0)
    print(
        f"index shapes: {args.rounds} rounds x {args.samples} workers, {os.cpu_count()} CPUs, "
        f"load {os.getloadavg()[0]:.1f}, {time.monotonic() - began:.0f} s; CPU µs, medians"
    )
    print(f"{'shape':>9} {'worker 65':>10} {'worker 1,025':>13} {'extra':>7} {'ratio':>6}")
    for shape in shapes:
        w65, w1025 = statistics.median(cpu[shape][64]), statistics.median(cpu[shape][1024])
        print(f"{shape:>9} {w65:>10.0f} {w1025:>13.0f} {w1025 - w65:>7.0f} {w1025 / w65:>5.2f}×")


if __name__ == "__main__":
    main()
