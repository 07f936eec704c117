"""Election cost, fairly: a herd of workers released at once, each timing its first ``worker_id()``.

Run: ``python bench/election.py`` (quick: 5 rounds of 64, about a minute and a
half here), ``--long`` (11 rounds, more samples), ``--src DIR`` (the tree the
workers import; default this checkout's ``src``), ``--json FILE``.

Shape of one measurement (a *zygote*): a master process started with its own
command line (``election.py --zygote``, so it is the top of its tree, as a
server's master is) forks N children. Each child has imported workerid,
either itself after the fork (``import after fork``: mod_wsgi, gunicorn
without ``--preload``) or inherited from the zygote, which imported it before
forking (``import in master``: gunicorn ``--preload``, uWSGI without
lazy-apps), and then says "ready" on a pipe and blocks reading a second pipe.
Only when all N are ready does the zygote close that pipe's last write end:
"go" for everyone at once (every blocked reader gets EOF). Each child times
its one call with its own CPU clock (``time.process_time_ns``: what the call
costs this process, whatever the 2 cores are doing) and the monotonic clock;
the herd's *makespan* is from "go" to the last worker elected.

Variants, measured in the same run, interleaved round by round (rotating
which goes first), in the same process shape (every child has imported
workerid in every variant, so copy-on-write and caches are alike):

* ``workerid``: ``workerid.worker_id()``;
* ``bare``: the bare lock loop (open ``slots.lock``, ``F_SETLK`` byte 0, 1, ...
  until one is free);
* ``replay``: workerid's own syscall sequence for that call, replayed in
  straight-line code (:func:`_replay`, derived from ``strace -f`` of one
  first call), without workerid's Python logic: what the syscalls alone cost.

Figures: per round, p50 of the CPU time (and of the wall time) over the herd,
then the median over rounds; p99 over all rounds' samples pooled (printed
only with >= 100 samples); the first worker of each run, which writes the
run's ledger entry, is left out of both (it is the one whose ``write``
syscall count, ``/proc/self/io`` ``syscw``, moved), but not out of the
makespan. Ratios are per round against the bare loop of the same round, then
the median.

Also: worker 1,025's election against worker 65's (one process holds IDs
1..1,024 or 1..64 with open-file-description locks, each a lock record of
its own, as 1,024 workers' would be, with their run ranges, laid out as the
tree under test lays them out: :func:`_hold`; single workers then elect one
at a time),
and the hot path: ``worker_id()`` and a ``@once`` function after its first
call, against a function returning a cached int (``timeit``, best of each
round, median of per-round ratios).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import resource
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Callable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SRC = os.path.join(os.path.dirname(HERE), "src")
VARIANTS = ("workerid", "bare", "replay")
SHAPES = ("after", "master")
SHAPE_NAMES = {"after": "import after fork", "master": "import in master"}
# struct flock (Linux): short l_type, short l_whence, off_t l_start, off_t l_len, pid_t l_pid
_FLOCK = struct.Struct("@hhqqi4x")


# --- what the children call ------------------------------------------------------------


def _bare(path: str) -> int:
    """The bare lock loop: open the slot file, take the lowest free byte."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    i = 0
    while True:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, i, os.SEEK_SET)
            return i + 1
        except OSError:
            i += 1


def _read_proc(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 65536)
    finally:
        os.close(fd)


