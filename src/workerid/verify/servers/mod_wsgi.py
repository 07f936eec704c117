"""Apache httpd with mod_wsgi in daemon mode, ``processes=N threads=1``.

Two ways, one class each:

* :class:`ModWsgiExpress`: ``mod_wsgi-express setup-server ... --server-metrics``,
  then the generated ``apachectl start|restart|graceful|stop``;
* :class:`ModWsgiSite`: a plain config of the packaged kind
  (``WSGIDaemonProcess`` + ``WSGIProcessGroup`` + ``WSGIScriptAlias``,
  ``WSGIServerMetrics On`` and ``server-metrics=On``), run with
  ``apache2 -f CONF -k start|restart|graceful|stop``; it loads the venv's
  mod_wsgi-express module, or a given ``mod_wsgi.so`` (``Options.wsgi_so``),
  such as Debian's packaged one (:data:`DEBIAN_WSGI_SO`), checked first by
  :func:`wsgi_so_problem` and, once started, in every process's memory map.

Apache's parent runs as root and its children as the worker user. The probe
is a generated ``.wsgi`` script that sets ``os.environ`` before importing
the probe: ``SetEnv``/``--setenv`` only reach the WSGI environ, and a daemon
process inherits Apache's environment, not ours.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from .. import procs
from ..records import ENV_DB
from ..report import Verdict
from ._base import Server, ServerError, binary, server_env

_DOC = (
    "apachectl -k graceful: Apache stops every daemon process (SIGTERM, SIGKILL after 3 s) "
    "before it forks new ones; restart_time is kept, so it is the same server run "
    "(start_time kept, once() not re-run); the new daemons elect 1..N once the old ones are gone"
)


def probe_script(opts_db: Path, lock_dir: Path) -> str:
    return (
        '"""workerid verify probe for mod_wsgi (generated)."""\n'
        "import os\n\n"
        f"os.environ[{ENV_DB!r}] = {str(opts_db)!r}\n"
        f"os.environ['WORKERID_DIR'] = {str(lock_dir)!r}\n\n"
        "from workerid.verify.probe import application  # noqa: E402,F401\n"
    )


class _Apache(Server):
    reload_doc = _DOC
    reload_new_generation = False
    recycle_option = "maximum-requests"
    start_clock = "wall"

    @property
    def pid_file(self) -> Path:
        return self.opts.run_dir / "httpd.pid"

    @property
    def script(self) -> Path:
        return self.opts.run_dir / "probe.wsgi"

    def restart_kinds(self) -> tuple[str, ...]:
        return ("stop+start", "apachectl -k restart")

    def _ctl(self, action: str) -> list[str]:
        raise NotImplementedError

    def _setup(self) -> None:
        """Write the config for the current options."""

    def _run(self, action: str) -> None:
        result = subprocess.run(
            self._ctl(action),
            env=server_env(self.opts),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        if result.returncode != 0:
            raise ServerError(
                f"{self.name}: {' '.join(self._ctl(action))} failed ({result.returncode}): "
                f"{result.stderr.strip() or result.stdout.strip()}"
            )

    def supervisor_pid(self) -> int | None:
        pid = procs.read_pid(str(self.pid_file))
        return pid if pid is not None and procs.alive(pid) else None

    def is_worker(self, pid: int) -> bool:
        # Daemon processes show their display-name; MPM children do not.
        argv = procs.cmdline(pid)
        return bool(argv) and argv[0].startswith("(wsgi:")

    def check_running(self) -> None:
        # Apache writes its pid file non-atomically while it starts: an empty
        # or half-written file is "starting", not "dead". Only a readable PID
        # that is gone means Apache died.
        pid = procs.read_pid(str(self.pid_file))
        if pid is not None and not procs.alive(pid):
            raise ServerError(f"{self.name}: Apache is not running; see {self.log_paths[0]}")

    def start(self) -> None:
        if self.supervisor_pid() is not None:
            raise ServerError(f"{self.name} is already running")
        self.pid_file.unlink(missing_ok=True)
        self.script.write_text(probe_script(self.opts.db_path, self.opts.lock_dir))
        self._setup()
        self._run("start")
        try:
            self.wait_workers()
        except ServerError:
            self.stop()
            raise

    def stop(self) -> None:
        parent = self.supervisor_pid()
        if parent is None:
            return
        workers = self.worker_pids()
        self._run("stop")
        procs.reap([parent], 20)
        procs.reap(workers, 10)

    def _signal(self, action: str) -> None:
        old = frozenset(self.worker_pids())
        self._run(action)
        self.wait_workers(old=old, timeout=60)

    def restart(self, kind: str = "stop+start") -> None:
        if kind == "apachectl -k restart":
            self._signal("restart")
        else:
            super().restart(kind)

    def reload(self) -> None:
        self._signal("graceful")


class ModWsgiExpress(_Apache):
    name = "mod_wsgi"

    @property
    def server_root(self) -> Path:
        return self.opts.run_dir

    @property
    def log_paths(self) -> list[Path]:
        return [self.server_root / "error_log"]

    def _ctl(self, action: str) -> list[str]:
        return [str(self.server_root / "apachectl"), action]

    def _setup(self) -> None:
        cmd = [
            binary(self.opts, "mod_wsgi-express"),
            "setup-server",
            str(self.script),
            "--server-root",
            str(self.server_root),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--processes",
            str(self.opts.workers),
            "--threads",
            "1",
            "--server-metrics",
            "--user",
            self.opts.user,
            "--group",
            self.opts.group,
            "--pid-file",
            str(self.pid_file),
        ]
        if self.opts.max_requests:
            cmd += ["--maximum-requests", str(self.opts.max_requests)]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=60)
        if result.returncode != 0:
            raise ServerError(f"mod_wsgi-express setup-server failed: {result.stderr.strip()}")


_MODULES = "/usr/lib/apache2/modules"

#: Debian's and Ubuntu's packaged mod_wsgi for the system Python 3
DEBIAN_WSGI_SO = Path(_MODULES) / "mod_wsgi.so"
DEBIAN_PACKAGE = "libapache2-mod-wsgi-py3"
#: what ``--mod-wsgi-so`` takes for :data:`DEBIAN_WSGI_SO`
DEBIAN_SHORTHAND = "debian"


def resolve_wsgi_so(value: str) -> Path:
    """``--mod-wsgi-so``'s value as a path: ``debian`` is :data:`DEBIAN_WSGI_SO`."""
    if value == DEBIAN_SHORTHAND:
        return DEBIAN_WSGI_SO
    return Path(value).absolute()


