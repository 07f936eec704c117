"""The one small interface every server implements, and what they share."""

from __future__ import annotations

import abc
import dataclasses
import os
import shutil
import sys
import time
from pathlib import Path
from typing import ClassVar

from .. import procs
from ..report import Verdict


class ServerError(RuntimeError):
    """The server did not start, stop or reload as asked (the message says how)."""


@dataclasses.dataclass(frozen=True)
class Options:
    """How to run one server; replaced (``dataclasses.replace``) between runs."""

    workers: int
    #: config and logs; readable by the worker user
    run_dir: Path
    #: owned by the worker user: the SQLite file, pid files
    state_dir: Path
    lock_dir: Path
    db_path: Path
    max_requests: int = 0
    user: str = "www-data"
    group: str = "www-data"
    #: the venv whose servers and Python serve the probe
    prefix: Path = Path(sys.prefix)
    #: mod_wsgi-site: the Apache module to load (None: the venv's mod_wsgi-express one)
    wsgi_so: Path | None = None


def binary(opts: Options, name: str) -> str:
    """A server's executable: the venv's own first, then ``PATH``."""
    local = opts.prefix / "bin" / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise ServerError(f"{name} is not installed (not in {opts.prefix}/bin nor on PATH)")
    return found


def server_env(opts: Options) -> dict[str, str]:
    """The environment a server starts with: ours, minus any WORKERID_*, plus the probe's."""
    from ..records import ENV_DB

    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKERID_")}
    env.pop("XDG_RUNTIME_DIR", None)
    env["WORKERID_DIR"] = str(opts.lock_dir)
    env[ENV_DB] = str(opts.db_path)
    env["PATH"] = f"{opts.prefix / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
    # The worker user's home is often not writable (www-data: /var/www).
    env["HOME"] = str(opts.state_dir)
    env.setdefault("LANG", "C.UTF-8")
    return env


class Server(abc.ABC):
    """A real server the harness starts, signals, inspects and stops by PID."""

    name: ClassVar[str]
    #: what a graceful reload does on this server, for the report
    reload_doc: ClassVar[str]
    #: True if a graceful reload starts a new server run (new start_time, once() again)
    reload_new_generation: ClassVar[bool]
    #: the option that recycles workers, for the report
    recycle_option: ClassVar[str]
    start_timeout: ClassVar[float] = 30.0
    #: the clock of the server's own start second: "wall" (Apache's restart_time,
    #: uWSGI's started_on) or "procfs" (the supervisor's start, from /proc)
    start_clock: ClassVar[str] = "procfs"
    #: the server publishes its own start time, which workerid passes through
    #: untouched (uWSGI): then same-second runs are the server's business
    native_start_time: ClassVar[bool] = False

    def __init__(self, opts: Options, port: int | None = None) -> None:
        self.opts = opts
        self.port = port or procs.free_port()

    # -- lifecycle -----------------------------------------------------------

    @abc.abstractmethod
    def start(self) -> None:
        """Start and return once the port answers and all workers exist."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop and return once the supervisor and every worker are gone."""

    def started_checks(self) -> list[tuple[str, Verdict]]:
        """Checks of what a fresh start really runs (the cold start reports them)."""
        return []

    def restart_kinds(self) -> tuple[str, ...]:
        """The hard restarts this server has; the first is stop + start."""
        return ("stop+start",)

    def restart(self, kind: str = "stop+start") -> None:
        """A hard restart: a new server run."""
        if kind != "stop+start":
            raise ValueError(f"{self.name} has no restart kind {kind!r}")
        self.stop()
        self.start()

    @abc.abstractmethod
    def reload(self) -> None:
        """A graceful reload; returns once every worker is a new one."""

    # -- inspection -------------------------------------------------------------

    @abc.abstractmethod
    def supervisor_pid(self) -> int | None:
        """The PID whose children are the workers."""

    def is_worker(self, pid: int) -> bool:
        """Whether a child of the supervisor is a worker (not a helper)."""
        return True

    def worker_pids(self) -> list[int]:
        sup = self.supervisor_pid()
        if sup is None:
            return []
        return [p for p in procs.children(sup) if self.is_worker(p)]

    def kill9(self, pid: int) -> None:
        procs.kill9(pid)

    @property
    @abc.abstractmethod
    def log_paths(self) -> list[Path]:
        """The server's own logs."""

    # -- shared waiting ------------------------------------------------------------

    def wait_workers(self, old: frozenset[int] = frozenset(), timeout: float | None = None) -> None:
        """Wait until exactly ``workers`` workers live, none of them in ``old``."""
        deadline = time.monotonic() + (timeout or self.start_timeout)
        pids: list[int] = []
        while time.monotonic() < deadline:
            pids = self.worker_pids()
            fresh = len(pids) == self.opts.workers and not old.intersection(pids)
            if fresh and procs.port_open(self.port):
                return
            self.check_running()
            time.sleep(0.05)
        raise ServerError(
            f"{self.name}: expected {self.opts.workers} new workers on port {self.port}, "
            f"have {pids} (old: {sorted(old)}); see {', '.join(map(str, self.log_paths))}"
        )

    @abc.abstractmethod
    def check_running(self) -> None:
        """Raise ``ServerError`` if the server has died."""
