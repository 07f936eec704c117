"""gunicorn, sync workers, with workerid's config hook (``-c python:workerid.gunicorn``)."""

from __future__ import annotations

from ._base import binary
from ._process import ProcessServer


class Gunicorn(ProcessServer):
    name = "gunicorn"
    reload_doc = (
        "SIGHUP: the arbiter spawns N new workers, then stops the old ones; same arbiter, "
        "so the same server run (start_time kept, once() not re-run); new workers wait up "
        "to the settle timeout for an ID in 1..N"
    )
    reload_new_generation = False
    recycle_option = "--max-requests"

    def command(self) -> list[str]:
        cmd = [
            binary(self.opts, "gunicorn"),
            "-c",
            "python:workerid.gunicorn",
            "--workers",
            str(self.opts.workers),
            "--worker-class",
            "sync",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--graceful-timeout",
            "10",
            "--pid",
            str(self.opts.state_dir / "gunicorn.pid"),
        ]
        if self.opts.max_requests:
            cmd += ["--max-requests", str(self.opts.max_requests)]
        return [*cmd, "workerid.verify.probe:application"]
