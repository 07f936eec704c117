"""``workerid neutron check``: an operator's doctor for Neutron's worker-dependent state.

Checks, each PASS or FAIL with what was observed:

* the Neutron release installed where the check runs (``importlib.metadata``
  of this Python environment: run it from Neutron's) is one workerid supports;
* ``install()`` is active in the serving processes: seen from outside in
  ``/proc/locks``, where every process in which workerid resolved its identity
  with Neutron's lock directory (``install()`` does so at once) holds a shared
  ``flock`` on that directory for life, whatever the server (Apache mod_wsgi,
  uWSGI, ...) and without reading other users' processes;
* a default network segment range exists exactly once per configured tunnel type;
* ``ovn_hash_ring`` has one row per API worker of this host, all sharing one
  ``created_at``, none stale;
* ``POST /v2.0/networks`` returns 201 with a tunnel network type and a
  segmentation ID inside the default range (the network is deleted again).

The database is read with PyMySQL (``mysql+pymysql://`` URLs, the
``workerid[neutron]`` extra); nothing is written to it.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Sequence
from typing import Any

from .. import _procfs
from . import _config

#: Neutron's HASH_RING_NODES_TIMEOUT (neutron/common/ovn/constants.py)
HASH_RING_NODES_TIMEOUT = 120
#: Neutron's hash ring group for the OVN mechanism driver
HASH_RING_GROUP = "mechanism_driver"
TUNNEL_TYPES = ("geneve", "vxlan", "gre")
#: the Neutron release series install() is made and checked for (README, docs/design.md)
SUPPORTED_RELEASES = ("26.0", "27.0", "28.0", "29.0")


@dataclasses.dataclass(frozen=True)
class Check:
    name: str
    expected: str
    observed: str
    ok: bool


class CheckError(Exception):
    """The check itself could not run (no driver, database unreachable)."""


def _connect(db_url: str) -> Any:
    url = urllib.parse.urlsplit(db_url)
    if not url.scheme.startswith("mysql"):
        raise CheckError(f"unsupported database URL scheme {url.scheme!r} (use mysql+pymysql://)")
    try:
        import pymysql  # type: ignore[import-untyped]
    except ImportError as exc:
        raise CheckError("PyMySQL is not installed: pip install 'workerid[neutron]'") from exc
    query = urllib.parse.parse_qs(url.query)
    try:
        return pymysql.connect(
            host=url.hostname or "localhost",
            port=url.port or 3306,
            user=urllib.parse.unquote(url.username or ""),
            password=urllib.parse.unquote(url.password or ""),
            database=url.path.lstrip("/"),
            unix_socket=query.get("unix_socket", [None])[0],
            connect_timeout=10,
        )
    except pymysql.MySQLError as exc:
        raise CheckError(f"cannot connect to the database: {exc}") from exc


def _rows(conn: Any, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return list(cur.fetchall())


def configured_tunnel_types(environ: dict[str, str] | None = None) -> list[str]:
    """Tunnel types in ``[ml2] type_drivers`` of Neutron's config files."""
    value = _config.option("ml2", "type_drivers", environ) or ""
    return [t.strip() for t in value.split(",") if t.strip() in TUNNEL_TYPES]


def neutron_release() -> str | None:
    """The version of the ``neutron`` distribution in this Python environment, if any."""
    try:
        return importlib.metadata.version("neutron")
    except importlib.metadata.PackageNotFoundError:
        return None


def check_release(version: str | None, where: str = sys.prefix) -> Check:
    expected = ", ".join(f"{series}.x" for series in SUPPORTED_RELEASES)
    if version is None:
        observed = f"none: no neutron in {where} (run this from Neutron's environment)"
        return Check("Neutron release", expected, observed, False)
    series = ".".join(version.split(".")[:2])
    ok = series in SUPPORTED_RELEASES
    observed = f"{version} in {where}" + ("" if ok else ": install() is not made for it")
    return Check("Neutron release", expected, observed, ok)


def lock_dir_users(lock_dir: str) -> list[int]:
    """The PIDs that hold workerid's shared ``flock`` on ``lock_dir`` (``/proc/locks``).

    A process takes it when workerid resolves its identity with that lock
    directory and keeps it until it exits; only the process that took it is
    listed (not a child that inherited the descriptor).
    """
    try:
        st = os.stat(lock_dir)
    except OSError:
        return []
    me = os.getpid()
    return sorted(
        {
            pid
            for pid, _mode, dev, inode in _procfs.flocks()
            if dev == st.st_dev and inode == st.st_ino and pid != me
        }
    )


def _command(pid: int) -> str:
    argv = _procfs.cmdline(pid) or []
    text = " ".join(argv) or "?"
    return text if len(text) <= 40 else text[:37] + "..."


def check_installed(lock_dir: str, workers: int | None = None) -> Check:
    """``install()`` is active in the serving processes: they hold ``lock_dir`` (see above)."""
    expected = "API workers hold workerid's lock dir" + (f" ({workers})" if workers else "")
    pids = lock_dir_users(lock_dir)
    if not pids:
        observed = (
            f"no process holds {lock_dir}: install() is not active in the serving processes, "
            "or they use another lock dir (WORKERID_DIR; see --lock-dir)"
        )
        return Check("workerid install() active", expected, observed, False)
    shown = "; ".join(f"{pid} {_command(pid)}" for pid in pids[:8])
    more = f"; and {len(pids) - 8} more" if len(pids) > 8 else ""
    observed = f"{len(pids)} processes hold {lock_dir}: {shown}{more}"
    return Check("workerid install() active", expected, observed, True)


