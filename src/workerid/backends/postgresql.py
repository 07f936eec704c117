"""PostgreSQL: worker ID ``i`` of a namespace is the session-level advisory lock (ns, i).

``pg_try_advisory_lock(int4 ns, int4 i)`` is held by the worker's database
session until the session ends, whatever ends it: the worker's exit
(``kill -9`` included: the kernel closes the socket and the backend exits at
once), the server's restart, or ``idle_session_timeout`` (set per session to
the lease, so a worker cut off from the server loses its lock on the server
``lease`` seconds after its last beat, and stops answering the ID itself
before that). ``ns`` is a 31-bit CRC of the namespace; two namespaces with
the same CRC share one ID space (more exclusion, never less).

``once(name, scope="deploy")``: the run lock is the session advisory lock on
one bigint (a hash of namespace, deploy and name: the one-key space, apart
from the IDs' two-key space), held by a connection of its own for the call;
the result is a row of ``workerid_once``.

The fencing token is a row of ``workerid_claims`` (namespace, worker_id),
bumped by the holder right after it takes the lock: only the lock's holder
writes that row, so the token strictly increases with every claim of the ID,
and it survives restarts (it is a committed row).

Every statement goes through :meth:`PostgreSQL._run`, which waits for the
answer with ``select()`` and a deadline: psycopg's blocking calls have no
client-side timeout, and a worker behind a partition must give its ID up on
time, not when TCP notices.
"""

# Every SQL text here is built from this module's constants only; values
# always travel as parameters ($1...).
# ruff: noqa: S608

from __future__ import annotations

import hashlib
import os
import select
import socket
import time
import zlib
from typing import Any

import psycopg
from psycopg import pq

from . import (
    BackendError,
    BackendURL,
    Claim,
    ClaimLost,
    Engine,
    Me,
    OnceKey,
    OnceRecord,
    without_lease,
)

TABLE = "workerid_claims"
ONCE_TABLE = "workerid_once"
#: pg_advisory_xact_lock(bigint) key serialising the table's creation
_SCHEMA_LOCK = 0x776F726B65726964  # "workerid"
#: candidates read per round; more only when racing workers took them all
_CANDIDATES = 16

_CREATE = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    namespace text NOT NULL,
    worker_id integer NOT NULL,
    nskey integer NOT NULL,
    token bigint NOT NULL,
    host text NOT NULL,
    pid integer NOT NULL,
    here text NOT NULL,
    local_id integer,
    backend_pid integer NOT NULL,
    claimed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, worker_id)
)"""

_CREATE_ONCE = f"""
CREATE TABLE IF NOT EXISTS {ONCE_TABLE} (
    namespace text NOT NULL,
    deploy text NOT NULL,
    name text NOT NULL,
    state text,
    host text,
    pid integer,
    error text,
    attempt text,
    at timestamptz,
    runner_host text,
    runner_pid integer,
    PRIMARY KEY (namespace, deploy, name)
)"""

_HELD = """
    l.locktype = 'advisory' AND l.objsubid = 2 AND l.granted
    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"""


def once_lock_key(key: OnceKey) -> int:
    """The run lock of ``key``: a signed 64-bit hash (``pg_try_advisory_lock(bigint)``)."""
    raw = "\0".join(("workerid-once", key.namespace, key.deploy, key.name)).encode()
    return int.from_bytes(hashlib.sha256(raw).digest()[:8], "big", signed=True)


def _lock_parts(lock: int) -> tuple[int, int]:
    """``pg_locks`` (classid, objid) of a one-bigint advisory lock."""
    unsigned = lock & 0xFFFFFFFFFFFFFFFF
    return unsigned >> 32, unsigned & 0xFFFFFFFF


_ONCE_HELD = """
    l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted
    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
    AND l.classid = $1::bigint::oid AND l.objid = $2::bigint::oid"""


def ns_key(namespace: str) -> int:
    """The advisory lock's first key for ``namespace`` (31 bits: a positive int4)."""
    return zlib.crc32(f"workerid:{namespace}".encode()) & 0x7FFFFFFF


