"""Apache httpd with mod_wsgi in daemon mode, ``processes=N threads=1``.

Two ways, one class each:

* :class:`ModWsgiExpress`: ``mod_wsgi-express setup-server ... --server-metrics``,
  then the generated ``apachectl start|restart|graceful|stop``;
* :class:`ModWsgiSite`: a plain config of the packaged kind
  (``WSGIDaemonProcess`` + ``WSGIProcessGroup`` + ``WSGIScriptAlias``,
  ``WSGIServerMetrics On`` and ``server-metrics=On``), run with
  ``apache2 -f CONF -k start|restart|graceful|stop``.

Apache's parent runs as root and its children as the worker user. The probe
is a generated ``.wsgi`` script that sets ``os.environ`` before importing
the probe: ``SetEnv``/``--setenv`` only reach the WSGI environ, and a daemon
process inherits Apache's environment, not ours.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from .. import procs
from ..records import ENV_DB
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

    @property
    def conf(self) -> Path:
        return self.opts.run_dir / "httpd.conf"

    @property
    def log_paths(self) -> list[Path]:
        return [self.opts.run_dir / "error_log"]

    def _ctl(self, action: str) -> list[str]:
        return [binary(self.opts, "apache2"), "-f", str(self.conf), "-k", action]

    def _setup(self) -> None:
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