def linked_python(so: Path) -> tuple[str | None, list[str]]:
    """The ``X.Y`` of the libpython ``so`` links and the libraries ``ldd`` cannot find.

    ``(None, [])`` if ``ldd`` is not there or names no libpython (then there
    is nothing to compare).
    """
    try:
        result = subprocess.run(
            ["ldd", str(so)], capture_output=True, text=True, check=False, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None, []
    version = None
    missing = []
    for line in result.stdout.splitlines():
        name = line.split(" => ")[0].strip()
        found = re.match(r"libpython(\d+\.\d+)", name)
        if found and version is None:
            version = found.group(1)
        if "not found" in line:
            missing.append(name)
    return version, missing


def wsgi_so_problem(so: Path, python: str) -> str | None:
    """Why Apache could not serve a venv of Python ``python`` (``X.Y``) with ``so``, or None.

    Checked before any server starts, so a wrong path is one clear message
    rather than a failed start in every scenario.
    """
    hint = (
        f" (Debian's and Ubuntu's is {DEBIAN_WSGI_SO}: apt-get install {DEBIAN_PACKAGE})"
        if so == DEBIAN_WSGI_SO
        else f"; --mod-wsgi-so {DEBIAN_SHORTHAND} is {DEBIAN_WSGI_SO}"
    )
    if not so.exists():
        return f"{so}: no such file{hint}"
    if not so.is_file():
        return f"{so}: not a regular file{hint}"
    try:
        with so.open("rb") as f:
            magic = f.read(4)
    except OSError as exc:
        return f"{so}: cannot read it ({exc.strerror})"
    if magic != b"\x7fELF":
        return f"{so}: not a shared object (no ELF header); Apache could not load it"
    version, missing = linked_python(so)
    if missing:
        return f"{so}: needs libraries that are not installed: {', '.join(missing)}"
    if version is not None and version != python:
        return (
            f"{so} is built for Python {version}, but this venv is Python {python}: its daemon "
            f"processes (python-home=<venv>) would not start; run workerid verify from a venv "
            f"made with Python {version} (e.g. /usr/bin/python3 -m venv)"
        )
    return None


def mapped(pid: int, path: str) -> bool:
    """Whether process ``pid`` has the file ``path`` (resolved) mapped: a loaded module."""
    try:
        with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as f:
            return any(line.rstrip("\n").endswith(" " + path) for line in f)
    except OSError:
        return False


def configured_line(log: Path) -> str | None:
    """The last ``mod_wsgi/X Python/Y`` Apache's error log says it was configured with."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return None
    found = re.findall(r"\bmod_wsgi/\S+ Python/\S+", text)
    return found[-1] if found else None


_SITE = """\
# workerid verify: a plain Apache config of the packaged kind (generated)
ServerRoot "{run}"
ServerName 127.0.0.1
PidFile "{run}/httpd.pid"
Listen 127.0.0.1:{port}
User {user}
Group {group}
LoadModule mpm_event_module {modules}/mod_mpm_event.so
LoadModule authz_core_module {modules}/mod_authz_core.so
LoadModule wsgi_module {wsgi_so}
ErrorLog "{run}/error_log"
LogLevel info
Mutex file:{run}
WSGISocketPrefix {run}/wsgi
WSGIRestrictEmbedded On
WSGIServerMetrics On

<VirtualHost 127.0.0.1:{port}>
    WSGIDaemonProcess verify processes={workers} threads=1 display-name=(wsgi:verify) \\
        python-home={prefix} server-metrics=On{max_requests}
    WSGIProcessGroup verify
    WSGIApplicationGroup %{{GLOBAL}}
    WSGIScriptAlias / {script}
    <Directory "{run}">
        Require all granted
    </Directory>
</VirtualHost>
"""


class ModWsgiSite(_Apache):
    name = "mod_wsgi-site"
    #: the mod_wsgi.so the latest config loads
    _loaded: str | None = None

    @property
    def conf(self) -> Path:
        return self.opts.run_dir / "httpd.conf"

    @property
    def log_paths(self) -> list[Path]:
        return [self.opts.run_dir / "error_log"]

    def _ctl(self, action: str) -> list[str]:
        return [binary(self.opts, "apache2"), "-f", str(self.conf), "-k", action]

    def wsgi_so(self) -> str:
        """The mod_wsgi.so the config loads: the given one, else the venv's."""
        if self.opts.wsgi_so is not None:
            return str(self.opts.wsgi_so)
        located = subprocess.run(
            [binary(self.opts, "mod_wsgi-express"), "module-location"],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        wsgi_so = located.stdout.strip()
        if located.returncode != 0 or not wsgi_so:
            raise ServerError(f"mod_wsgi-express module-location failed: {located.stderr}")
        return wsgi_so

    def _setup(self) -> None:
        wsgi_so = self._loaded = self.wsgi_so()
        self.conf.write_text(
            _SITE.format(
                run=self.opts.run_dir,
                port=self.port,
                user=self.opts.user,
                group=self.opts.group,
                modules=_MODULES,
                wsgi_so=wsgi_so,
                workers=self.opts.workers,
                prefix=self.opts.prefix,
                max_requests=(
                    f" maximum-requests={self.opts.max_requests}" if self.opts.max_requests else ""
                ),
                script=self.script,
            )
        )

    def started_checks(self) -> list[tuple[str, Verdict]]:
        """Apache's parent and every daemon process map the mod_wsgi.so asked for."""
        so = os.path.realpath(self._loaded or self.wsgi_so())
        pids = [p for p in (self.supervisor_pid(), *self.worker_pids()) if p is not None]
        have = [p for p in pids if mapped(p, so)]
        line = configured_line(self.log_paths[0]) or "no mod_wsgi version line in the error log"
        verdict = Verdict(
            f"Apache and its {self.opts.workers} daemon processes map {so}",
            f"{len(have)} of {len(pids)} processes map it; error log: {line}",
            bool(pids) and len(have) == len(pids) == self.opts.workers + 1,
        )
        return [("loads the mod_wsgi.so", verdict)]
