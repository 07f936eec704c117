"""An existing gunicorn config file, with workerid's hooks added.

Serve with::

    gunicorn -c gunicorn.conf.py app:app

gunicorn reads every module-level name that matches one of its settings, so
importing the hooks is all it takes. If this file already defines its own
``post_fork``, call ``workerid.gunicorn.post_fork(server, worker)`` from it
instead of importing ``post_fork`` (and likewise for ``nworkers_changed`` and
``child_exit``, which retires an exited worker's live Prometheus gauges).
"""

from workerid.gunicorn import child_exit, nworkers_changed, post_fork  # noqa: F401

bind = "127.0.0.1:8000"
workers = 4
