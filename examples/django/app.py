"""A one-file Django project under gunicorn: migrate once per server run.

Serve with::

    DJANGO_DATA_DIR=/var/tmp/example gunicorn -w 4 -c python:workerid.gunicorn app:application

Every worker loads this module after gunicorn forks it; the first one to get
here runs ``migrate`` while the others wait for it to finish, then skip it. No
worker serves a request before the schema is in place, and no two workers
migrate at once. (A real project keeps its settings in settings.py and puts the
``run_once`` call in its wsgi.py, after ``get_wsgi_application()``.)
"""

from __future__ import annotations

import os
import tempfile

import django
from django.conf import settings
from django.core.management import call_command
from django.core.wsgi import get_wsgi_application
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.urls import path

import workerid

DATA_DIR = os.environ.get("DJANGO_DATA_DIR") or os.path.join(
    tempfile.gettempdir(), "workerid-django-example"
)
os.makedirs(DATA_DIR, exist_ok=True)

settings.configure(
    DEBUG=False,
    SECRET_KEY=os.environ.get("DJANGO_SECRET_KEY", "change-me: example only"),
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth"],
    DATABASES={
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.path.join(DATA_DIR, "db.sqlite3"),
        }
    },
    USE_TZ=True,
)
django.setup()


def record(event: str) -> None:
    """Append ``event`` to the file named by ``EXAMPLE_EVENTS``, if set (the tests count them)."""
    events = os.environ.get("EXAMPLE_EVENTS")
    if events:
        with open(events, "a", encoding="utf-8") as f:
            f.write(f"{event} {os.getpid()} {workerid.worker_id()}\n")


def migrate() -> None:
    record("migrate")
    call_command("migrate", interactive=False, verbosity=0)


def identity(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        {
            "pid": os.getpid(),
            "worker_id": workerid.worker_id(),  # 1..4, reused by a replacement worker
            "worker_count": workerid.worker_count(),  # 4
            "start_time": workerid.start_time(),  # one value for the whole server run
            "migrate": MIGRATED.state.value,  # "ran" in one worker, "done" in the others
            "tables": len(connection.introspection.table_names()),
        }
    )


urlpatterns = [path("", identity)]

application = get_wsgi_application()

# Once per server run, in one worker; the others wait for it (up to 5 minutes),
# then skip it. Without the event record, this is simply
#     workerid.run_once("migrate", lambda: call_command("migrate", interactive=False))
MIGRATED = workerid.run_once("migrate", migrate, timeout=300)
if MIGRATED.state in (workerid.Outcome.BUSY, workerid.Outcome.FAILED):
    # still running elsewhere after 5 minutes, or it raised in the worker that ran it
    raise RuntimeError(f"migrations not applied: {MIGRATED}")