def _replay(lock_dir: str, ns_dir: str, boot_cached: bool, ns_cached: bool) -> int:
    """workerid's syscalls for a worker's first call, in straight-line code.

    The sequence of ``strace -f`` of one fresh worker's ``worker_id()`` (a
    fork of a master that is the top of its tree, generic loader, the run's
    ledger entry already written), in order: helper check (parent's stat,
    both executables and command lines, the grandparent's executable),
    detection, run key (boot id unless inherited, PID namespace), the two
    directory checks, the directory flock, the slot file, the orphan marker,
    the ledger read, the lock loop and the run range.
    """
    ppid = os.getppid()
    stat = _read_proc(f"/proc/{ppid}/stat")
    grand = int(stat[stat.rfind(b")") + 2 :].split()[1])
    me = os.getpid()
    os.readlink(f"/proc/{ppid}/exe")
    os.readlink(f"/proc/{me}/exe")
    _read_proc(f"/proc/{ppid}/cmdline")
    _read_proc(f"/proc/{me}/cmdline")
    os.readlink(f"/proc/{grand}/exe")
    os.getppid()
    os.getpid()
    os.getpid()
    os.getpid()
    if not boot_cached:
        _read_proc("/proc/sys/kernel/random/boot_id")
    if not ns_cached:
        os.readlink("/proc/self/ns/pid")
    for path in (lock_dir, ns_dir):
        os.lstat(path)
        os.geteuid()
        os.access(path, os.W_OK | os.X_OK)
    dfd = os.open(lock_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    fcntl.flock(dfd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    fd = os.open(
        os.path.join(ns_dir, "slots.lock"),
        os.O_RDWR | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC,
    )
    os.fstat(fd)
    os.geteuid()
    os.path.lexists(os.path.join(ns_dir, "slots.orphaned"))
    lfd = os.open(
        os.path.join(lock_dir, "ledger.json"),
        os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC,
    )
    os.fstat(lfd)
    os.geteuid()
    os.read(lfd, 65537)
    os.close(lfd)
    i = 0
    while True:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, i, os.SEEK_SET)
            break
        except OSError:
            i += 1
    fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB, 1_796_000_000, 2**40, os.SEEK_SET)
    os.getpid()
    return i + 1


def _syscw() -> int:
    """This process's count of write syscalls so far (``/proc/self/io``)."""
    for line in _read_proc("/proc/self/io").splitlines():
        if line.startswith(b"syscw:"):
            return int(line.split()[1])
    return 0


# --- the zygote (a master forking a herd) ---------------------------------------------


def _call_for(p: dict[str, Any]) -> Callable[[], int | None]:
    base = p["base"]
    if p["variant"] == "workerid":
        import workerid

        return workerid.worker_id
    if p["variant"] == "bare":
        path = os.path.join(base, "bare", "slots.lock")
        return lambda: _bare(path)
    from workerid import _procfs

    lock_dir = os.path.join(base, "replay")
    ns_dir = os.path.join(lock_dir, "ns")
    # what this process has inherited (import in master; the tree under test decides)
    boot_cached = _procfs._boot_id is not None
    ns_cached = getattr(_procfs, "_pid_ns", None) is not None
    return lambda: _replay(lock_dir, ns_dir, boot_cached, ns_cached)


def _child(p: dict[str, Any], fds: dict[str, int]) -> None:
    os.close(fds["go_w"])
    os.close(fds["done_w"])
    os.close(fds["ready_r"])
    os.close(fds["res_r"])
    import workerid  # in both shapes every child has it (inherited or imported here)

    del workerid
    call = _call_for(p)
    io0 = _syscw()
    os.write(fds["ready_w"], b"r")
    os.read(fds["go_r"], 1)  # blocks until the zygote closes the last write end
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t0 = time.monotonic_ns()
    c0 = time.process_time_ns()
    wid = call()
    c1 = time.process_time_ns()
    t1 = time.monotonic_ns()
    f1 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    wrote = _syscw() - io0 > 1  # > 1: the "ready" byte itself was one write
    line = json.dumps([t0, t1, c1 - c0, f1 - f0, wid, wrote]) + "\n"
    os.write(fds["res_w"], line.encode())
    os.read(fds["done_r"], 1)  # hold the ID until the whole herd has elected
    os._exit(0)


