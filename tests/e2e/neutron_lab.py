"""Helpers for the Neutron end-to-end test and benchmark: Apache/uWSGI servers, the DB, the API.

Standard library only: the default suite imports this module (through the test file) on
machines without Neutron. Everything here talks to 127.0.0.1 only. What it expects is what
``tests/e2e/neutron_env.sh`` sets up (MariaDB on /run/mysqld/mysqld.sock, OVN NB/SB, the venv
/opt/workerid/neutron-venv, config in /etc/neutron-e2e, lock_path /var/lib/neutron/lock).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from workerid.neutron import check

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
VENV = Path(os.environ.get("NEUTRON_VENV", "/opt/workerid/neutron-venv"))
ETC = Path(os.environ.get("NEUTRON_E2E_ETC", "/etc/neutron-e2e"))
STATE = Path(os.environ.get("NEUTRON_E2E_STATE", "/var/lib/neutron-e2e"))
LOCK_PATH = Path("/var/lib/neutron/lock")


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
WORKERID_DIR = LOCK_PATH / "workerid"
MYSQL_SOCK = "/run/mysqld/mysqld.sock"
#: one database per Neutron release (their schemas differ); neutron_env.sh makes it
DB_NAME = os.environ.get("NEUTRON_E2E_DB", "neutron")
DB_URL = f"mysql+pymysql://neutron:changeme@localhost/{DB_NAME}"
HOST, PORT = "127.0.0.1", 9696
API = f"http://{HOST}:{PORT}"
PROCESSES = 4
SVC_USER = "neutron"
NB_DB = f"unix:{STATE}/run/ovnnb_db.sock"
PLAIN_WSGI = HERE / "neutron-api-plain.wsgi"


def write_plain_wsgi(path: Path) -> Path:
    """The "without workerid" .wsgi file, for this run's config dir."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(PLAIN_WSGI.read_text().replace("@ETC@", str(ETC)))
    return path


#: neutron/db/ovn_hash_ring_db.py OVN_HASHRING_UUID_NAMESPACE
HASHRING_NS = uuid.UUID("551ea055-1982-4295-8bc7-207a0d3c9231")
HASH_RING_GROUP = "mechanism_driver"
#: neutron/common/ovn/constants.py HASH_RING_NODES_TIMEOUT
HASH_RING_NODES_TIMEOUT = 120

#: lines that must never appear in a Neutron error log under workerid (issue 4)
BAD_LINE = re.compile(
    r"Duplicate entry|DB exceeded retry limit|CRITICAL.*Hash Ring|"
    r"nodes in the Hash Ring .* is higher than"
)

WORKERID_WSGI = """\
# Neutron API under mod_wsgi WITH workerid (tests/e2e): the shipped entry point's import,
# plus the config location of tests/e2e/neutron_env.sh.
import os

os.environ.setdefault("OS_NEUTRON_CONFIG_DIR", "{etc}")

from workerid.neutron.wsgi import application  # noqa: E402,F401
"""

T = TypeVar("T")


