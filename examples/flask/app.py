"""Flask under gunicorn, one worker ID per worker.

Serve with::

    gunicorn -w 4 -c python:workerid.gunicorn app:app

``-c python:workerid.gunicorn`` loads workerid's gunicorn hooks, which tell
every worker the arbiter's worker count (``TTIN``/``TTOU`` included); with your
own config file, see gunicorn.conf.py here.
"""

from __future__ import annotations

import os
import time

from flask import Flask

import workerid

app = Flask(__name__)


def record(event: str) -> None:
    """Append ``event`` to the file named by ``EXAMPLE_EVENTS``, if set (the tests count them)."""
    path = os.environ.get("EXAMPLE_EVENTS")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"{event} {os.getpid()} {workerid.worker_id()}\n")


@workerid.once("warm-cache", timeout=120)
def warm_cache() -> None:
    """One worker per server run fills the shared cache; the others wait, then skip.

    A real application would fill Redis, memcached or files on disk here:
    something every worker reads, so filling it once is enough.
    """
    record("warm-cache")
    time.sleep(0.5)  # stands in for the slow part


# gunicorn imports the app in each worker after forking it (unless --preload),
# so this runs at worker start: the first worker warms the cache, the others
# wait until it is done and then start serving.
warm_cache()


@app.get("/")
def identity() -> dict[str, object]:
    return {
        "pid": os.getpid(),
        "worker_id": workerid.worker_id(),  # 1..4, reused by a replacement worker
        "worker_count": workerid.worker_count(),  # 4
        "start_time": workerid.start_time(),  # one value for the whole server run
    }
