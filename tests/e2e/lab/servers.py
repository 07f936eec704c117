"""The servers Neutron runs under: Apache with mod_wsgi (``mod_wsgi-express``, or Debian's apache2
around ``workerid neutron site-config``) and uWSGI; the .wsgi and .ini files they serve.

Processes are seen through :mod:`workerid.verify.procs` (``/proc``), as ``workerid verify`` sees
its servers.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

from workerid.verify import procs

from .constants import (
    BAD_LINE,
    BENCH_UWSGI_INI,
    ETC,
    HOST,
    PLAIN_MODULE,
    PLAIN_WSGI,
    PORT,
    PROCESSES,
    SVC_USER,
    VENV,
)
from .util import log, run, wait_for

WORKERID_WSGI = """\
# Neutron API under mod_wsgi WITH workerid (tests/e2e): the shipped entry point's import,
# plus the config location of tests/e2e/neutron_env.sh.
import os

os.environ.setdefault("OS_NEUTRON_CONFIG_DIR", "{etc}")

from workerid.neutron.wsgi import application  # noqa: E402,F401
"""


def write_plain_wsgi(path: Path) -> Path:
    """The "without workerid" .wsgi file, for this run's config dir."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(PLAIN_WSGI.read_text().replace("@ETC@", str(ETC)))
    return path


def write_uwsgi_ini(path: Path, module: str) -> Path:
    """bench/neutron_uwsgi.ini serving `module`, with Neutron's config dir set by `env =`."""
    text = BENCH_UWSGI_INI.read_text()
    line = f"module = {PLAIN_MODULE}\n"
    assert line in text, f"{BENCH_UWSGI_INI} no longer has {line!r}"
    text = text.replace(line, f"module = {module}\nenv = OS_NEUTRON_CONFIG_DIR={ETC}\n")
    path.write_text(f"# tests/e2e (issue 6): generated from {BENCH_UWSGI_INI.name}\n{text}")
    os.chmod(path, 0o644)
    return path


# --- processes, ports, logs ----------------------------------------------------------------------


def live_pid(pid_file: Path) -> int | None:
    """The PID in ``pid_file`` if that process is alive (a server's master); else None."""
    pid = procs.read_pid(str(pid_file))
    return pid if pid is not None and procs.alive(pid) else None


def children(ppid: int, prefix: str = "") -> list[int]:
    """Live children of ppid whose command line starts with prefix."""
    return [p for p in procs.children(ppid) if " ".join(procs.cmdline(p)).startswith(prefix)]


def port_free() -> bool:
    """Nothing listens on HOST:PORT (Neutron's address)."""
    return not procs.port_open(PORT)


def wait_gone(pids: list[int], timeout: float) -> None:
    """Until none of ``pids`` is alive; AssertionError naming those left after ``timeout``."""
    left = procs.wait_gone(pids, timeout)
    if left:
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for exit; last: {left}")


def wait_new_pids(
    pids: Callable[[], list[int]], exclude: list[int] | None, timeout: float, what: str
) -> list[int]:
    """Until ``pids()`` lists PROCESSES processes and none of ``exclude`` (the replaced ones)."""
    old = set(exclude or [])
    return wait_for(
        pids,
        lambda now: len(now) == PROCESSES and not old & set(now),
        timeout,
        f"{PROCESSES} new {what}",
    )


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def read_since(path: Path, offset: int = 0) -> str:
    """A log file's text from byte ``offset`` on ("" if it does not exist yet)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


# --- Apache ----------------------------------------------------------------------------------


class Apache:
    """An Apache httpd serving Neutron with 4 mod_wsgi daemon processes on 127.0.0.1:9696."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.error_log = root / "error_log"
        self.pid_file = root / "httpd.pid"

    def ctl(self, action: str) -> None:
        raise NotImplementedError

    # lifecycle
    def start(self) -> None:
        assert port_free(), f"{HOST}:{PORT} is in use: a server left from an earlier run?"
        log(f"apache start ({self.root.name})")
        self.ctl("start")

    def restart(self) -> None:
        log("apache -k restart")
        self.ctl("restart")

    def graceful(self) -> None:
        log("apache -k graceful")
        self.ctl("graceful")

    def stop(self) -> None:
        master = self.master()
        if master is None:
            return
        daemons = self.daemons(master)
        log("apache stop")
        self.ctl("stop")
        wait_gone([master, *daemons], 60)

    def master(self) -> int | None:
        return live_pid(self.pid_file)

    def daemons(self, master: int | None = None) -> list[int]:
        master = master or self.master()
        return children(master, "(wsgi:") if master else []

    # the error log
    def log_size(self) -> int:
        return file_size(self.error_log)

    def log_since(self, offset: int = 0) -> str:
        return read_since(self.error_log, offset)

    def bad_lines(self, offset: int = 0) -> list[str]:
        return [line for line in self.log_since(offset).splitlines() if BAD_LINE.search(line)]

    def wait_daemons(self, exclude: list[int] | None = None, timeout: float = 60) -> list[int]:
        """PROCESSES live daemon processes, none of them in exclude."""
        return wait_new_pids(self.daemons, exclude, timeout, "daemon processes")


