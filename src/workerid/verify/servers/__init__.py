"""The real servers ``workerid verify`` runs, one module each, one interface (``_base``)."""

from __future__ import annotations

from ._base import Options, Server, ServerError
from .gunicorn import Gunicorn
from .mod_wsgi import ModWsgiExpress, ModWsgiSite
from .uvicorn import Uvicorn
from .uwsgi import UWSGI

SERVERS: dict[str, type[Server]] = {
    cls.name: cls for cls in (ModWsgiExpress, ModWsgiSite, Gunicorn, UWSGI, Uvicorn)
}

__all__ = ["SERVERS", "Options", "Server", "ServerError"]