def log(msg: str) -> None:
    print(f"[e2e {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(cmd: list[str], *, timeout: float = 300, env: dict[str, str] | None = None) -> str:
    """Run a command; its stdout, or an AssertionError with its output."""
    proc = subprocess.run(
        cmd, check=False, capture_output=True, text=True, timeout=timeout, env=env
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} -> rc {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc.stdout


def wait_for(
    probe: Callable[[], T], ok: Callable[[T], bool], timeout: float, what: str, every: float = 0.5
) -> T:
    """Call probe() until ok(value); the value, or AssertionError naming the last one seen."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if ok(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {what}; last: {value}"
            )
        time.sleep(every)


def wait_new_pids(
    pids: Callable[[], list[int]], exclude: list[int] | None, timeout: float, what: str
) -> list[int]:
    """Until ``pids()`` lists PROCESSES processes and none of ``exclude`` (the replaced ones)."""
    old = set(exclude or [])
    return wait_for(
        pids,
        lambda now: len(now) == PROCESSES and not old & set(now),
        timeout,
        f"{PROCESSES} new {what}",
    )


# --- database -----------------------------------------------------------------------------


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
    run(["bash", str(HERE / "neutron_env.sh")], timeout=900)
    clear_ovn_nb()
    shutil.rmtree(WORKERID_DIR, ignore_errors=True)
    log(f"fresh database + OVN NB in {time.monotonic() - t0:.1f}s")


def clear_ovn_nb() -> None:
    nbctl = ["ovn-nbctl", f"--db={NB_DB}", "--timeout=10"]
    for ls in run([*nbctl, "--bare", "--columns=_uuid", "list", "Logical_Switch"]).split():
        run([*nbctl, "--if-exists", "ls-del", ls])


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def read_since(path: Path, offset: int = 0) -> str:
    """A log file's text from byte ``offset`` on ("" if it does not exist yet)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


# --- the API ------------------------------------------------------------------------------


def request(method: str, path: str, body: Any = None, timeout: float = 120) -> tuple[int, Any]:
    return check.api_request(method, API + path, body, timeout=timeout)


def error_type(body: Any) -> str:
    if isinstance(body, dict):
        return str(body.get("NeutronError", {}).get("type", ""))
    return str(body)[:120]


def create_network(name: str = "") -> tuple[int, Any]:
    """POST /v2.0/networks; (status, the network dict or the error body)."""
    name = name or f"e2e-{uuid.uuid4().hex[:8]}"
    status, body = request("POST", "/v2.0/networks", {"network": {"name": name}})
    if status == 201 and isinstance(body, dict):
        return status, body["network"]
    return status, body


def delete_network(net_id: str) -> int:
    return request("DELETE", f"/v2.0/networks/{net_id}")[0]


@dataclass
class FirstAnswer:
    status: int
    body: Any
    seconds: float  # from just before the start command
    refused: int  # connection attempts refused before the server listened
    earlier: list[str] = field(default_factory=list)  # answers before this one (until_201)
    detail: str = ""  # free text for reports (the benchmark's milestones)


def poll_first_post(t0: float, timeout: float = 180, until_201: bool = False) -> FirstAnswer:
    """POST /v2.0/networks from t0 on until the first HTTP answer (or the first 201).

    Networks created are deleted again.
    """
    refused = 0
    earlier: list[str] = []
    while time.monotonic() - t0 < timeout:
        try:
            status, body = create_network()
        except OSError:  # refused / reset before the server listens
            refused += 1
            time.sleep(0.05)
            continue
        answer = FirstAnswer(status, body, time.monotonic() - t0, refused, list(earlier))
        if status == 201 and isinstance(body, dict):
            delete_network(body["id"])
        if not until_201 or status == 201:
            return answer
        earlier.append(f"{status} {error_type(body)} at {answer.seconds:.2f}s")
        time.sleep(0.05)
    raise AssertionError(f"no {'201' if until_201 else 'answer'} within {timeout}s; {earlier}")


# --- the openstack client --------------------------------------------------------------------

OPENSTACK = VENV / "bin" / "openstack"
#: the one default range ML2 must seed (ml2_conf.ini vni_ranges 1:65536)
GENEVE = ("geneve", 1, 65536)


def openstack_env() -> dict[str, str]:
    """As the reference fix's manual check runs the client: no Keystone, Neutron's endpoint."""
    return {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": str(STATE),
        "OS_AUTH_TYPE": "none",
        "OS_ENDPOINT": API,
    }


def openstack(*args: str, timeout: float = 120) -> Any:
    """``openstack <args> -f json``: the parsed output (an AssertionError if it fails)."""
    out = run([str(OPENSTACK), *args, "-f", "json"], timeout=timeout, env=openstack_env())
    return json.loads(out) if out.strip() else None


def openstack_quiet(*args: str, timeout: float = 120) -> None:
    """``openstack <args>`` for a command with no output to format (``delete``)."""
    run([str(OPENSTACK), *args], timeout=timeout, env=openstack_env())


def openstack_fails(*args: str, timeout: float = 120) -> tuple[int, str]:
    """``openstack <args>`` expected to fail: (exit code, stdout + stderr)."""
    proc = subprocess.run(
        [str(OPENSTACK), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=openstack_env(),
    )
    return proc.returncode, proc.stdout + proc.stderr


def assert_openstack_client_works(where: str) -> None:
    """The reference fix's manual check, with the real ``openstack`` client (OS_AUTH_TYPE=none):
    network create is geneve with a VNI from the one seeded default range, network segment
    range list shows exactly that range, subnet and port create succeed; all deleted again."""
    name = f"osc-{uuid.uuid4().hex[:8]}"
    net = openstack("network", "create", name)
    try:
        assert net["provider:network_type"] == "geneve", f"{where}: {net}"
        vni = net["provider:segmentation_id"]
        ranges = openstack("network", "segment", "range", "list")
        defaults = [r for r in ranges if r["Default"]]
        assert len(defaults) == 1, f"{where}: {ranges}"
        (rng,) = defaults
        assert (rng["Network Type"], rng["Minimum ID"], rng["Maximum ID"]) == GENEVE, rng
        assert isinstance(vni, int) and rng["Minimum ID"] <= vni <= rng["Maximum ID"], net
        assert name in {n["Name"] for n in openstack("network", "list")}
        subnet = openstack(
            "subnet", "create", "--network", net["id"], "--subnet-range", "10.42.0.0/24", name
        )
        assert subnet["cidr"] == "10.42.0.0/24" and subnet["network_id"] == net["id"], subnet
        port = openstack("port", "create", "--network", net["id"], name)
        assert port["network_id"] == net["id"], port
        assert any(ip.get("subnet_id") == subnet["id"] for ip in port["fixed_ips"]), port
        log(f"openstack client ({where}): network {name} geneve VNI {vni}, subnet, port")
        openstack_quiet("port", "delete", port["id"])
    finally:
        openstack_quiet("network", "delete", net["id"])  # its subnet goes with it


# --- processes ------------------------------------------------------------------------------


def alive(pid: int) -> bool:
    """Running and not a zombie (PID 1 here reaps late; kill -0 succeeds on zombies)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def live_pid(pid_file: Path) -> int | None:
    """The PID in ``pid_file`` if that process is alive (a server's master); else None."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if alive(pid) else None


def children(ppid: int, prefix: str = "") -> list[int]:
    """Live children of ppid whose command line starts with prefix."""
    out = run(["ps", "-eo", "pid=,ppid=,stat=,args="])
    pids = []
    for line in out.splitlines():
        pid, parent, state, args = line.split(None, 3)
        if int(parent) == ppid and not state.startswith("Z") and args.startswith(prefix):
            pids.append(int(pid))
    return sorted(pids)


def port_free() -> bool:
    with socket.socket() as s:
        return s.connect_ex((HOST, PORT)) != 0


def wait_gone(pids: list[int], timeout: float) -> None:
    wait_for(lambda: [p for p in pids if alive(p)], lambda left: not left, timeout, "exit")


# --- Apache ----------------------------------------------------------------------------------


class Apache:
    """An Apache httpd serving Neutron with 4 mod_wsgi daemon processes on 127.0.0.1:9696."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.error_log = root / "error_log"
        self.pid_file = root / "httpd.pid"

    def ctl(self, action: str) -> None:
        raise NotImplementedError

    # lifecycle
    def start(self) -> None:
        assert port_free(), f"{HOST}:{PORT} is in use: a server left from an earlier run?"
        log(f"apache start ({self.root.name})")
        self.ctl("start")

    def restart(self) -> None:
        log("apache -k restart")
        self.ctl("restart")

    def graceful(self) -> None:
        log("apache -k graceful")
        self.ctl("graceful")

    def stop(self) -> None:
        master = self.master()
        if master is None:
            return
        daemons = self.daemons(master)
        log("apache stop")
        self.ctl("stop")
        wait_gone([master, *daemons], 60)

    def master(self) -> int | None:
        return live_pid(self.pid_file)

    def daemons(self, master: int | None = None) -> list[int]:
        master = master or self.master()
        return children(master, "(wsgi:") if master else []

    # the error log
    def log_size(self) -> int:
        return file_size(self.error_log)

    def log_since(self, offset: int = 0) -> str:
        return read_since(self.error_log, offset)

    def bad_lines(self, offset: int = 0) -> list[str]:
        return [line for line in self.log_since(offset).splitlines() if BAD_LINE.search(line)]

    def wait_daemons(self, exclude: list[int] | None = None, timeout: float = 60) -> list[int]:
        """PROCESSES live daemon processes, none of them in exclude."""
        return wait_new_pids(self.daemons, exclude, timeout, "daemon processes")


class ExpressServer(Apache):
    """``mod_wsgi-express setup-server`` (preloads the .wsgi file with WSGIImportScript)."""

    def __init__(self, root: Path, wsgi_file: Path) -> None:
        super().__init__(root)
        self.wsgi_file = wsgi_file

    def setup(self) -> ExpressServer:
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.parent.mkdir(parents=True, exist_ok=True)
        run(
            [
                str(VENV / "bin/mod_wsgi-express"),
                "setup-server",
                str(self.wsgi_file),
                "--server-root",
                str(self.root),
                "--host",
                HOST,
                "--port",
                str(PORT),
                "--processes",
                str(PROCESSES),
                "--threads",
                "1",
                "--user",
                SVC_USER,
                "--group",
                SVC_USER,
                "--server-metrics",
                "--locale",
                "C.UTF-8",
            ]
        )
        return self

    def ctl(self, action: str) -> None:
        run([str(self.root / "apachectl"), action], timeout=120)


class SiteServer(Apache):
    """Debian's apache2 with a minimal httpd.conf around ``workerid neutron site-config``.

    ``wsgi_so``: load that mod_wsgi (Debian's packaged one) with ``WSGIPythonHome`` the release's
    venv, which is built on the system Python, as Ubuntu's packaging runs Neutron; by default
    the venv's own pip-built module (``mod_wsgi-express module-config``).
    """

    def __init__(self, root: Path, wsgi_so: Path | None = None) -> None:
        super().__init__(root)
        self.conf = root / "httpd.conf"
        self.wsgi_so = wsgi_so

    def setup(self) -> SiteServer:
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True)
        os.chmod(self.root, 0o755)
        site = run([str(VENV / "bin/workerid"), "neutron", "site-config"])
        if self.wsgi_so is None:
            module = run([str(VENV / "bin/mod_wsgi-express"), "module-config"])
        else:
            assert self.wsgi_so.is_file(), (
                f"{self.wsgi_so}: apt-get install libapache2-mod-wsgi-py3"
            )
            module = f'LoadModule wsgi_module "{self.wsgi_so}"\nWSGIPythonHome "{VENV}"'

        # Only what this machine needs changed in the shipped site: loopback, our log files.
        site = site.replace("Listen 9696", f"Listen {HOST}:{PORT}")
        site = site.replace("/var/log/neutron/neutron-api.log", str(self.error_log))
        site = site.replace("/var/log/neutron/neutron-api_access.log", str(self.root / "access"))
        self.conf.write_text(
            f"""\
# Minimal standalone Apache (tests/e2e) around `workerid neutron site-config`.
ServerRoot {self.root}
ServerName {HOST}
PidFile {self.pid_file}
ErrorLog {self.root / "main_error_log"}
User {SVC_USER}
Group {SVC_USER}
LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
# the mod_wsgi module (mod_wsgi-express module-config, or Debian's packaged one)
{module}
WSGISocketPrefix {self.root}/wsgi
# from: workerid neutron site-config
{site}
"""
        )
        run(["/usr/sbin/apache2", "-f", str(self.conf), "-t"], env=self.env())
        return self

    def env(self) -> dict[str, str]:
        # The shipped .wsgi file reads Neutron's default /etc/neutron unless told otherwise;
        # mod_wsgi daemons inherit httpd's environment (SetEnv would not reach os.environ).
        return {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            "OS_NEUTRON_CONFIG_DIR": str(ETC),
        }

    def ctl(self, action: str) -> None:
        run(["/usr/sbin/apache2", "-f", str(self.conf), "-k", action], timeout=120, env=self.env())

    def bad_lines(self, offset: int = 0) -> list[str]:
        main = (self.root / "main_error_log").read_text(errors="replace") if offset == 0 else ""
        extra = [line for line in main.splitlines() if BAD_LINE.search(line)]
        return super().bad_lines(offset) + extra


# --- uWSGI (benchmark) ---------------------------------------------------------------------------


class UwsgiServer:
    """Neutron under uWSGI as upstream recommends (processes=4, start-time = %t, lazy-apps)."""

    def __init__(self, root: Path, ini: Path) -> None:
        self.root = root
        self.ini = ini
        self.pid_file = root / "uwsgi.pid"
        self.log = root / "uwsgi.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        return {
            "PATH": f"{VENV}/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            "UWSGI_PIDFILE": str(self.pid_file),
            "OS_NEUTRON_CONFIG_DIR": str(ETC),
        }

    def start(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True)
        env = self.env()
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [str(VENV / "bin/uwsgi"), "--ini", str(self.ini), "--pidfile", str(self.pid_file)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            pid = self.proc.pid
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)  # uWSGI master: SIGINT = stop now
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.kill(pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None


@contextlib.contextmanager
def running(server: Apache) -> Iterator[Apache]:
    try:
        yield server
    finally:
        server.stop()


# --- uWSGI with the config in the ini (issue 6) -------------------------------------------------

BENCH_UWSGI_INI = REPO / "bench" / "neutron_uwsgi.ini"
PLAIN_MODULE = "neutron.wsgi.api:application"
WORKERID_MODULE = "workerid.neutron.wsgi:application"
#: 28.0.0's maintenance task (every 15 s) when it counts fewer API workers than ring rows
CRITICAL_COUNT = re.compile(r"CRITICAL.*The number of nodes in the Hash Ring \(\d+\) is higher")
#: neutron/db/ovn_hash_ring_db.py remove_nodes_from_host(), logged by every _init_hash_ring try
REMOVED_CREATED_AT = "removed from the Hash Ring created at"


def write_uwsgi_ini(path: Path, module: str) -> Path:
    """bench/neutron_uwsgi.ini serving `module`, with Neutron's config dir set by `env =`."""
    text = BENCH_UWSGI_INI.read_text()
    line = f"module = {PLAIN_MODULE}\n"
    assert line in text, f"{BENCH_UWSGI_INI} no longer has {line!r}"
    text = text.replace(line, f"module = {module}\nenv = OS_NEUTRON_CONFIG_DIR={ETC}\n")
    path.write_text(f"# tests/e2e (issue 6): generated from {BENCH_UWSGI_INI.name}\n{text}")
    os.chmod(path, 0o644)
    return path


class UwsgiLab(UwsgiServer):
    """UwsgiServer whose Neutron config dir comes from the ini alone, with worker/log helpers."""

    def env(self) -> dict[str, str]:
        return {"PATH": f"{VENV}/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}

    def start(self) -> None:
        assert port_free(), f"{HOST}:{PORT} is in use: a server left from an earlier run?"
        log(f"uwsgi start ({self.ini.name})")
        super().start()

    def master(self) -> int | None:
        return live_pid(self.pid_file)

    def stop(self) -> None:
        """SIGINT to the master; a worker still stuck loading Neutron after 15 s gets SIGKILL.

        (Plain Neutron's respawned worker sits in _init_hash_ring's retries and outlives the
        master's SIGINT; left alone it would write to the next test's fresh database.)
        """
        if self.proc is None:
            return
        master = self.master() or self.proc.pid
        workers = children(master)
        with contextlib.suppress(ProcessLookupError):
            os.kill(master, signal.SIGINT)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            stuck = [pid for pid in workers if alive(pid)]
            log(f"uwsgi stop: SIGKILL to workers still running after 15 s: {stuck}")
            for pid in stuck:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(master, signal.SIGKILL)
                self.proc.wait(10)
        wait_gone(workers, 30)
        self.proc = None

    def workers(self) -> list[int]:
        """Live worker processes: the children of the master (http-socket: no router process)."""
        master = self.master()
        return children(master) if master else []

    def wait_workers(self, exclude: list[int] | None = None, timeout: float = 60) -> list[int]:
        """PROCESSES live uWSGI workers, none of them in exclude."""
        return wait_new_pids(self.workers, exclude, timeout, "uWSGI workers")

    def worker_ids(self) -> dict[int, int]:
        """pid -> uWSGI worker ID, from the master's "spawned"/"Respawned" log lines."""
        ids: dict[int, int] = {}
        pattern = r"spawned uWSGI worker (\d+) \((?:new )?pid: (\d+)"
        for m in re.finditer(pattern, self.log_since(0), re.IGNORECASE):
            ids[int(m.group(2))] = int(m.group(1))
        return ids

    def log_size(self) -> int:
        return file_size(self.log)

    def log_since(self, offset: int = 0) -> str:
        return read_since(self.log, offset)

    def lines(self, pattern: re.Pattern[str], offset: int = 0) -> list[str]:
        return [line for line in self.log_since(offset).splitlines() if pattern.search(line)]


def neutron_check(workers: int = PROCESSES, api: bool = True) -> tuple[int, str]:
    """`workerid neutron-check --workers N` from Neutron's venv: (exit code, its output)."""
    cmd = [str(VENV / "bin/workerid"), "neutron-check", "--db-url", DB_URL]
    cmd += ["--workers", str(workers)] + (["--api", API] if api else [])
    env = {**os.environ, "OS_NEUTRON_CONFIG_DIR": str(ETC)}
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=180, env=env)
    return proc.returncode, proc.stdout + proc.stderr