def _herd(p: dict[str, Any], n: int) -> dict[str, Any]:
    r = {}
    r["ready_r"], r["ready_w"] = os.pipe()
    r["go_r"], r["go_w"] = os.pipe()
    r["res_r"], r["res_w"] = os.pipe()
    r["done_r"], r["done_w"] = os.pipe()
    pids = []
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            try:
                _child(p, r)
            finally:
                os._exit(1)
        pids.append(pid)
    for name in ("ready_w", "go_r", "res_w", "done_r"):
        os.close(r[name])
    got = 0
    while got < n:
        chunk = os.read(r["ready_r"], n - got)
        if not chunk:
            raise SystemExit("a child died before it was ready")
        got += len(chunk)
    time.sleep(0.02)  # the last to say "ready" is a few instructions from its read()
    t_go = time.monotonic_ns()
    os.close(r["go_w"])  # go: every child blocked in read() gets EOF at once
    buf = b""
    rows: list[list[Any]] = []
    while len(rows) < n:
        chunk = os.read(r["res_r"], 65536)
        if not chunk:
            raise SystemExit("a child died before it reported")
        buf += chunk
        *lines, buf = buf.split(b"\n")
        rows += [json.loads(line) for line in lines]
    os.close(r["done_w"])
    for pid in pids:
        os.waitpid(pid, 0)
    os.close(r["ready_r"])
    os.close(r["res_r"])
    return {"t_go": t_go, "rows": rows}


def _hold(path: str, count: int, variant: str) -> tuple[int, int]:
    """Fork a process holding worker IDs 1..count as ``count`` workers would.

    Open-file-description locks, one descriptor per simulated worker: the
    kernel keeps one record per owner (adjacent locks of one POSIX owner
    would merge into one), and they conflict with POSIX locks exactly as
    other workers' would. For ``workerid``, laid out as the tree under test
    lays them out (``_layout.PAGE``: IDs above it also in their page file),
    each worker with its run range in ``slots.lock`` (a read lock whose
    length is the start time), in ID order, as a herd that elected 1..count
    leaves them; for ``bare``, the ID bytes alone in one file.
    Returns (pid, fd to close to release it).
    """
    ready_r, ready_w = os.pipe()
    stop_r, stop_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(ready_r)
        os.close(stop_w)
        from workerid import _layout

        page = getattr(_layout, "PAGE", None) if variant == "workerid" else None
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < 2 * count + 64:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 2 * count + 64), hard))
        keep = []
        run = _layout.RUN_BASE + 12345 * _layout.RUN_SPACING  # a run of its own

        def ofd_lock(target: str, kind: int, start: int, length: int) -> None:
            fd = os.open(target, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _FLOCK.pack(kind, os.SEEK_SET, start, length, 0))
            keep.append(fd)

        for i in range(count):
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, i, 1, 0))
            if variant == "workerid":
                fcntl.fcntl(
                    fd,
                    fcntl.F_OFD_SETLK,
                    _FLOCK.pack(fcntl.F_RDLCK, os.SEEK_SET, run, 1_796_000_000, 0),
                )
            keep.append(fd)
            if page is not None and i >= page:
                pages = os.path.join(os.path.dirname(path), f"slots.{i // page}.lock")
                ofd_lock(pages, fcntl.F_WRLCK, i % page, 1)
        os.write(ready_w, b"r")
        os.read(stop_r, 1)
        os._exit(0)
    os.close(ready_w)
    os.close(stop_r)
    if os.read(ready_r, 1) != b"r":
        raise SystemExit("the holder failed")
    os.close(ready_r)
    return pid, stop_w


