"""The lab's small tools: a log line, a command's output, waiting for a condition."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def log(msg: str) -> None:
    print(f"[e2e {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(cmd: list[str], *, timeout: float = 300, env: dict[str, str] | None = None) -> str:
    """Run a command; its stdout, or an AssertionError with its output."""
    proc = subprocess.run(
        cmd, check=False, capture_output=True, text=True, timeout=timeout, env=env
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} -> rc {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc.stdout


def wait_for(
    probe: Callable[[], T], ok: Callable[[T], bool], timeout: float, what: str, every: float = 0.5
) -> T:
    """Call probe() until ok(value); the value, or AssertionError naming the last one seen."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if ok(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {what}; last: {value}"
            )
        time.sleep(every)
