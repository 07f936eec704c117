"""uWSGI in master mode, ``processes=N``, configured by an ini file like Neutron's.

The ini sets ``start-time = %t`` (what Neutron's uWSGI docs set), so workerid
passes that through as the start time. Apps are loaded the default way, in
the master before the fork (no ``lazy-apps``): the probe does nothing at
import, so it never asks workerid in the master. ``--http-socket`` lets the
workers speak HTTP themselves (no router process in between).
"""

from __future__ import annotations

import signal

from ._base import binary
from ._process import ProcessServer


class UWSGI(ProcessServer):
    name = "uwsgi"
    # SIGTERM means "brutal reload" in uWSGI 2.0; SIGINT stops it.
    stop_signal = signal.SIGINT
    reload_doc = (
        "SIGHUP: graceful reload; the master waits for its workers to exit, then re-execs "
        "itself (same PID, new started_on and %t): a new server run (new start_time, once() "
        "runs again); workers are forked again as 1..N"
    )
    reload_new_generation = True
    start_clock = "wall"
    native_start_time = True
    recycle_option = "max-requests"

    def command(self) -> list[str]:
        ini = self.opts.run_dir / "uwsgi.ini"
        lines = [
            "[uwsgi]",
            "master = true",
            f"processes = {self.opts.workers}",
            "threads = 1",
            f"http-socket = 127.0.0.1:{self.port}",
            f"home = {self.opts.prefix}",
            "module = workerid.verify.probe:application",
            "need-app = true",
            f"pidfile = {self.opts.state_dir / 'uwsgi.pid'}",
            "start-time = %t",
            "disable-logging = true",
        ]
        if self.opts.max_requests:
            # min-worker-lifetime (default 10 s) would hold recycling back
            lines += [f"max-requests = {self.opts.max_requests}", "min-worker-lifetime = 0"]
        ini.write_text("\n".join(lines) + "\n")
        return [binary(self.opts, "uwsgi"), "--ini", str(ini)]
