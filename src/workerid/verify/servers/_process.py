"""Servers that are one command the harness starts itself (gunicorn, uWSGI, uvicorn).

The whole server runs as the worker user (``Popen(user=..., group=...)``),
master included: that is how a unit file with ``User=`` runs them, and the
harness never needs the server's own privilege dropping.
"""

from __future__ import annotations

import abc
import contextlib
import os
import signal
import subprocess
from pathlib import Path

from .. import procs
from ._base import Server, ServerError, server_env


class ProcessServer(Server):
    stop_signal: signal.Signals = signal.SIGTERM
    reload_signal: signal.Signals = signal.SIGHUP
    _proc: subprocess.Popen[bytes] | None = None

    @abc.abstractmethod
    def command(self) -> list[str]:
        """The command line that starts the server."""

    @property
    def log_paths(self) -> list[Path]:
        return [self.opts.run_dir / f"{self.name}.log"]

    def start(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            raise ServerError(f"{self.name} is already running (pid {self._proc.pid})")
        with open(self.log_paths[0], "ab") as log:
            self._proc = subprocess.Popen(
                self.command(),
                env=server_env(self.opts),
                cwd=self.opts.state_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                user=self.opts.user,
                group=self.opts.group,
                extra_groups=[],
                start_new_session=True,
            )
        try:
            self.wait_workers()
        except ServerError:
            self.stop()
            raise

    def check_running(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            raise ServerError(
                f"{self.name} exited with {self._proc.returncode}; see {self.log_paths[0]}"
            )

    def supervisor_pid(self) -> int | None:
        if self._proc is None or self._proc.poll() is not None:
            return None
        return self._proc.pid

    def stop(self) -> None:
        proc = self._proc
        if proc is None:
            return
        workers = self.worker_pids()
        if proc.poll() is None:
            proc.send_signal(self.stop_signal)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                # Our own session: the server and nothing else.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        procs.reap(workers, 10)
        self._proc = None

    def reload(self) -> None:
        old = frozenset(self.worker_pids())
        pid = self.supervisor_pid()
        if pid is None:
            raise ServerError(f"{self.name} is not running")
        os.kill(pid, self.reload_signal)
        self.wait_workers(old=old, timeout=60)
