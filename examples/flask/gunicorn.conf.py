"""An existing gunicorn config file, with workerid's hooks added.

Serve with::

    gunicorn -c gunicorn.conf.py app:app

gunicorn reads every module-level name that matches one of its settings, so
importing the two hooks is all it takes. If this file already defines its own
``post_fork``, call ``workerid.gunicorn.publish(server)`` from it instead of
importing ``post_fork`` (and likewise ``workerid.gunicorn.nworkers_changed``
from your own ``nworkers_changed``).
"""

from workerid.gunicorn import nworkers_changed, post_fork  # noqa: F401

bind = "127.0.0.1:8000"
workers = 4
