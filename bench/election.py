"""Election cost: N processes started at once, each timing its first ``worker_id()``.

Run: ``python bench/election.py [N ...]`` (default 4 16 64 256). For each N it
forks N workers of one master (a real pre-fork server shape), releases them
together, and records how long each one's first ``workerid.worker_id()``
took (detection, ledger, election). The baseline, measured in the same run
with the same processes' shape, is a bare loop of the election's lock
syscalls: open the slot file, then ``F_SETLK`` byte 0, 1, 2... until one is
free. Figures are per-process p50/p99 in microseconds, and their ratio.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
import tempfile
import time


def _bare(path: str) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    i = 0
    while True:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, i, os.SEEK_SET)
            return i + 1
        except OSError:
            i += 1


def _round(n: int, mode: str, base: str) -> list[tuple[float, float]]:
    """Fork n workers, release them at once; each one's (wall, CPU) time in µs."""
    go_r, go_w = os.pipe()
    done_r, done_w = os.pipe()  # a second pipe: a fast worker must not eat another's "go"
    res_r, res_w = os.pipe()
    pids = []
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            os.close(go_w)
            import workerid  # imported, as in a real app, before the first call

            os.read(go_r, 1)  # every worker blocks here until the master says go
            t0 = time.perf_counter_ns()
            c0 = time.process_time_ns()
            if mode == "workerid":
                wid = workerid.worker_id()
            else:
                wid = _bare(os.path.join(base, "bare.lock"))
            elapsed = time.perf_counter_ns() - t0
            cpu = time.process_time_ns() - c0
            os.write(res_w, f"{elapsed} {cpu} {wid}\n".encode())
            os.read(done_r, 1)  # hold the slot until everyone has elected
            os._exit(0)
        pids.append(pid)
    os.close(go_r)
    time.sleep(0.2 + n / 500)  # let all workers reach the barrier
    os.write(go_w, b"x" * n)
    lines: list[str] = []
    buf = b""
    while len(lines) < n:
        buf += os.read(res_r, 65536)
        *done, rest = buf.split(b"\n")
        lines += [d.decode() for d in done]
        buf = rest
    os.write(done_w, b"x" * n)
    for pid in pids:
        os.waitpid(pid, 0)
    for fd in (go_w, done_r, done_w):
        os.close(fd)
    os.close(res_r)
    os.close(res_w)
    ids = sorted(int(line.split()[2]) for line in lines)
    assert ids == list(range(1, n + 1)), f"{mode}: IDs {ids[:10]}... are not 1..{n}"
    return [(int(line.split()[0]) / 1000, int(line.split()[1]) / 1000) for line in lines]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [4, 16, 64, 256]
    head = (
        f"{'N':>5} {'':>5} {'workerid p50':>12} {'p99':>8} {'bare p50':>9} {'p99':>8} "
        f"{'ratio p50':>9} {'p99':>6}"
    )
    print(head)
    for n in sizes:
        base = tempfile.mkdtemp(prefix="workerid-bench-")
        os.environ["WORKERID_DIR"] = os.path.join(base, "locks")
        os.environ["WORKERID_MAX_SLOTS"] = str(max(64, n))
        try:
            ours: list[tuple[float, float]] = []
            bare: list[tuple[float, float]] = []
            for _ in range(3):  # interleaved, so both see the same machine
                ours += _round(n, "workerid", base)
                bare += _round(n, "bare", base)
        finally:
            shutil.rmtree(base, ignore_errors=True)
        for label, col in (("wall", 0), ("cpu", 1)):
            o = [x[col] for x in ours]
            b = [x[col] for x in bare]
            o50, o99, b50, b99 = _pct(o, 0.5), _pct(o, 0.99), _pct(b, 0.5), _pct(b, 0.99)
            print(
                f"{n:>5} {label:>5} {o50:>10.0f}µs {o99:>6.0f}µs {b50:>7.0f}µs {b99:>6.0f}µs "
                f"{o50 / b50:>8.1f}× {o99 / b99:>5.1f}×"
            )
    print("(per-process first-call times pooled over 3 interleaved rounds of each;")
    print(" wall includes waiting for one of the 2 cores, cpu is the process's own CPU time)")


if __name__ == "__main__":
    main()
