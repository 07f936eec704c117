"""The Neutron end-to-end lab: what the tests in tests/e2e and bench/neutron_startup.py use.

Standard library and workerid only: the default suite imports it (through the test files) on
machines without Neutron. Everything here talks to 127.0.0.1 only. What it expects is what
``tests/e2e/neutron_env.sh`` sets up (MariaDB on /run/mysqld/mysqld.sock, OVN NB/SB, the venv
/opt/workerid/neutron-venv, config in /etc/neutron-e2e, lock_path /var/lib/neutron/lock).

* :mod:`.constants`: paths, the database, the API address, the release under test, log patterns
* :mod:`.util`: ``log``, ``run``, ``wait_for``
* :mod:`.db`: MariaDB and OVN NB: a fresh database, the hash ring rows, the default ranges
* :mod:`.api`: Neutron's API, the ``openstack`` client, ``workerid neutron-check``
* :mod:`.servers`: Apache (``mod_wsgi-express``, Debian's apache2) and uWSGI
"""

from __future__ import annotations

from .api import (
    FirstAnswer,
    assert_openstack_client_works,
    create_network,
    delete_network,
    error_type,
    neutron_check,
    openstack,
    openstack_fails,
    poll_first_post,
)
from .constants import (
    API,
    BAD_LINE,
    CRITICAL_COUNT,
    DB_URL,
    DEEP,
    ETC,
    GENEVE,
    HASH_RING_NODES_TIMEOUT,
    NEUTRON_MAJOR,
    NEUTRON_VERSION,
    PLAIN_MODULE,
    PORT,
    PROCESSES,
    REMOVED_CREATED_AT,
    STATE,
    VENV,
    WORKERID_DIR,
    WORKERID_MODULE,
)
from .db import (
    RingRow,
    assert_ring_nodes,
    db_now,
    default_ranges,
    node_uuid,
    recreate_database,
    ring,
    ring_settled,
    sql,
)
from .servers import (
    WORKERID_WSGI,
    Apache,
    ExpressServer,
    SiteServer,
    UwsgiLab,
    UwsgiServer,
    port_free,
    running,
    write_plain_wsgi,
    write_uwsgi_ini,
)
from .util import log, run, wait_for

__all__ = [
    "API",
    "BAD_LINE",
    "CRITICAL_COUNT",
    "DB_URL",
    "DEEP",
    "ETC",
    "GENEVE",
    "HASH_RING_NODES_TIMEOUT",
    "NEUTRON_MAJOR",
    "NEUTRON_VERSION",
    "PLAIN_MODULE",
    "PORT",
    "PROCESSES",
    "REMOVED_CREATED_AT",
    "STATE",
    "VENV",
    "WORKERID_DIR",
    "WORKERID_MODULE",
    "WORKERID_WSGI",
    "Apache",
    "ExpressServer",
    "FirstAnswer",
    "RingRow",
    "SiteServer",
    "UwsgiLab",
    "UwsgiServer",
    "assert_openstack_client_works",
    "assert_ring_nodes",
    "create_network",
    "db_now",
    "default_ranges",
    "delete_network",
    "error_type",
    "log",
    "neutron_check",
    "node_uuid",
    "openstack",
    "openstack_fails",
    "poll_first_post",
    "port_free",
    "recreate_database",
    "ring",
    "ring_settled",
    "run",
    "running",
    "sql",
    "wait_for",
    "write_plain_wsgi",
    "write_uwsgi_ini",
]