class ExpressServer(Apache):
    """``mod_wsgi-express setup-server`` (preloads the .wsgi file with WSGIImportScript)."""

    def __init__(self, root: Path, wsgi_file: Path) -> None:
        super().__init__(root)
        self.wsgi_file = wsgi_file

    def setup(self) -> ExpressServer:
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.parent.mkdir(parents=True, exist_ok=True)
        run(
            [
                str(VENV / "bin/mod_wsgi-express"),
                "setup-server",
                str(self.wsgi_file),
                "--server-root",
                str(self.root),
                "--host",
                HOST,
                "--port",
                str(PORT),
                "--processes",
                str(PROCESSES),
                "--threads",
                "1",
                "--user",
                SVC_USER,
                "--group",
                SVC_USER,
                "--server-metrics",
                "--locale",
                "C.UTF-8",
            ]
        )
        return self

    def ctl(self, action: str) -> None:
        run([str(self.root / "apachectl"), action], timeout=120)


class SiteServer(Apache):
    """Debian's apache2 with a minimal httpd.conf around ``workerid neutron site-config``.

    ``wsgi_so``: load that mod_wsgi (Debian's packaged one) with ``WSGIPythonHome`` the release's
    venv, which is built on the system Python, as Ubuntu's packaging runs Neutron; by default
    the venv's own pip-built module (``mod_wsgi-express module-config``).
    """

    def __init__(self, root: Path, wsgi_so: Path | None = None) -> None:
        super().__init__(root)
        self.conf = root / "httpd.conf"
        self.wsgi_so = wsgi_so

    def setup(self) -> SiteServer:
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True)
        os.chmod(self.root, 0o755)
        site = run([str(VENV / "bin/workerid"), "neutron", "site-config"])
        if self.wsgi_so is None:
            module = run([str(VENV / "bin/mod_wsgi-express"), "module-config"])
        else:
            assert self.wsgi_so.is_file(), (
                f"{self.wsgi_so}: apt-get install libapache2-mod-wsgi-py3"
            )
            module = f'LoadModule wsgi_module "{self.wsgi_so}"\nWSGIPythonHome "{VENV}"'

        # Only what this machine needs changed in the shipped site: loopback, our log files.
        site = site.replace("Listen 9696", f"Listen {HOST}:{PORT}")
        site = site.replace("/var/log/neutron/neutron-api.log", str(self.error_log))
        site = site.replace("/var/log/neutron/neutron-api_access.log", str(self.root / "access"))
        self.conf.write_text(
            f"""\
# Minimal standalone Apache (tests/e2e) around `workerid neutron site-config`.
ServerRoot {self.root}
ServerName {HOST}
PidFile {self.pid_file}
ErrorLog {self.root / "main_error_log"}
User {SVC_USER}
Group {SVC_USER}
LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
# the mod_wsgi module (mod_wsgi-express module-config, or Debian's packaged one)
{module}
WSGISocketPrefix {self.root}/wsgi
# from: workerid neutron site-config
{site}
"""
        )
        run(["/usr/sbin/apache2", "-f", str(self.conf), "-t"], env=self.env())
        return self

    def env(self) -> dict[str, str]:
        # The shipped .wsgi file reads Neutron's default /etc/neutron unless told otherwise;
        # mod_wsgi daemons inherit httpd's environment (SetEnv would not reach os.environ).
        return {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            "OS_NEUTRON_CONFIG_DIR": str(ETC),
        }

    def ctl(self, action: str) -> None:
        run(["/usr/sbin/apache2", "-f", str(self.conf), "-k", action], timeout=120, env=self.env())

    def bad_lines(self, offset: int = 0) -> list[str]:
        main = (self.root / "main_error_log").read_text(errors="replace") if offset == 0 else ""
        extra = [line for line in main.splitlines() if BAD_LINE.search(line)]
        return super().bad_lines(offset) + extra


