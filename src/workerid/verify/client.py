"""Requests to the probe: one at a time, and in bursts until every worker answered.

Every request closes its connection (``Connection: close``) and asks the
worker to hold it a little, and bursts run as many requests at once as there
are workers plus one: a busy worker cannot take the next connection, so the
requests spread over all workers.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

HOST = "127.0.0.1"


def get(port: int, hold: float = 0.0, timeout: float = 10.0) -> dict[str, Any] | None:
    """One request; ``None`` when the server did not answer with JSON."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", f"/?hold={hold:g}", headers={"Connection": "close"})
        resp = conn.getresponse()
        raw = resp.read()
        if resp.status != 200:
            return None
        data = json.loads(raw)
        return data if isinstance(data, dict) else None
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        conn.close()


@dataclasses.dataclass
class Coverage:
    """Which live workers answered a drive, and what they said."""

    answers: dict[int, dict[str, Any]]  # pid -> latest answer
    live: list[int]  # the server's worker PIDs when the drive ended
    requests: int
    seconds: float

    @property
    def missing(self) -> list[int]:
        return [pid for pid in self.live if pid not in self.answers]

    def live_answers(self) -> list[dict[str, Any]]:
        return [self.answers[pid] for pid in self.live if pid in self.answers]


def drive(
    port: int,
    live: Callable[[], list[int]],
    want: int,
    timeout: float = 30.0,
    hold: float = 0.05,
) -> Coverage:
    """Send bursts until ``want`` live workers have all answered, or ``timeout``.

    ``live()`` returns the server's worker PIDs now; a drive is complete when
    there are ``want`` of them and each has answered since the drive began.
    """
    answers: dict[int, dict[str, Any]] = {}
    start = time.monotonic()
    sent = 0
    pids = live()
    with ThreadPoolExecutor(max_workers=want + 1) as pool:
        while True:
            pids = live()
            if len(pids) == want and all(p in answers for p in pids):
                break
            if time.monotonic() - start > timeout:
                break
            for data in pool.map(lambda _: get(port, hold), range(want + 1)):
                sent += 1
                if data is not None and isinstance(data.get("pid"), int):
                    answers[data["pid"]] = data
            if not answers:
                time.sleep(0.1)
    return Coverage(answers, pids, sent, time.monotonic() - start)


def hammer(port: int, count: int, concurrency: int) -> list[dict[str, Any]]:
    """``count`` requests without holding, ``concurrency`` at a time (recycling)."""
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return [d for d in pool.map(lambda _: get(port), range(count)) if d is not None]
