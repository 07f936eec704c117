"""The probe's durable record: one SQLite file per verify session.

Workers write, the harness reads. The file lives in a directory the worker
user owns, in WAL mode with a busy timeout, so several workers can write at
once and the harness can read while they do. The harness opens the database
first and hands the ``-wal``/``-shm`` files to the worker user (see
:func:`prepare`): otherwise whoever opened it first (root) would own them and
the workers could no longer write.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import threading
import time
from typing import Any

ENV_DB = "WORKERID_VERIFY_DB"
BUSY_MS = 10_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS workers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pid INTEGER NOT NULL,
    ticks INTEGER NOT NULL,
    ppid INTEGER NOT NULL,
    worker_id INTEGER,
    worker_count INTEGER,
    start_time INTEGER,
    generation TEXT,
    loader TEXT,
    degraded TEXT NOT NULL,
    identity TEXT NOT NULL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    requests INTEGER NOT NULL DEFAULT 1,
    UNIQUE (pid, ticks)
);
CREATE TABLE IF NOT EXISTS seeds (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    generation TEXT,
    start_time INTEGER,
    pid INTEGER NOT NULL,
    worker_id INTEGER,
    at REAL NOT NULL
);
"""


@dataclasses.dataclass(frozen=True)
class WorkerRow:
    """What one worker process said about itself (first and latest request)."""

    id: int
    pid: int
    ticks: int
    ppid: int
    worker_id: int | None
    worker_count: int | None
    start_time: int | None
    generation: str | None
    loader: str | None
    degraded: tuple[str, ...]
    first_seen: float
    last_seen: float
    requests: int


@dataclasses.dataclass(frozen=True)
class SeedRow:
    id: int
    generation: str | None
    start_time: int | None
    pid: int
    worker_id: int | None
    at: float


def connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path, timeout=BUSY_MS / 1000, isolation_level=None, check_same_thread=False
    )
    conn.execute(f"PRAGMA busy_timeout={BUSY_MS}")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def prepare(path: str, uid: int, gid: int) -> sqlite3.Connection:
    """Create the database and return the harness's connection (keep it open).

    While it is open the ``-wal`` and ``-shm`` files exist; they are chowned
    to the worker user here so workers that open the database later can write.
    """
    conn = connect(path)
    conn.executescript(_SCHEMA)
    conn.execute("SELECT count(*) FROM workers").fetchone()
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.chown(path + suffix, uid, gid)
    return conn


def record_worker(conn: sqlite3.Connection, ident: dict[str, Any], ticks: int) -> None:
    now = time.time()
    conn.execute(
        "INSERT INTO workers (pid, ticks, ppid, worker_id, worker_count, start_time, generation,"
        " loader, degraded, identity, first_seen, last_seen) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
        " ON CONFLICT (pid, ticks) DO UPDATE SET last_seen = excluded.last_seen,"
        " requests = requests + 1",
        (
            ident["pid"],
            ticks,
            os.getppid(),
            ident["worker_id"],
            ident["worker_count"],
            ident["start_time"],
            ident["generation"],
            ident["loader"],
            json.dumps(list(ident["degraded"])),
            json.dumps(ident, default=str),
            now,
            now,
        ),
    )


def record_seed(conn: sqlite3.Connection, ident: dict[str, Any]) -> None:
    conn.execute(
        "INSERT INTO seeds (generation, start_time, pid, worker_id, at) VALUES (?,?,?,?,?)",
        (ident["generation"], ident["start_time"], os.getpid(), ident["worker_id"], time.time()),
    )


def workers(conn: sqlite3.Connection, since: int = 0) -> list[WorkerRow]:
    """Workers first recorded after row ``since`` (see :func:`high_water`)."""
    rows = conn.execute(
        "SELECT id, pid, ticks, ppid, worker_id, worker_count, start_time, generation, loader,"
        " degraded, first_seen, last_seen, requests FROM workers WHERE id > ? ORDER BY id",
        (since,),
    ).fetchall()
    return [
        WorkerRow(
            id=row[0],
            pid=row[1],
            ticks=row[2],
            ppid=row[3],
            worker_id=row[4],
            worker_count=row[5],
            start_time=row[6],
            generation=row[7],
            loader=row[8],
            degraded=tuple(json.loads(row[9])),
            first_seen=row[10],
            last_seen=row[11],
            requests=row[12],
        )
        for row in rows
    ]


def seeds(conn: sqlite3.Connection, since: int = 0) -> list[SeedRow]:
    rows = conn.execute(
        "SELECT id, generation, start_time, pid, worker_id, at FROM seeds WHERE id > ? ORDER BY id",
        (since,),
    ).fetchall()
    return [SeedRow(*row) for row in rows]


def high_water(conn: sqlite3.Connection) -> tuple[int, int]:
    """The newest (worker, seed) row ids: what a scenario counts from."""
    w = conn.execute("SELECT coalesce(max(id), 0) FROM workers").fetchone()[0]
    s = conn.execute("SELECT coalesce(max(id), 0) FROM seeds").fetchone()[0]
    return int(w), int(s)


def said(conn: sqlite3.Connection) -> dict[tuple[int, int], int | None]:
    """(pid, start ticks) -> the worker ID each recorded worker said it had."""
    rows = conn.execute("SELECT pid, ticks, worker_id FROM workers").fetchall()
    return {(int(p), int(t)): w for p, t, w in rows}


#: (worker, seed) row ids, from :func:`high_water`
Mark = tuple[int, int]


class Ledger:
    """The harness's reads, on its one connection (see :func:`prepare`).

    The sampler thread reads (:meth:`said`) while a scenario reads in the
    main thread: one lock serialises them, because a ``sqlite3`` connection
    shared across threads (``check_same_thread=False``) must not be used by
    two at once.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._lock = threading.Lock()

    def mark(self) -> Mark:
        with self._lock:
            return high_water(self.conn)

    def workers_since(self, mark: Mark) -> list[WorkerRow]:
        with self._lock:
            return workers(self.conn, mark[0])

    def seeds_since(self, mark: Mark) -> list[SeedRow]:
        with self._lock:
            return seeds(self.conn, mark[1])

    def said(self) -> dict[tuple[int, int], int | None]:
        with self._lock:
            return said(self.conn)