@contextlib.contextmanager
def running(server: Apache) -> Iterator[Apache]:
    try:
        yield server
    finally:
        server.stop()


# --- uWSGI (benchmark) ---------------------------------------------------------------------------


class UwsgiServer:
    """Neutron under uWSGI as upstream recommends (processes=4, start-time = %t, lazy-apps)."""

    def __init__(self, root: Path, ini: Path) -> None:
        self.root = root
        self.ini = ini
        self.pid_file = root / "uwsgi.pid"
        self.log = root / "uwsgi.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        return {
            "PATH": f"{VENV}/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            "UWSGI_PIDFILE": str(self.pid_file),
            "OS_NEUTRON_CONFIG_DIR": str(ETC),
        }

    def start(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True)
        env = self.env()
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [str(VENV / "bin/uwsgi"), "--ini", str(self.ini), "--pidfile", str(self.pid_file)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )

    def stop(self) -> None:
        if self.proc is None:
            return
        pid = procs.read_pid(str(self.pid_file))
        if pid is None:
            pid = self.proc.pid
        procs.signal_pid(pid, signal.SIGINT)  # uWSGI master: SIGINT = stop now
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.kill(pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None


# --- uWSGI with the config in the ini (issue 6) -------------------------------------------------


class UwsgiLab(UwsgiServer):
    """UwsgiServer whose Neutron config dir comes from the ini alone, with worker/log helpers."""

    def env(self) -> dict[str, str]:
        return {"PATH": f"{VENV}/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}

    def start(self) -> None:
        assert port_free(), f"{HOST}:{PORT} is in use: a server left from an earlier run?"
        log(f"uwsgi start ({self.ini.name})")
        super().start()

    def master(self) -> int | None:
        return live_pid(self.pid_file)

    def stop(self) -> None:
        """SIGINT to the master; a worker still stuck loading Neutron after 15 s gets SIGKILL.

        (Plain Neutron's respawned worker sits in _init_hash_ring's retries and outlives the
        master's SIGINT; left alone it would write to the next test's fresh database.)
        """
        if self.proc is None:
            return
        master = self.master() or self.proc.pid
        workers = children(master)
        procs.signal_pid(master, signal.SIGINT)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            stuck = [pid for pid in workers if procs.alive(pid)]
            log(f"uwsgi stop: SIGKILL to workers still running after 15 s: {stuck}")
            for pid in stuck:
                procs.signal_pid(pid, signal.SIGKILL)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(master, signal.SIGKILL)
                self.proc.wait(10)
        wait_gone(workers, 30)
        self.proc = None

    def workers(self) -> list[int]:
        """Live worker processes: the children of the master (http-socket: no router process)."""
        master = self.master()
        return children(master) if master else []

    def wait_workers(self, exclude: list[int] | None = None, timeout: float = 60) -> list[int]:
        """PROCESSES live uWSGI workers, none of them in exclude."""
        return wait_new_pids(self.workers, exclude, timeout, "uWSGI workers")

    def worker_ids(self) -> dict[int, int]:
        """pid -> uWSGI worker ID, from the master's "spawned"/"Respawned" log lines."""
        ids: dict[int, int] = {}
        pattern = r"spawned uWSGI worker (\d+) \((?:new )?pid: (\d+)"
        for m in re.finditer(pattern, self.log_since(0), re.IGNORECASE):
            ids[int(m.group(2))] = int(m.group(1))
        return ids

    def log_size(self) -> int:
        return file_size(self.log)

    def log_since(self, offset: int = 0) -> str:
        return read_since(self.log, offset)

    def lines(self, pattern: re.Pattern[str], offset: int = 0) -> list[str]:
        return [line for line in self.log_since(offset).splitlines() if pattern.search(line)]
