"""The lab's one set of constants: paths, the database, the API address, the release under test.

What workerid itself already defines is imported from it, not repeated: Neutron's hash ring
group and stale-row timeout come from :mod:`workerid.neutron.check`.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

from workerid.neutron import check

#: tests/e2e: neutron_env.sh, the plain .wsgi file
E2E_DIR = Path(__file__).resolve().parent.parent
REPO = E2E_DIR.parent.parent
NEUTRON_ENV = E2E_DIR / "neutron_env.sh"
PLAIN_WSGI = E2E_DIR / "neutron-api-plain.wsgi"
BENCH_UWSGI_INI = REPO / "bench" / "neutron_uwsgi.ini"

VENV = Path(os.environ.get("NEUTRON_VENV", "/opt/workerid/neutron-venv"))
ETC = Path(os.environ.get("NEUTRON_E2E_ETC", "/etc/neutron-e2e"))
STATE = Path(os.environ.get("NEUTRON_E2E_STATE", "/var/lib/neutron-e2e"))
LOCK_PATH = Path("/var/lib/neutron/lock")
WORKERID_DIR = LOCK_PATH / "workerid"
OPENSTACK = VENV / "bin" / "openstack"


def neutron_version(venv: Path = VENV) -> str:
    """The Neutron release installed in ``venv`` ("28.0.0", "29.0.0"), from its dist-info."""
    found = sorted(venv.glob("lib/python3*/site-packages/neutron-*.dist-info"))
    if not found:
        return "unknown"
    return found[-1].name.removesuffix(".dist-info").split("-", 1)[1]


#: the Neutron release under test; its major version picks the release's expected behaviour
NEUTRON_VERSION = neutron_version()
NEUTRON_MAJOR = int(NEUTRON_VERSION.split(".")[0]) if NEUTRON_VERSION[:1].isdigit() else 0
#: "full" (default) or "quick" (NEUTRON_E2E_DEPTH): quick runs three restarts in a row instead
#: of ten, judges plain uWSGI's dead row without waiting out Neutron's 120 s stale rule, and shows
#: 26's plain fault by its cause; scripts/e2e-neutron.sh runs 29 full, 26-28 quick (time budget)
DEEP = os.environ.get("NEUTRON_E2E_DEPTH", "full") != "quick"

MYSQL_SOCK = "/run/mysqld/mysqld.sock"
#: one database per Neutron release (their schemas differ); neutron_env.sh makes it
DB_NAME = os.environ.get("NEUTRON_E2E_DB", "neutron")
DB_URL = f"mysql+pymysql://neutron:changeme@localhost/{DB_NAME}"
NB_DB = f"unix:{STATE}/run/ovnnb_db.sock"

HOST, PORT = "127.0.0.1", 9696
API = f"http://{HOST}:{PORT}"
PROCESSES = 4
SVC_USER = "neutron"

#: Neutron's hash ring group of the OVN mechanism driver, and its HASH_RING_NODES_TIMEOUT (a row
#: not updated for longer is stale): as ``workerid neutron check`` reads the ring
HASH_RING_GROUP = check.HASH_RING_GROUP
HASH_RING_NODES_TIMEOUT = check.HASH_RING_NODES_TIMEOUT
#: neutron/db/ovn_hash_ring_db.py OVN_HASHRING_UUID_NAMESPACE
HASHRING_NS = uuid.UUID("551ea055-1982-4295-8bc7-207a0d3c9231")
#: the one default range ML2 must seed (ml2_conf.ini vni_ranges 1:65536)
GENEVE = ("geneve", 1, 65536)

#: the uWSGI ``module =`` lines: Neutron's own entry point, and workerid's
PLAIN_MODULE = "neutron.wsgi.api:application"
WORKERID_MODULE = "workerid.neutron.wsgi:application"

#: lines that must never appear in a Neutron error log under workerid (issue 4)
BAD_LINE = re.compile(
    r"Duplicate entry|DB exceeded retry limit|CRITICAL.*Hash Ring|"
    r"nodes in the Hash Ring .* is higher than"
)
#: 28.0.0's maintenance task (every 15 s) when it counts fewer API workers than ring rows
CRITICAL_COUNT = re.compile(r"CRITICAL.*The number of nodes in the Hash Ring \(\d+\) is higher")
#: neutron/db/ovn_hash_ring_db.py remove_nodes_from_host(), logged by every _init_hash_ring try
REMOVED_CREATED_AT = "removed from the Hash Ring created at"
