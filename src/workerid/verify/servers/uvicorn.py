"""uvicorn ``--workers N`` serving the probe's ASGI twin."""

from __future__ import annotations

from .. import procs
from ._base import binary
from ._process import ProcessServer


class Uvicorn(ProcessServer):
    name = "uvicorn"
    reload_doc = (
        "SIGHUP: the supervisor replaces its workers one at a time, starting the new one "
        "before stopping the old (uvicorn >= 0.51; older ones stop first); same supervisor, "
        "so the same server run (start_time kept, once() not re-run)"
    )
    reload_new_generation = False
    recycle_option = "--limit-max-requests"
    start_timeout = 60.0

    def command(self) -> list[str]:
        cmd = [
            binary(self.opts, "uvicorn"),
            "--workers",
            str(self.opts.workers),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--no-access-log",
            "--timeout-graceful-shutdown",
            "5",
        ]
        if self.opts.max_requests:
            cmd += ["--limit-max-requests", str(self.opts.max_requests)]
        return [*cmd, "workerid.verify.probe:asgi_application"]

    def is_worker(self, pid: int) -> bool:
        # multiprocessing's resource tracker is a child too; workers are spawned.
        return "--multiprocessing-fork" in procs.cmdline(pid)
