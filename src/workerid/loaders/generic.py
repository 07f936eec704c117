"""Any other pre-fork server, process managers that exec their workers, single processes.

A worker of a pre-fork server is a copy of its parent: same executable, same
command line (``fork`` without ``exec``), or a multiprocessing child. Then
the parent is the supervisor and its life is the server run. That holds when
the parent is PID 1 too: a container whose entrypoint is the pre-fork master
(Celery/billiard, a custom server) is the common case, and a PID only means
something inside its PID namespace, which is part of every run key.

A process that is not a copy of its parent was started by ``exec``: by a
process manager (supervisord ``numprocs``, circus, ``subprocess.Popen``, a
shell loop) or by hand. When the user named the namespace
(``WORKERID_NAMESPACE`` / ``configure(namespace=...)``), they said these
processes are one server's workers: the parent is the supervisor, and its
life is the run (so a manager that restarts one worker keeps the start time,
and a restarted manager starts a new run). Except when the parent is the
init of the host (PID 1 of the initial PID namespace: systemd), whose life
is the boot: then, as without a named namespace, the process is a server of
its own. Either way the namespace has one ID space, so two live processes
never share an ID.
"""

from __future__ import annotations

from .. import _procfs
from ._base import Detected
from ._cmdline import (
    parent_pid,
    program_namespace,
    same_program,
    self_pid,
    spawned_child,
    web_concurrency,
)


def detect(*, explicit_namespace: bool = False) -> Detected:
    ppid = parent_pid()
    me = self_pid()
    forked_copy = ppid > 0 and same_program(ppid) and _procfs.cmdline(ppid) == _procfs.cmdline(me)
    if forked_copy or spawned_child():
        count = web_concurrency()
        return Detected(
            loader="generic",
            namespace=program_namespace("default", ppid),
            supervisor_pid=ppid,
            worker_count=count,
            worker_count_source="env" if count else None,
        )
    host_init = ppid == 1 and _procfs.pid_namespace() in (None, _procfs.INITIAL_PID_NS)
    if explicit_namespace and ppid > 0 and not host_init:
        count = web_concurrency()
        return Detected(
            loader="exec",
            namespace="default",
            supervisor_pid=ppid,
            worker_count=count,
            worker_count_source="env" if count else None,
        )
    return Detected(
        loader="generic",
        namespace=program_namespace("default", me),
        supervisor_pid=None,
        worker_count=1,
        worker_count_source="procfs",
    )
