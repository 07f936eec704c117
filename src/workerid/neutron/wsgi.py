"""WSGI entry point: Neutron's API with workerid installed first.

``mod_wsgi-express setup-server --application-type module workerid.neutron.wsgi``,
or ``WSGIScriptAlias / $(workerid neutron wsgi-path)`` in an Apache site: the
equivalent of Ubuntu's ``debian/neutron-api.wsgi`` plus ``install()``.
"""

from __future__ import annotations

from workerid.neutron import install

install()

from neutron.wsgi.api import application  # type: ignore[import-not-found]  # noqa: E402

__all__ = ["application"]