def _whoami(p: dict[str, Any]) -> str:
    """In a throwaway child: elect once (creates the files, writes the ledger entry)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        import workerid

        ident = workerid.identity()
        path = os.path.join(ident.lock_dir or "", ident.namespace, "slots.lock")
        if p["variant"] == "bare":
            path = os.path.join(p["base"], "bare", "slots.lock")
        os.write(w, path.encode())
        os._exit(0)
    os.close(w)
    path = os.read(r, 4096).decode()
    os.close(r)
    os.waitpid(pid, 0)
    return path


def zygote() -> None:
    p = json.load(sys.stdin)
    if p["shape"] == "master":
        import workerid  # noqa: F401  (a preloading master: the children inherit it)
    out: dict[str, Any] = {}
    if p.get("hold"):
        path = _whoami(p)
        holder, stop = _hold(path, p["hold"], p["variant"])
        try:
            out["batches"] = [_herd(p, 1) for _ in range(p["batches"])]
        finally:
            os.close(stop)
            os.waitpid(holder, 0)
    else:
        out["batches"] = [_herd(p, p["n"])]
    json.dump(out, sys.stdout)


# --- hot path and once() (in one process of the tree under test) -------------------------

_CACHED = 3


def _cached_int() -> int | None:
    return _CACHED


def micro() -> None:
    p = json.load(sys.stdin)
    import workerid

    workerid.worker_id()

    @workerid.once("bench-micro")
    def seed() -> int:
        return 1

    seed()  # the first call runs it; every later one is the done-path
    funcs: dict[str, Callable[[], object]] = {
        "cached": _cached_int,
        "worker_id": workerid.worker_id,
        "once": seed,
    }
    number = p["number"]
    rounds: list[dict[str, float]] = []
    for _ in range(p["rounds"]):
        best = {}
        for name, fn in funcs.items():
            best[name] = min(timeit.repeat(fn, number=number, repeat=3)) / number * 1e9
        rounds.append(best)
    json.dump(rounds, sys.stdout)


# --- the orchestrator -----------------------------------------------------------------------


def _run(args: argparse.Namespace, mode: str, params: dict[str, Any], env: dict[str, str]) -> Any:
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), mode],
        input=json.dumps(params),
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{mode} failed ({proc.returncode}):\n{proc.stderr}")
    if proc.stderr.strip() and args.verbose:
        print(proc.stderr, file=sys.stderr)
    return json.loads(proc.stdout)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _seed_replay_dir(base: str, ledger_from: str) -> None:
    """The replay's own lock directory: same layout, a ledger of realistic size."""
    lock_dir = os.path.join(base, "replay")
    os.makedirs(os.path.join(lock_dir, "ns"), mode=0o700, exist_ok=True)
    with open(os.path.join(lock_dir, "ns", "slots.lock"), "ab"):
        pass
    try:
        shutil.copyfile(ledger_from, os.path.join(lock_dir, "ledger.json"))
    except OSError:
        with open(os.path.join(lock_dir, "ledger.json"), "w") as f:
            f.write("{}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--long", action="store_true", help="11 rounds, more samples (minutes)")
    ap.add_argument("--rounds", type=int, help="interleaved rounds (default 5, --long 11)")
    ap.add_argument("-n", type=int, default=64, help="herd size (default 64)")
    ap.add_argument("--src", default=DEFAULT_SRC, help="the tree the workers import")
    ap.add_argument("--no-scale", action="store_true", help="skip the 1,024-slot case")
    ap.add_argument("--json", help="also write every figure to this file")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    rounds = args.rounds or (11 if args.long else 5)
    probes = 20 if args.long else 8
    n = args.n
    base = tempfile.mkdtemp(prefix="workerid-bench-")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.abspath(args.src)
    env["WORKERID_DIR"] = os.path.join(base, "locks")
    env["WORKERID_MAX_SLOTS"] = "4096"
    for k in ("WORKERID_NAMESPACE", "WORKERID_COUNT", "WEB_CONCURRENCY"):
        env.pop(k, None)
    os.makedirs(os.path.join(base, "bare"), mode=0o700)
    began = time.monotonic()
    print(
        f"workerid election bench: {rounds} rounds, herd of {n}, {os.cpu_count()} CPUs, "
        f"Python {sys.version.split()[0]}, src {os.path.abspath(args.src)}"
    )
    # Warm-up (not recorded): creates the namespace's slots.lock, which makes its
    # creator read /proc/locks (a kernel cost of a first start, once per boot).
    for shape in SHAPES:
        _run(args, "--zygote", {"shape": shape, "variant": "workerid", "n": 2, "base": base}, env)
    _seed_replay_dir(base, os.path.join(base, "locks", "ledger.json"))

    # herd[shape][variant] = list of per-round dicts
    herd: dict[str, dict[str, list[dict[str, Any]]]] = {
        s: {v: [] for v in VARIANTS} for s in SHAPES
    }
    for r in range(rounds):
        order = [(s, v) for s in SHAPES for v in VARIANTS]
        k = r % len(order)
        for shape, variant in order[k:] + order[:k]:
            params = {"shape": shape, "variant": variant, "n": n, "base": base}
            out = _run(args, "--zygote", params, env)["batches"][0]
            rows = out["rows"]
            ids = sorted(row[4] for row in rows)
            if ids != list(range(1, n + 1)):
                raise SystemExit(f"{shape}/{variant}: IDs {ids[:8]}... are not 1..{n}")
            kept = [row for row in rows if not row[5]]
            herd[shape][variant].append(
                {
                    "cpu": [row[2] / 1000 for row in kept],
                    "wall": [(row[1] - row[0]) / 1000 for row in kept],
                    "minflt": [row[3] for row in kept],
                    "makespan": (max(row[1] for row in rows) - out["t_go"]) / 1000,
                    "writers": len(rows) - len(kept),
                }
            )
        print(f"  round {r + 1}/{rounds} done ({time.monotonic() - began:.0f} s)", flush=True)

    scale: dict[str, dict[int, list[float]]] = {"workerid": {}, "bare": {}}
    if not args.no_scale:
        for r in range(max(3, rounds // 2)):
            for hold in (64, 1024) if r % 2 == 0 else (1024, 64):
                for variant in ("workerid", "bare"):
                    params = {
                        "shape": "after",
                        "variant": variant,
                        "n": 1,
                        "base": base,
                        "hold": hold,
                        "batches": probes,
                    }
                    out = _run(args, "--zygote", params, env)
                    for batch in out["batches"]:
                        (row,) = batch["rows"]
                        if row[4] != hold + 1:
                            raise SystemExit(f"{variant}: worker {row[4]}, not {hold + 1}")
                        scale[variant].setdefault(hold, []).append(row[2] / 1000)
        print(f"  1,024-slot case done ({time.monotonic() - began:.0f} s)", flush=True)

    micro_rounds = _run(args, "--micro", {"rounds": rounds, "number": 200_000}, env)
    shutil.rmtree(base, ignore_errors=True)
    figures = _report(herd, scale, micro_rounds, n)
    print(f"wall time {time.monotonic() - began:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"herd": herd, "scale": scale, "micro": micro_rounds, **figures}, f)


def _report(
    herd: dict[str, dict[str, list[dict[str, Any]]]],
    scale: dict[str, dict[int, list[float]]],
    micro_rounds: list[dict[str, float]],
    n: int,
) -> dict[str, Any]:
    med = statistics.median
    figures: dict[str, Any] = {}
    print()
    print(
        f"herd of {n}: CPU µs of each worker's first call (p50: median over rounds of the "
        "round's p50; p99: all rounds pooled, first worker of each run left out)"
    )
    print(
        f"{'shape':>17} {'variant':>8} {'cpu p50':>8} {'p99':>7} {'wall p50':>9} "
        f"{'makespan':>9} {'minflt':>6} {'×bare p50':>9} {'p99':>5} {'makespan':>8}"
    )
    for shape in SHAPES:
        bare = herd[shape]["bare"]
        for variant in VARIANTS:
            rs = herd[shape][variant]
            pooled = [x for rd in rs for x in rd["cpu"]]
            p50 = med(statistics.median(rd["cpu"]) for rd in rs)
            p99 = _pct(pooled, 0.99) if len(pooled) >= 100 else float("nan")
            bare_pooled = [x for rd in bare for x in rd["cpu"]]
            r50 = med(
                statistics.median(a["cpu"]) / statistics.median(b["cpu"])
                for a, b in zip(rs, bare, strict=True)
            )
            r99 = p99 / _pct(bare_pooled, 0.99) if len(bare_pooled) >= 100 else float("nan")
            rmk = med(a["makespan"] / b["makespan"] for a, b in zip(rs, bare, strict=True))
            wall = med(statistics.median(rd["wall"]) for rd in rs)
            mk = med(rd["makespan"] for rd in rs)
            flt = med(statistics.median(rd["minflt"]) for rd in rs)
            print(
                f"{SHAPE_NAMES[shape]:>17} {variant:>8} {p50:>8.0f} {p99:>7.0f} {wall:>9.0f} "
                f"{mk:>9.0f} {flt:>6.0f} {r50:>8.2f}× {r99:>4.1f}× {rmk:>7.2f}×"
            )
            figures[f"{shape}.{variant}"] = {
                "cpu_p50": p50,
                "cpu_p99": p99,
                "samples": len(pooled),
                "wall_p50": wall,
                "makespan": mk,
                "minflt": flt,
                "ratio_p50": r50,
                "ratio_p99": r99,
                "ratio_makespan": rmk,
            }
    writers = sum(rd["writers"] for s in SHAPES for v in VARIANTS for rd in herd[s][v])
    print(f"  (left out: {writers} ledger-writing first workers; µs; ratios per round, median)")

    if scale["workerid"]:
        print()
        print("one worker electing while 64 or 1,024 IDs are held: CPU µs, median")
        for variant in ("workerid", "bare"):
            w65 = med(scale[variant][64])
            w1025 = med(scale[variant][1024])
            print(
                f"{variant:>10}  worker 65 {w65:>7.0f}  worker 1,025 {w1025:>7.0f}  "
                f"ratio {w1025 / w65:>5.2f}×  (samples {len(scale[variant][64])})"
            )
            figures[f"scale.{variant}"] = {"w65": w65, "w1025": w1025, "ratio": w1025 / w65}

    print()
    print("after the first call: ns per call (best of 3 per round, median over rounds)")
    for name in ("cached", "worker_id", "once"):
        ns = med(rd[name] for rd in micro_rounds)
        ratio = med(rd[name] / rd["cached"] for rd in micro_rounds)
        print(f"{name:>10} {ns:>7.1f} ns  {ratio:>5.2f}×")
        figures[f"micro.{name}"] = {"ns": ns, "ratio": ratio}

    print()
    print("issue 14 targets (ratios in this run):")
    checks = [
        ("import after fork p50 <= 1.5x bare", figures["after.workerid"]["ratio_p50"], 1.5),
        ("import in master p50 <= 1.5x bare", figures["master.workerid"]["ratio_p50"], 1.5),
        (
            f"herd makespan at {n} <= 1.5x bare (after fork)",
            figures["after.workerid"]["ratio_makespan"],
            1.5,
        ),
        (
            f"herd makespan at {n} <= 1.5x bare (in master)",
            figures["master.workerid"]["ratio_makespan"],
            1.5,
        ),
    ]
    if "scale.workerid" in figures:
        checks.append(("worker 1,025 <= 2x worker 65", figures["scale.workerid"]["ratio"], 2.0))
    checks += [
        ("once() done-path <= 3x cached int", figures["micro.once"]["ratio"], 3.0),
        ("hot path worker_id() <= 2x cached int", figures["micro.worker_id"]["ratio"], 2.0),
    ]
    for label, value, bound in checks:
        print(f"  {label:<48} {value:>6.2f}×  {'met' if value <= bound else 'NOT met'}")
    return figures


if __name__ == "__main__":
    if sys.argv[1:2] == ["--zygote"]:
        zygote()
    elif sys.argv[1:2] == ["--micro"]:
        micro()
    else:
        main()
