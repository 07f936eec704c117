"""Requests a scenario sends: drives until every worker answered, and background load.

:mod:`.client` speaks HTTP; this module speaks in scenarios: a drive adds
its own rows (every worker answered, the probe could record), and background
traffic keeps requests arriving while a server restarts or reloads, so new
workers elect as they come up, as they would in production.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

from . import client, settle
from .session import Session

#: how long to drive requests until every worker has answered
DRIVE_TIMEOUT = 30.0


def drive(s: Session, scenario: str, record: bool = True) -> client.Coverage:
    """Drive until all N workers answered; ``record=False`` leaves the coverage row out."""
    cov = client.drive(s.server.port, s.server.worker_pids, s.n, DRIVE_TIMEOUT)
    if record:
        settle.answered(s, scenario, cov)
    settle.record_errors(s, scenario, cov)
    return cov


@contextlib.contextmanager
def background(port: int, threads: int = 2) -> Iterator[None]:
    """Keep requests flowing until the block ends."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            client.get(port, timeout=2)
            stop.wait(0.01)

    workers = [threading.Thread(target=loop, daemon=True) for _ in range(threads)]
    for t in workers:
        t.start()
    try:
        yield
    finally:
        stop.set()
        for t in workers:
            t.join()


def first_answer(port: int, timeout: float = 10) -> dict[str, Any] | None:
    """The first answer from whichever worker is up first (or None by ``timeout``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = client.get(port, timeout=2)
        if got is not None:
            return got
        time.sleep(0.02)
    return None
