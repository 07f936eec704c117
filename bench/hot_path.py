"""Hot path: nanoseconds per ``worker_id()`` call after the first, vs a cached int.

Run: ``python bench/hot_path.py``. The baseline is the cheapest honest
equivalent: a module-level function returning a cached int. Both are timed
with ``timeit`` in the same run, alternating, best of 7 repeats.
"""

from __future__ import annotations

import os
import tempfile
import timeit

_CACHED = 3


def baseline() -> int | None:
    return _CACHED


def main() -> None:
    os.environ.setdefault("WORKERID_DIR", tempfile.mkdtemp(prefix="workerid-bench-"))
    import workerid

    workerid.worker_id()  # the first call does the work; everything after is the hot path
    number = 2_000_000
    results: dict[str, list[float]] = {
        "baseline": [],
        "worker_id": [],
        "start_time": [],
        "identity": [],
    }
    funcs = {
        "baseline": baseline,
        "worker_id": workerid.worker_id,
        "start_time": workerid.start_time,
        "identity": workerid.identity,
    }
    for _ in range(7):
        for name, fn in funcs.items():
            results[name].append(timeit.timeit(fn, number=number) / number * 1e9)
    base = min(results["baseline"])
    print(f"{'call':>12} {'ns/call':>8} {'ratio':>6}")
    for name, times in results.items():
        best = min(times)
        print(f"{name:>12} {best:>8.1f} {best / base:>5.2f}×")


if __name__ == "__main__":
    main()