class PostgreSQL(Engine):
    name = "postgresql"

    def __init__(self, url: BackendURL, *, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self.held: tuple[int, int] | None = None
        #: the run lock of once(scope="deploy") this connection holds
        self.once_lock: int | None = None
        lease_ms = int(url.lease * 1000)
        options = f"-c idle_session_timeout={lease_ms} -c statement_timeout={lease_ms}"
        if url.options.get("options"):
            options = f"{url.options['options']} {options}"
        try:
            self.conn: psycopg.Connection[Any] | None = psycopg.connect(
                without_lease(url),
                autocommit=True,
                connect_timeout=max(2, int(timeout)),
                application_name=url.options.get("application_name", "workerid"),
                options=options,
            )
        except psycopg.Error as exc:
            raise BackendError(f"cannot connect to {url.safe}: {_first_line(exc)}") from None
        self._ensure_table()

    # --- one statement, bounded -------------------------------------------

    def _pg(self) -> pq.abc.PGconn:
        if self.conn is None or self.conn.closed:
            raise ClaimLost(f"the connection to {self.url.safe} is closed")
        return self.conn.pgconn

    def _run(
        self, sql: str, params: tuple[object, ...] = (), *, timeout: float | None = None
    ) -> list[tuple[str | None, ...]]:
        """Run one statement and return its rows as text; waits at most ``timeout``."""
        pg = self._pg()
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        values = [None if p is None else str(p).encode() for p in params]
        try:
            if values:
                pg.send_query_params(sql.encode(), values)
            else:
                pg.send_query(sql.encode())
            fd = pg.socket
            while True:
                pg.consume_input()
                if not pg.is_busy():
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BackendError(f"{self.url.safe} did not answer within the deadline")
                select.select([fd], [], [], left)
            results = []
            while (res := pg.get_result()) is not None:
                results.append(res)
        except psycopg.Error as exc:
            raise self._lost(exc) from None
        if pg.status != pq.ConnStatus.OK:
            raise ClaimLost(f"the connection to {self.url.safe} was lost")
        rows: list[tuple[str | None, ...]] = []
        for res in results:
            if res.status == pq.ExecStatus.FATAL_ERROR:
                message = (res.error_message or b"").decode(errors="replace").strip()
                if pg.status != pq.ConnStatus.OK:
                    raise ClaimLost(f"{self.url.safe}: {message}")
                raise BackendError(f"{self.url.safe}: {message}")
            for row in range(res.ntuples):
                rows.append(
                    tuple(
                        None if (v := res.get_value(row, col)) is None else v.decode()
                        for col in range(res.nfields)
                    )
                )
        return rows

    def _lost(self, exc: psycopg.Error) -> BackendError:
        text = f"{self.url.safe}: {_first_line(exc)}"
        if self.conn is None or self.conn.pgconn.status != pq.ConnStatus.OK:
            return ClaimLost(f"the connection to {text}")
        return BackendError(text)

    def _ensure_table(self) -> None:
        found = self._run(
            f"SELECT to_regclass('{TABLE}') IS NOT NULL AND to_regclass('{ONCE_TABLE}') IS NOT NULL"
        )
        if found[0][0] == "t":
            return
        self._run(
            f"BEGIN; SELECT pg_advisory_xact_lock({_SCHEMA_LOCK}); {_CREATE}; {_CREATE_ONCE}; "
            "COMMIT",
        )

    # --- the interface ----------------------------------------------------

    def claim(self, me: Me, limit: int) -> Claim | None:
        nskey = ns_key(me.namespace)
        took_over = self._predecessor(me, nskey)
        if took_over is not None:
            wid, note = took_over
            return Claim(wid, self._record(me, nskey, wid), took_over=note)
        while True:
            free = self._run(
                "SELECT i FROM generate_series(1, $1::int) AS i WHERE NOT EXISTS "
                f"(SELECT 1 FROM pg_locks l WHERE {_HELD} AND l.classid = $2::int::oid "
                f"AND l.objid = i::oid) ORDER BY i LIMIT {_CANDIDATES}",
                (limit, nskey),
            )
            if not free:
                return None
            for (text,) in free:
                wid = int(text or 0)
                got = self._run("SELECT pg_try_advisory_lock($1::int, $2::int)", (nskey, wid))
                if got[0][0] != "t":
                    continue  # another worker took it between the two statements
                self.held = (nskey, wid)
                return Claim(wid, self._record(me, nskey, wid))
            # all candidates were taken under us: read again

    def _predecessor(self, me: Me, nskey: int) -> tuple[int, str] | None:
        """The ID of a dead predecessor on this host, taken as soon as the server lets go.

        The kernel proved it dead (this worker holds its local ID), but its
        backend may not have seen the socket close yet: wait for its lock a
        little (ending its session if it is still there) rather than take
        another ID for good.
        """
        if me.local is None:
            return None
        rows = self._run(
            f"SELECT worker_id, pid, backend_pid FROM {TABLE} WHERE namespace = $1 "
            "AND here = $2 AND local_id = $3::int ORDER BY claimed_at DESC LIMIT 1",
            (me.namespace, me.here, me.local),
        )
        if not rows:
            return None
        wid, pid, backend_pid = (int(v or 0) for v in rows[0])
        deadline = time.monotonic() + min(2.0, self.url.lease)
        terminated = False
        while True:
            got = self._run("SELECT pg_try_advisory_lock($1::int, $2::int)", (nskey, wid))
            if got[0][0] == "t":
                self.held = (nskey, wid)
                return wid, (
                    f"took worker ID {wid} over from pid {pid} on this host (its local ID "
                    f"{me.local} is ours now, so it is dead)"
                )
            if time.monotonic() >= deadline:
                return None
            if not terminated:
                # its session outlived it (the server has not read the EOF yet)
                terminated = True
                try:
                    self._run(
                        "SELECT pg_terminate_backend(l.pid) FROM pg_locks l WHERE "
                        f"{_HELD} AND l.classid = $1::int::oid AND l.objid = $2::int::oid "
                        "AND l.pid = $3::int",
                        (nskey, wid, backend_pid),
                    )
                except BackendError:
                    pass  # not allowed: wait for the server to notice
            time.sleep(0.02)

    def _record(self, me: Me, nskey: int, wid: int) -> int:
        """Bump the ID's fencing token (the caller holds its lock); returns it."""
        try:
            token = self._run(
                f"INSERT INTO {TABLE} AS c (namespace, worker_id, nskey, token, host, "
                "pid, here, local_id, backend_pid) VALUES "
                "($1, $2::int, $3::int, 1, $4, $5::int, $6, $7::int, pg_backend_pid()) "
                "ON CONFLICT (namespace, worker_id) DO UPDATE SET token = c.token + 1, "
                "nskey = EXCLUDED.nskey, host = EXCLUDED.host, pid = EXCLUDED.pid, "
                "here = EXCLUDED.here, local_id = EXCLUDED.local_id, "
                "backend_pid = EXCLUDED.backend_pid, claimed_at = now() "
                "RETURNING c.token",
                (me.namespace, wid, nskey, me.host, me.pid, me.here, me.local),
            )
        except BackendError:
            self._unlock()
            raise
        return int(token[0][0] or 0)

    def _unlock(self) -> None:
        if self.held is not None:
            try:
                self._run("SELECT pg_advisory_unlock($1::int, $2::int)", self.held)
            except BackendError:
                pass
            self.held = None

    def beat(self, timeout: float | None = None) -> int:
        if self.held is None:
            raise ClaimLost("no claim is held")
        nskey, wid = self.held
        rows = self._run(
            "SELECT count(*), count(*) FILTER (WHERE l.pid = pg_backend_pid() "
            f"AND l.objid = $2::int::oid) FROM pg_locks l WHERE {_HELD} "
            "AND l.classid = $1::int::oid",
            (nskey, wid),
            timeout=timeout,
        )
        total, mine = int(rows[0][0] or 0), int(rows[0][1] or 0)
        if not mine:
            raise ClaimLost(f"{self.url.safe}: this session no longer holds worker ID {wid}")
        return total

    def release(self) -> None:
        self.close()

    def close(self) -> None:
        conn, self.conn, self.held = self.conn, None, None
        if conn is not None:
            try:
                conn.close()
            except (psycopg.Error, OSError):
                pass

    def after_fork_in_child(self) -> None:
        # The child shares the parent's socket: if it kept it open, the
        # server would not see the worker's death while the child lives, and
        # the ID would stay held. Close our copy without a word on the wire
        # (psycopg does not finish a connection in a process that did not
        # open it: PGconn.__del__ checks the PID).
        conn, self.conn, self.held, self.once_lock = self.conn, None, None, None
        if conn is not None:
            try:
                os.close(conn.pgconn.socket)
            except (psycopg.Error, OSError):
                pass

    def interrupt(self) -> None:
        if self.conn is None:
            return
        try:
            sock = socket.socket(fileno=self.conn.pgconn.socket)
        except (psycopg.Error, OSError):
            return
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        finally:
            sock.detach()

    def holders(self, namespace: str | None) -> list[dict[str, Any]]:
        if self._run(f"SELECT to_regclass('{TABLE}') IS NOT NULL")[0][0] != "t":
            return []
        rows = self._run(
            "SELECT c.namespace, c.worker_id, c.token, c.host, c.pid, c.local_id, "
            "extract(epoch FROM now() - c.claimed_at), "
            "extract(epoch FROM now() - a.state_change), a.client_addr "
            f"FROM {TABLE} c JOIN pg_locks l ON {_HELD} AND l.classid = c.nskey::oid "
            "AND l.objid = c.worker_id::oid AND l.pid = c.backend_pid "
            "LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE $1::text IS NULL OR c.namespace = $1::text "
            "ORDER BY c.namespace, c.worker_id",
            (namespace,),
        )
        return [
            {
                "namespace": ns,
                "worker_id": int(wid or 0),
                "fencing_token": int(token or 0),
                "host": host,
                "pid": int(pid or 0),
                "local_worker_id": int(local) if local else None,
                "held_for": round(float(held or 0), 1),
                "last_beat_ago": None if beat is None else round(float(beat), 1),
                "client_addr": addr,
            }
            for ns, wid, token, host, pid, local, held, beat, addr in rows
        ]

    # --- once(name, scope="deploy") --------------------------------------------

    def once_read(self, key: OnceKey) -> tuple[OnceRecord | None, OnceRecord | None]:
        rows = self._run(
            "SELECT o.state, o.host, o.pid, extract(epoch FROM o.at), o.error, o.attempt, "
            "o.runner_host, o.runner_pid, "
            f"EXISTS (SELECT 1 FROM pg_locks l WHERE {_ONCE_HELD}) "
            f"FROM (SELECT 1) AS one LEFT JOIN {ONCE_TABLE} o ON o.namespace = $3 "
            "AND o.deploy = $4 AND o.name = $5",
            (*_lock_parts(once_lock_key(key)), key.namespace, key.deploy, key.name),
        )
        state, host, pid, at, error, attempt, rhost, rpid, running = rows[0]
        result = None
        if state in ("done", "failed"):
            result = OnceRecord(
                state,
                host=host,
                pid=int(pid) if pid else None,
                at=float(at) if at else None,
                error=error,
                attempt=attempt,
            )
        runner = None
        if running == "t":
            runner = OnceRecord("running", host=rhost, pid=int(rpid) if rpid else None)
        return result, runner

    def once_take(self, key: OnceKey, host: str, pid: int) -> bool:
        lock = once_lock_key(key)
        if self._run("SELECT pg_try_advisory_lock($1::bigint)", (lock,))[0][0] != "t":
            return False
        self.once_lock = lock
        try:
            self._run(
                f"INSERT INTO {ONCE_TABLE} AS o (namespace, deploy, name, runner_host, "
                "runner_pid) VALUES ($1, $2, $3, $4, $5::int) ON CONFLICT "
                "(namespace, deploy, name) DO UPDATE SET runner_host = EXCLUDED.runner_host, "
                "runner_pid = EXCLUDED.runner_pid",
                (key.namespace, key.deploy, key.name, host, pid),
            )
        except BackendError:
            self._once_unlock()
            raise
        return True

    def once_keep(self, timeout: float) -> None:
        if self.once_lock is None:
            raise ClaimLost("no run lock is held")
        rows = self._run(
            f"SELECT count(*) FROM pg_locks l WHERE {_ONCE_HELD} AND l.pid = pg_backend_pid()",
            _lock_parts(self.once_lock),
            timeout=timeout,
        )
        if rows[0][0] == "0":
            raise ClaimLost(f"{self.url.safe}: this session no longer holds the run lock")

    def once_finish(self, key: OnceKey, record: OnceRecord | None) -> bool:
        lock = once_lock_key(key)
        held = (
            self._run(
                f"SELECT count(*) FROM pg_locks l WHERE {_ONCE_HELD} AND l.pid = pg_backend_pid()",
                _lock_parts(lock),
            )[0][0]
            != "0"
        )
        if record is not None:
            self._run(
                f"INSERT INTO {ONCE_TABLE} AS o (namespace, deploy, name, state, host, pid, "
                "error, attempt, at) VALUES ($1, $2, $3, $4, $5, $6::int, $7, $8, now()) "
                "ON CONFLICT (namespace, deploy, name) DO UPDATE SET state = EXCLUDED.state, "
                "host = EXCLUDED.host, pid = EXCLUDED.pid, error = EXCLUDED.error, "
                "attempt = EXCLUDED.attempt, at = EXCLUDED.at, runner_host = NULL, "
                "runner_pid = NULL",
                (
                    key.namespace,
                    key.deploy,
                    key.name,
                    record.state,
                    record.host,
                    record.pid,
                    record.error,
                    record.attempt,
                ),
            )
        if held:
            self.once_lock = lock
            self._once_unlock()
        return held

    def once_results(self, namespace: str | None) -> list[dict[str, Any]]:
        if self._run(f"SELECT to_regclass('{ONCE_TABLE}') IS NOT NULL")[0][0] != "t":
            return []
        rows = self._run(
            "SELECT namespace, deploy, name, state, host, pid, extract(epoch FROM at), error, "
            f"runner_host, runner_pid FROM {ONCE_TABLE} "
            "WHERE $1::text IS NULL OR namespace = $1::text ORDER BY namespace, deploy, name",
            (namespace,),
        )
        found = []
        for ns, deploy, name, state, host, pid, at, error, rhost, rpid in rows:
            _result, runner = self.once_read(OnceKey(ns or "", deploy or "", name or ""))
            found.append(
                {
                    "namespace": ns,
                    "deploy": deploy,
                    "name": name,
                    "state": state or ("running" if runner else "not-run"),
                    "host": host,
                    "pid": int(pid) if pid else None,
                    "at": round(float(at), 3) if at else None,
                    "error": error,
                    "running": None
                    if runner is None
                    else {"host": rhost or runner.host, "pid": int(rpid) if rpid else None},
                }
            )
        return found

    def _once_unlock(self) -> None:
        lock, self.once_lock = self.once_lock, None
        if lock is not None:
            try:
                self._run("SELECT pg_advisory_unlock($1::bigint)", (lock,))
            except BackendError:
                pass  # the session goes with close(), and the lock with it


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def connect(url: BackendURL, *, timeout: float) -> PostgreSQL:
    return PostgreSQL(url, timeout=timeout)
