"""MariaDB (through the ``mariadb`` CLI) and OVN NB: a fresh database, the hash ring, the ranges."""

from __future__ import annotations

import datetime as dt
import shutil
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from .constants import (
    DB_NAME,
    HASH_RING_GROUP,
    HASH_RING_NODES_TIMEOUT,
    HASHRING_NS,
    MYSQL_SOCK,
    NB_DB,
    NEUTRON_ENV,
    PROCESSES,
    WORKERID_DIR,
)
from .util import log, run


def sql(query: str, database: str = DB_NAME) -> list[list[str]]:
    """Rows of a query, as strings, through the mariadb CLI (root over the socket)."""
    cmd = ["mariadb", f"--socket={MYSQL_SOCK}", "-u", "root", "-N", "-B", "-e", query]
    if database:
        cmd.insert(4, database)
    out = run(cmd, timeout=60)
    return [line.split("\t") for line in out.splitlines() if line]


def db_now() -> dt.datetime:
    """The database's UTC clock, to the second (what Neutron's timestamps are compared to)."""
    return parse_ts(sql("SELECT UTC_TIMESTAMP()", database="")[0][0])


def parse_ts(value: str) -> dt.datetime:
    return dt.datetime.strptime(value, "%Y-%m-%d %H:%M:%S")


@dataclass(frozen=True)
class RingRow:
    node_uuid: str
    hostname: str
    created_at: dt.datetime
    updated_at: dt.datetime
    age: int  # seconds since updated_at, by the database's clock


def ring() -> list[RingRow]:
    rows = sql(
        "SELECT node_uuid, hostname, created_at, updated_at, "
        "TIMESTAMPDIFF(SECOND, updated_at, UTC_TIMESTAMP()) FROM ovn_hash_ring "
        f"WHERE group_name = '{HASH_RING_GROUP}' ORDER BY node_uuid"
    )
    return [RingRow(r[0], r[1], parse_ts(r[2]), parse_ts(r[3]), int(r[4])) for r in rows]


def ring_settled(rows: list[RingRow], created_at: dt.datetime | None = None) -> bool:
    """PROCESSES rows, one created_at (the given one, if any), none stale."""
    stamps = {r.created_at for r in rows}
    return (
        len(rows) == PROCESSES
        and len(stamps) == 1
        and (created_at is None or stamps == {created_at})
        and all(r.age <= HASH_RING_NODES_TIMEOUT for r in rows)
    )


@dataclass(frozen=True)
class Range:
    id: str
    network_type: str
    minimum: int
    maximum: int
    created_at: dt.datetime


def default_ranges() -> list[Range]:
    rows = sql(
        "SELECT r.id, r.network_type, r.minimum, r.maximum, s.created_at "
        "FROM network_segment_ranges r JOIN standardattributes s ON s.id = r.standard_attr_id "
        "WHERE r.`default` = 1 ORDER BY r.network_type"
    )
    return [Range(r[0], r[1], int(r[2]), int(r[3]), parse_ts(r[4])) for r in rows]


def node_uuid(worker_id: int, host: str) -> str:
    """neutron/db/ovn_hash_ring_db.py get_node_uuid()."""
    return uuid.uuid5(HASHRING_NS, f"{HASH_RING_GROUP}{host}{worker_id}").hex


def assert_ring_nodes(rows: list[RingRow], names: Iterable[int], host: str) -> None:
    """The ring holds exactly the nodes of ``names`` on ``host``: worker IDs (28.0.x, or any
    release with workerid) or worker PIDs (plain 29.0.x)."""
    assert {r.node_uuid for r in rows} == {node_uuid(n, host) for n in names}, rows
    assert {r.hostname for r in rows} == {host}, rows


def recreate_database() -> None:
    """Drop and recreate the database (schema: neutron_env.sh), empty OVN NB, forget workerid.

    So each deployment starts as on a fresh machine: no default range, no hash ring rows, no
    logical switches left by an earlier run (notes gotcha 8), no workerid ledger.
    """
    t0 = time.monotonic()
    sql(f"DROP DATABASE IF EXISTS `{DB_NAME}`; CREATE DATABASE `{DB_NAME}`", database="")
    # idempotent; re-creates the user/grants if needed and runs neutron-db-manage upgrade head
    run(["bash", str(NEUTRON_ENV)], timeout=900)
    clear_ovn_nb()
    shutil.rmtree(WORKERID_DIR, ignore_errors=True)
    log(f"fresh database + OVN NB in {time.monotonic() - t0:.1f}s")


#: OVN NB root tables Neutron fills (non-root rows, ACLs and ports, go with their roots): logical
#: switches; port groups (one per security group, with its ACLs, and neutron_pg_drop, which
#: Neutron re-creates before it forks: mech_driver.py L363 at 28.0.0); DHCP options (subnets)
NB_ROOTS = ("Logical_Switch", "Port_Group", "DHCP_Options")


def clear_ovn_nb() -> None:
    """Empty what Neutron wrote to OVN NB, in one transaction.

    Not only the logical switches: a worker's first OVN NB load notifies Neutron of every row,
    and while its hash ring has fewer rows than API workers each notification reads the ring
    from the database (``neutron/common/ovn/hash_ring_manager.py`` L44-L103 at 28.0.0), so
    port groups and ACLs left by earlier runs (hundreds after a few e2e rounds) slowed each
    later start.
    """
    nbctl = ["ovn-nbctl", f"--db={NB_DB}", "--timeout=10"]
    destroy: list[str] = []
    for table in NB_ROOTS:
        for row in run([*nbctl, "--bare", "--columns=_uuid", "list", table]).split():
            destroy += ["--", "--if-exists", "destroy", table, row]
    if destroy:
        run([*nbctl, *destroy])
