# Neutron API for Apache mod_wsgi, with workerid (https://pypi.org/project/workerid/).
# Ubuntu's debian/neutron-api.wsgi plus workerid.neutron.install(): workers get a
# worker ID, the worker count and a shared start time, so ML2 seeds its default
# network segment ranges and the OVN hash ring keeps one row per worker.
from workerid.neutron.wsgi import application  # noqa: F401
