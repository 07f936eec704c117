"""FastAPI under uvicorn: a background scheduler in worker 1 only.

Serve with::

    uvicorn --workers 4 app:app

Every worker runs the lifespan below; only the one whose worker ID is 1 starts
the scheduler, so periodic jobs run once per server, not once per worker. If
worker 1 dies, its replacement gets ID 1 again and starts the scheduler anew.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

from fastapi import FastAPI

import workerid

INTERVAL = float(os.environ.get("SCHEDULER_INTERVAL", "60"))
scheduler: asyncio.Task[None] | None = None


def record(event: str) -> None:
    """Append ``event`` to the file named by ``EXAMPLE_EVENTS``, if set (the tests count them)."""
    path = os.environ.get("EXAMPLE_EVENTS")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"{event} {os.getpid()} {workerid.worker_id()}\n")


async def run_scheduler() -> None:
    record("scheduler-started")
    while True:
        # A real application runs its periodic jobs here (expire sessions,
        # send digests, refresh a cache...).
        await asyncio.sleep(INTERVAL)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    global scheduler
    if workerid.is_first_worker():
        scheduler = asyncio.create_task(run_scheduler())
    yield
    if scheduler is not None:
        scheduler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await scheduler


app = FastAPI(lifespan=lifespan)


@app.get("/")
async def identity() -> dict[str, object]:
    return {
        "pid": os.getpid(),
        "worker_id": workerid.worker_id(),  # 1..4, reused by a replacement worker
        "worker_count": workerid.worker_count(),  # 4, from uvicorn's --workers
        "start_time": workerid.start_time(),  # one value for the whole server run
        "scheduler": scheduler is not None and not scheduler.done(),
    }
