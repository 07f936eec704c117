"""Real coordination engines for the backend tests: PostgreSQL 15 and etcd 3.4 (Debian's).

Each runs on 127.0.0.1 on a free port with its own data directory under /tmp,
as a child of the test process, and is stopped by its PID (never by name).
PostgreSQL refuses to run as root, so it runs as the ``postgres`` user the
Debian package creates (``Popen(user=...)``: no su/runuser in between, so the
PID is the postmaster's). :class:`Proxy` is a TCP forwarder on loopback that
the tests put between workers and an engine: ``partition()`` stops it
forwarding (both sockets stay open, bytes are dropped), as a cut link does.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import selectors
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from helpers import duplicates
from helpers.serving import free_port

PG_BINS = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
PG_BIN = Path(PG_BINS[-1]).parent if PG_BINS else None
ETCD = shutil.which("etcd")


def pg_missing() -> str | None:
    if PG_BIN is None:
        return "needs Debian's postgresql (apt-get install postgresql)"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "needs the postgres user (Debian's postgresql package makes it)"
    if os.geteuid() != 0:
        return "needs root to run PostgreSQL as the postgres user"
    return None


def etcd_missing() -> str | None:
    return None if ETCD else "needs Debian's etcd-server (apt-get install etcd-server)"


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} did not listen on {port} within {timeout}s")


def _stop(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


#: the engines as pytest parameters, each skipped where it is not installed
ENGINES = [
    pytest.param(
        "postgresql",
        marks=[
            pytest.mark.postgresql,
            pytest.mark.skipif(bool(pg_missing()), reason=pg_missing() or ""),
        ],
    ),
    pytest.param(
        "etcd",
        marks=[
            pytest.mark.etcd,
            pytest.mark.skipif(bool(etcd_missing()), reason=etcd_missing() or ""),
        ],
    ),
]


class _Engine:
    """What both engines share: a data directory, a process, a stop signal."""

    dir: Path
    proc: subprocess.Popen[bytes] | None
    #: the signal that stops the engine cleanly
    stop_signal = signal.SIGTERM

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        _stop(self.proc, self.stop_signal)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Postgres(_Engine):
    """One PostgreSQL cluster (initdb once; start/stop/restart keep its data)."""

    stop_signal = signal.SIGINT  # fast shutdown: sessions are ended

    def __init__(self) -> None:
        assert PG_BIN is not None
        self.dir = Path(tempfile.mkdtemp(prefix="workerid-pg-"))
        user = pwd.getpwnam("postgres")
        os.chown(self.dir, user.pw_uid, user.pw_gid)
        self.data = self.dir / "data"
        self.uid, self.gid = user.pw_uid, user.pw_gid
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.dir / "log"
        subprocess.run(
            [str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust"],
            check=True,
            capture_output=True,
            user=self.uid,
            group=self.gid,
            extra_groups=[],
            cwd=self.dir,
        )
        self.start()

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url_via(self, port: int, **query: str) -> str:
        params = "&".join(f"{k}={v}" for k, v in query.items())
        return f"postgresql://postgres@127.0.0.1:{port}/postgres" + (f"?{params}" if params else "")

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    str(PG_BIN / "postgres"),  # type: ignore[operator]
                    "-D",
                    str(self.data),
                    "-p",
                    str(self.port),
                    "-h",
                    "127.0.0.1",
                    "-k",
                    str(self.dir),
                    "-c",
                    "fsync=off",
                    "-c",
                    "max_connections=200",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                user=self.uid,
                group=self.gid,
                extra_groups=[],
                cwd=self.dir,
                start_new_session=True,
            )
        _wait_port(self.port, self.proc, "postgres")
        # listening is not yet accepting logins (startup recovery)
        time.sleep(0.3)


class Etcd(_Engine):
    """One single-member etcd (3.4 here: the gateway is at /v3/)."""

    def __init__(self) -> None:
        assert ETCD is not None
        self.dir = Path(tempfile.mkdtemp(prefix="workerid-etcd-"))
        self.port = free_port()
        self.peer = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.dir / "log"
        self.start()

    @property
    def url(self) -> str:
        return f"etcd://127.0.0.1:{self.port}"

    def url_via(self, port: int, **query: str) -> str:
        params = "&".join(f"{k}={v}" for k, v in query.items())
        return f"etcd://127.0.0.1:{port}" + (f"?{params}" if params else "")

    def start(self) -> None:
        client = f"http://127.0.0.1:{self.port}"
        peer = f"http://127.0.0.1:{self.peer}"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    ETCD,  # type: ignore[list-item]
                    "--name",
                    "t",
                    "--data-dir",
                    str(self.dir / "data"),
                    "--listen-client-urls",
                    client,
                    "--advertise-client-urls",
                    client,
                    "--listen-peer-urls",
                    peer,
                    "--initial-advertise-peer-urls",
                    peer,
                    "--initial-cluster",
                    f"t={peer}",
                    "--unsafe-no-fsync",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                start_new_session=True,
            )
        _wait_port(self.port, self.proc, "etcd")
        deadline = time.monotonic() + 20
        while True:  # serving, not just listening: a leader is elected
            try:
                with urllib.request.urlopen(f"{client}/health", timeout=1) as r:
                    if b'"true"' in r.read():
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("etcd did not become healthy")
            time.sleep(0.05)


class Proxy:
    """A TCP forwarder 127.0.0.1:<port> -> 127.0.0.1:<target>, run in a thread of the test."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self.forwarding = True
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.listener, selectors.EVENT_READ, None)
        self.pairs: dict[socket.socket, socket.socket] = {}
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def partition(self) -> None:
        """Stop forwarding: connections stay open, every byte is dropped."""
        self.forwarding = False

    def heal(self) -> None:
        self.forwarding = True

    def _close(self, sock: socket.socket) -> None:
        peer = self.pairs.pop(sock, None)
        for s in (sock, peer):
            if s is None:
                continue
            self.pairs.pop(s, None)
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(s)
            s.close()

    def _run(self) -> None:
        while not self._stop:
            for key, _ in self.sel.select(0.1):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self.listener:
                    try:
                        client, _addr = self.listener.accept()
                    except OSError:
                        continue
                    if not self.forwarding:
                        client.close()  # a cut link: nobody answers (RST here)
                        continue
                    try:
                        upstream = socket.create_connection(("127.0.0.1", self.target), 2)
                    except OSError:
                        client.close()
                        continue
                    for s in (client, upstream):
                        s.setblocking(False)
                        self.sel.register(s, selectors.EVENT_READ, None)
                    self.pairs[client], self.pairs[upstream] = upstream, client
                    continue
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    if self.forwarding:
                        self._close(sock)
                    else:
                        with contextlib.suppress(KeyError, ValueError):
                            self.sel.unregister(sock)  # keep the dead half silent
                    continue
                if self.forwarding and sock in self.pairs:
                    try:
                        self.pairs[sock].sendall(data)
                    except OSError:
                        self._close(sock)

    def close(self) -> None:
        self._stop = True
        self.thread.join(2)
        for sock in list(self.pairs):
            with contextlib.suppress(OSError):
                sock.close()
        self.listener.close()


class Sampler(threading.Thread):
    """Checks, every ``interval`` seconds, that no two live workers of any host answer one ID.

    ``hosts`` is read afresh at each sample (a test appends to it as it starts
    hosts); each host's ``reports()`` are its live workers' identities. A
    duplicate counts only if it is still there 20 ms later: a report is
    rewritten within 10 ms of a change, so one read may be a few ms old.
    """

    def __init__(self, hosts: Sequence[Any], *, interval: float, join: float) -> None:
        super().__init__(daemon=True)
        self.hosts = hosts
        self.interval, self.join_timeout = interval, join
        self.violations: list[dict[int, list[int]]] = []
        self.samples = 0
        self._halt = threading.Event()

    def _live(self) -> list[dict[str, Any]]:
        return [r for h in list(self.hosts) for r in h.reports()]

    def run(self) -> None:
        while not self._halt.is_set():
            if duplicates(self._live()):
                time.sleep(0.02)
                again = duplicates(self._live())
                if again:
                    self.violations.append(again)
            self.samples += 1
            time.sleep(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join(self.join_timeout)


def start_engine(name: str) -> Postgres | Etcd:
    """A fresh engine of the ``ENGINES`` parameter ``name``."""
    return Postgres() if name == "postgresql" else Etcd()