def check_ranges(conn: Any, types: Sequence[str]) -> tuple[list[Check], dict[str, tuple[int, int]]]:
    rows = _rows(
        conn,
        "SELECT network_type, minimum, maximum FROM network_segment_ranges WHERE `default` = 1",
    )
    checks = []
    bounds: dict[str, tuple[int, int]] = {}
    for kind in types:
        mine = [r for r in rows if r[0] == kind]
        checks.append(
            Check(
                f"default {kind} segment range",
                "exactly 1",
                f"{len(mine)}" + (f" ({mine[0][1]}:{mine[0][2]})" if mine else ""),
                len(mine) == 1,
            )
        )
        if len(mine) == 1:
            bounds[kind] = (int(mine[0][1]), int(mine[0][2]))
    if not types:
        checks.append(
            Check("tunnel types configured", "at least 1", "none in [ml2] type_drivers", False)
        )
    return checks, bounds


def check_hash_ring(conn: Any, host: str, workers: int | None) -> list[Check]:
    rows = _rows(
        conn,
        "SELECT node_uuid, created_at, TIMESTAMPDIFF(SECOND, updated_at, UTC_TIMESTAMP()) "
        "FROM ovn_hash_ring WHERE hostname = %s AND group_name = %s",
        (host, HASH_RING_GROUP),
    )
    created = sorted({str(r[1]) for r in rows})
    stale = [r[0] for r in rows if r[2] is None or r[2] > HASH_RING_NODES_TIMEOUT]
    return [
        Check(
            f"hash ring rows for host {host}",
            "one per API worker" + (f" ({workers})" if workers else ""),
            str(len(rows)),
            len(rows) > 0 and (workers is None or len(rows) == workers),
        ),
        Check(
            "hash ring created_at",
            "one value",
            ", ".join(created) or "(no rows)",
            len(created) == 1,
        ),
        Check(
            "hash ring stale rows",
            f"none (updated within {HASH_RING_NODES_TIMEOUT}s)",
            ", ".join(stale) or "none",
            not stale and bool(rows),
        ),
    ]


def api_request(
    method: str, url: str, body: Any = None, *, token: str | None = None, timeout: float = 60
) -> tuple[int, Any]:
    """One JSON request to Neutron's API: ``(status, decoded body)``; HTTP errors are answers."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - operator's URL
    req.add_header("Content-Type", "application/json")
    req.add_header("Connection", "close")
    if token:
        req.add_header("X-Auth-Token", token)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw)
        except ValueError:
            return exc.code, raw.decode("utf-8", "replace")[:300]


def check_network_create(
    api: str, bounds: dict[str, tuple[int, int]], token: str | None = None
) -> list[Check]:
    base = api.rstrip("/")
    name = f"workerid-check-{uuid.uuid4().hex[:8]}"
    try:
        status, body = api_request(
            "POST", f"{base}/v2.0/networks", {"network": {"name": name}}, token=token
        )
    except OSError as exc:
        return [Check("POST /v2.0/networks", "201", f"no answer: {exc}", False)]
    net = body.get("network", {}) if isinstance(body, dict) else {}
    error = body.get("NeutronError", {}).get("type", "") if isinstance(body, dict) else ""
    checks = [Check("POST /v2.0/networks", "201", f"{status} {error}".strip(), status == 201)]
    if status == 201:
        kind = net.get("provider:network_type")
        seg = net.get("provider:segmentation_id")
        low, high = bounds.get(str(kind), (None, None))
        inside = (
            isinstance(seg, int) and low is not None and high is not None and low <= seg <= high
        )
        checks.append(
            Check(
                "network type and segmentation id",
                "a tunnel type, id inside its default range",
                f"{kind} {seg}" + (f" (range {low}:{high})" if low is not None else ""),
                kind in TUNNEL_TYPES and inside,
            )
        )
        try:
            gone, _ = api_request("DELETE", f"{base}/v2.0/networks/{net.get('id')}", token=token)
        except OSError as exc:
            gone = 0
            checks.append(Check("DELETE the test network", "204", f"no answer: {exc}", False))
        else:
            checks.append(Check("DELETE the test network", "204", str(gone), gone == 204))
    return checks


def run(
    db_url: str,
    api: str | None,
    *,
    host: str | None = None,
    workers: int | None = None,
    tunnel_types: Sequence[str] | None = None,
    token: str | None = None,
    lock_dir: str | None = None,
) -> list[Check]:
    types = list(tunnel_types) if tunnel_types else configured_tunnel_types()
    host = host or _config.option("DEFAULT", "host") or socket.gethostname()
    lock_dir = lock_dir or os.path.join(_config.lock_path()[0], "workerid")
    checks = [check_release(neutron_release()), check_installed(lock_dir, workers)]
    conn = _connect(db_url)
    try:
        found, bounds = check_ranges(conn, types)
        checks += found
        checks += check_hash_ring(conn, host, workers)
    finally:
        conn.close()
    if api:
        checks += check_network_create(api, bounds, token)
    return checks


def format_table(checks: Sequence[Check]) -> str:
    widths = [max(len(c.name) for c in checks), max(len(c.expected) for c in checks)]
    lines = []
    for c in checks:
        verdict = "PASS" if c.ok else "FAIL"
        name, expected = f"{c.name:<{widths[0]}}", f"{c.expected:<{widths[1]}}"
        lines.append(f"{verdict}  {name}  expected {expected}  observed {c.observed}")
    passed = sum(c.ok for c in checks)
    lines.append(f"neutron-check: {passed} of {len(checks)} checks passed")
    return "\n".join(lines)
