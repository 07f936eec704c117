"""Issue 4's end-to-end proof: unmodified Neutron (26.0.6, 27.0.4, 28.0.0, 29.0.0) under Apache
mod_wsgi, with and without workerid, against real MariaDB and OVN. Run by
``bash scripts/e2e-neutron.sh`` (WORKERID_E2E=1), once per release.

Order matters (tests share a deployment per class and run top to bottom):

* ``test_without_workerid``: the release's own behaviour. 27.0.4 and 28.0.0: 503
  NoNetworkAvailable, no default range. 26.0.6: every worker seeds, each with its own start
  time; after kill -9 the replacement deletes the range and its siblings' ring rows. 29.0.0:
  seeds, but kill -9 leaves a frozen 5th ring row and `-k restart` keeps the start time.
* ``TestModWsgiExpress``: ``mod_wsgi-express setup-server`` with workerid (4 daemon processes,
  WSGIImportScript): first answer after start is 201, seeded once, hash ring, neutron-check,
  ``-k restart``, stop/start, ``kill -9``, ``-k graceful``, ten restarts, a clean log.
* ``TestApacheSite``: Debian's apache2 with ``workerid neutron site-config``: cold start, restart.

Each deployment starts from a freshly created ``neutron`` database, an empty OVN NB and no
workerid state, so "seeded exactly once" means once.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from workerid.verify.servers.mod_wsgi import DEBIAN_WSGI_SO

from . import lab

pytestmark = pytest.mark.e2e

WORK = Path(os.environ.get("WORKERID_E2E_DIR", str(lab.STATE / "e2e")))
SEEDED = "workerid: seeded the ML2 default segment ranges"
NEUTRON_SEEDS = "Initializing driver network segment range support for type 'geneve'"
#: the PID of the process that logged NEUTRON_SEEDS (oslo.log: "<time> <pid> INFO <logger> ...")
SEEDER = re.compile(
    r" (\d+) INFO neutron\.plugins\.ml2\.managers \[[^\]]*\] " + re.escape(NEUTRON_SEEDS)
)
GENEVE = lab.GENEVE


def neutron_host() -> str:
    """[DEFAULT] host: unset in neutron_env.sh's config, so Neutron uses the hostname."""
    return socket.gethostname()


def workerid_namespace() -> dict[str, object]:
    """The only namespace in the lock directory (`workerid status --json`)."""
    out = lab.run(
        [str(lab.VENV / "bin/workerid"), "status", "--dir", str(lab.WORKERID_DIR), "--json"]
    )
    report = json.loads(out)
    namespaces = report["namespaces"]
    assert len(namespaces) == 1, report
    namespace: dict[str, object] = namespaces[0]
    return namespace


def workerid_status() -> dict[str, object]:
    """The current run of the only namespace in the lock directory."""
    namespace = workerid_namespace()
    runs = namespace["runs"]
    assert isinstance(runs, list)
    current = [r for r in runs if r["current"]]
    assert len(current) == 1, namespace
    run: dict[str, object] = current[0]
    return run


def slots_by_pid() -> dict[int, int]:
    slots = workerid_namespace()["slots"]
    assert isinstance(slots, list)
    return {int(s["pid"]): int(s["worker_id"]) for s in slots}


def assert_create_201(where: str) -> dict[str, object]:
    """POST /v2.0/networks -> 201, geneve, VNI inside the one default range; then DELETE."""
    status, net = lab.create_network()
    assert status == 201, f"{where}: POST /v2.0/networks -> {status} {lab.error_type(net)}"
    ranges = lab.default_ranges()
    assert len(ranges) == 1, f"{where}: default ranges {ranges}"
    rng = ranges[0]
    assert (rng.network_type, rng.minimum, rng.maximum) == GENEVE
    assert net["provider:network_type"] == "geneve", net
    vni = net["provider:segmentation_id"]
    assert isinstance(vni, int) and rng.minimum <= vni <= rng.maximum, net
    assert lab.delete_network(str(net["id"])) == 204
    return dict(net)


@dataclass
class Deployment:
    server: lab.Apache
    first: lab.FirstAnswer
    created_at: list[dt.datetime] = field(default_factory=list)  # ring created_at, per run


def start_and_probe(server: lab.Apache) -> lab.FirstAnswer:
    """Start the server and POST from that moment on; the first HTTP answer."""
    t0 = time.monotonic()
    server.start()
    first = lab.poll_first_post(t0)
    lab.log(f"first answer {first.status} {lab.error_type(first.body)} at {first.seconds:.2f}s")
    return first


def settled_ring(
    after: dt.datetime | None = None, equal: dt.datetime | None = None, timeout: float = 90
) -> list[lab.RingRow]:
    """Wait for 4 live rows with one created_at (strictly later than `after` / equal to `equal`)."""

    def ok(rows: list[lab.RingRow]) -> bool:
        if not lab.ring_settled(rows, equal):
            return False
        return after is None or rows[0].created_at > after

    return lab.wait_for(lab.ring, ok, timeout, "4 hash ring rows with one created_at")


def check_run(server: lab.Apache, offset: int, where: str, *, reseeded: bool) -> dt.datetime:
    """A run after start/restart: ring, nodes, range, seeding count, log, network create."""
    rows = lab.ring()
    created = rows[0].created_at
    lab.assert_ring_nodes(rows, range(1, 5), neutron_host())
    status = workerid_status()
    start = dt.datetime.fromtimestamp(int(str(status["start_time"])), dt.timezone.utc)
    assert start.replace(tzinfo=None) == created, (status, rows)
    ranges = lab.default_ranges()
    assert len(ranges) == 1, f"{where}: default ranges {ranges}"
    new_log = server.log_since(offset)
    if reseeded:
        # the range belongs to this run: seeded once, by one worker, with this run's start time
        assert ranges[0].created_at == created, (ranges, created)
        assert new_log.count(SEEDED) == 1, f"{where}: seeded {new_log.count(SEEDED)} times"
        assert new_log.count(NEUTRON_SEEDS) == 1
    else:
        assert new_log.count(SEEDED) == 0 and new_log.count(NEUTRON_SEEDS) == 0
    assert server.bad_lines(offset) == [], where
    assert_create_201(where)
    return created


def restart_and_check(deployment: Deployment, where: str) -> dt.datetime:
    """`apachectl -k restart`: new daemons, a later created_at, reseeded once; that created_at."""
    server = deployment.server
    old = server.daemons()
    offset = server.log_size()
    server.restart()
    server.wait_daemons(exclude=old)
    settled_ring(after=deployment.created_at[-1])
    created = check_run(server, offset, where, reseeded=True)
    deployment.created_at.append(created)
    return created


# --- 1. without workerid -------------------------------------------------------------------------


def test_without_workerid() -> None:
    """Plain `from neutron.wsgi.api import application`, the release's own behaviour."""
    lab.recreate_database()
    wsgi = lab.write_plain_wsgi(WORK / "plain-wsgi" / "neutron-api.wsgi")
    server = lab.ExpressServer(WORK / "plain", wsgi).setup()
    with lab.running(server):
        if lab.NEUTRON_MAJOR in (27, 28):
            before_28(server)
        elif lab.NEUTRON_MAJOR == 26:
            before_26(server)
        else:
            before_29(server)


def before_28(server: lab.Apache) -> None:
    """28.0.0 and 27.0.x ask uWSGI for the worker ID (managers.py L193 ``get_api_worker_id() !=
    FIRST_WORKER_ID``, commit 39d95a14e2): no worker is worker 1, nobody seeds the default
    segment ranges, every network create is 503 NoNetworkAvailable (LP: #2150285)."""
    first = start_and_probe(server)
    later = [lab.create_network() for _ in range(4)]
    answers = [(first.status, lab.error_type(first.body))]
    answers += [(status, lab.error_type(body)) for status, body in later]
    assert answers == [(503, "NoNetworkAvailable")] * 5
    assert lab.default_ranges() == []
    # what an operator sees: the reference bug, with the real client
    rc, out = lab.openstack_fails("network", "create", "private")
    # "No tenant network ..." in the bug report's release, "No project network ..." in 28.0.0
    assert rc != 0 and re.search(r"503.*No (project|tenant) network is available", out), (rc, out)
    assert lab.openstack("network", "segment", "range", "list") == []


def before_26(server: lab.Apache) -> None:
    """26.0.3 and later 26.0.x let a missing worker ID through the ML2 guard (managers.py
    L193-L198: ``w_id != FIRST_WORKER_ID and w_id is not None``, stable-only commit 23ba73e8d4):
    under mod_wsgi *every* worker seeds, each with its own start time
    (``get_start_time(current_time=True)``, network_segment_range/plugin.py L69), in one
    transaction over all 65,536 allocations, and 2025.1 has no unique constraint on the ranges.

    * cold start: the four seedings contend on the allocation rows; measured here, the first
      answers were 504 (Apache's socket-timeout, 60 s) before the first 201;
    * kill -9: the replacement starts later, so its start time differs from all of its
      siblings': it deletes the default range and re-creates it with its own created_at, and
      deletes its live siblings' hash ring rows (4 -> 1, ``remove_nodes_from_host``).
    """
    if not lab.DEEP:
        # quick: the cause alone, every worker starting its own seeding (each logs NEUTRON_SEEDS
        # as it begins), without waiting out the contention (about 3 minutes)
        t0 = time.monotonic()
        server.start()
        seeders = lab.wait_for(
            lambda: set(SEEDER.findall(server.log_since(0))),
            lambda pids: len(pids) >= lab.PROCESSES,
            120,
            "every worker starting its own seeding",
        )
        lab.log(f"26.x plain: {len(seeders)} workers seeding at {time.monotonic() - t0:.1f}s")
        return
    first = start_and_probe(server)
    later = lab.poll_first_post(time.monotonic(), timeout=300, until_201=True)
    lab.log(
        f"26.x plain: first 201 after {[f'{first.status} at {first.seconds:.1f}s']} "
        f"+ {later.earlier} at +{later.seconds:.1f}s"
    )
    lab.wait_for(
        lambda: server.log_since(0).count("WorkerService process has finished"),
        lambda n: n >= lab.PROCESSES,
        300,
        "4 workers initialised",
    )
    log = server.log_since(0)
    seedings = log.count(NEUTRON_SEEDS)
    assert seedings >= lab.PROCESSES, f"seeding ran {seedings} times"  # in every worker
    before = lab.default_ranges()
    assert before, "no default range"
    lab.log(f"26.x plain: seeding ran {seedings} times, ranges {before}")
    time.sleep(1.5)  # the replacement's start time is a later second than every sibling's
    killed_at = lab.db_now()
    old = server.daemons()
    os.kill(old[1], signal.SIGKILL)
    server.wait_daemons(exclude=[old[1]])
    rows = lab.wait_for(lab.ring, lambda rows: len(rows) == 1, 90, "the ring collapsed to 1")
    ranges = lab.wait_for(
        lab.default_ranges,
        lambda ranges: bool(ranges) and all(r.created_at >= killed_at for r in ranges),
        90,
        "the default range re-made by the replacement",
    )
    lab.log(f"26.x plain, after kill -9: ring {rows}, ranges {ranges}")


def before_29(server: lab.Apache) -> None:
    """29.0.0 elects its first worker and start time with O_EXCL files named after the parent
    PID (neutron/common/wsgi_utils.py) and names ring nodes after the worker's PID. Under
    mod_wsgi the parent is Apache's master, which outlives `-k restart`, and a replacement
    worker has a new PID:

    * cold start: 201, one default range (the seeding works);
    * kill -9: the replacement adds a 5th row; the dead worker's row stays, never touched
      again, and the health check logs CRITICAL "Hash Ring (5) > API workers (4)";
    * `-k restart`: same start time (same Apache master), so created_at does not advance.
    """
    first = start_and_probe(server)
    assert first.status == 201, f"{first.status} {lab.error_type(first.body)}"
    assert len(lab.default_ranges()) == 1
    rows = lab.wait_for(lab.ring, lab.ring_settled, 90, "4 hash ring rows")
    created = rows[0].created_at
    host = neutron_host()
    old = server.daemons()
    lab.assert_ring_nodes(rows, old, host)
    victim = old[1]
    dead_node = lab.node_uuid(victim, host)
    offset = server.log_size()
    os.kill(victim, signal.SIGKILL)
    new = server.wait_daemons(exclude=[victim])
    (replacement,) = set(new) - set(old)
    rows = lab.wait_for(
        lab.ring,
        lambda rows: lab.node_uuid(replacement, host) in {r.node_uuid for r in rows},
        60,
        "the replacement's row",
    )
    dead = next(r for r in rows if r.node_uuid == dead_node)
    lab.wait_for(
        lambda: server.log_since(offset),
        lambda text: "nodes in the Hash Ring (5) is higher than" in text,
        60,
        "the CRITICAL worker count line",
    )
    later = lab.ring()
    assert len(later) == lab.PROCESSES + 1, later
    assert next(r for r in later if r.node_uuid == dead_node).updated_at == dead.updated_at
    lab.log(f"29.0.0 plain, after kill -9: {len(later)} rows, {dead_node} frozen")

    offset = server.log_size()
    daemons = server.daemons()
    server.restart()
    server.wait_daemons(exclude=daemons)
    fresh = lab.wait_for(
        lab.ring,
        lambda rows: (
            {lab.node_uuid(p, host) for p in server.daemons()} <= {r.node_uuid for r in rows}
        ),
        90,
        "the restarted workers' rows",
    )
    assert {r.created_at for r in fresh} == {created}  # the restart did not advance it
    assert dead_node in {r.node_uuid for r in fresh}  # and the frozen row is still there
    lab.log(f"29.0.0 plain, after -k restart: created_at still {created}, {len(fresh)} rows")


# --- 2-6. with workerid, mod_wsgi-express ------------------------------------------------------


@pytest.fixture(scope="class")
def express() -> Iterator[Deployment]:
    lab.recreate_database()
    WORK.mkdir(parents=True, exist_ok=True)
    os.chmod(WORK, 0o755)
    wsgi = WORK / "neutron-api-workerid.wsgi"
    wsgi.write_text(lab.WORKERID_WSGI.format(etc=lab.ETC))
    os.chmod(wsgi, 0o644)
    server = lab.ExpressServer(WORK / "express", wsgi).setup()
    with lab.running(server):
        yield Deployment(server, start_and_probe(server))


class TestModWsgiExpress:
    def test_first_answer_after_start_is_201(self, express: Deployment) -> None:
        """Polling POST from `apachectl start`: the very first answer is 201 (no 503 window)."""
        first = express.first
        assert first.status == 201, f"first answer {first.status} {lab.error_type(first.body)}"
        assert first.body["provider:network_type"] == "geneve"

    def test_network_create_geneve_in_default_range(self, express: Deployment) -> None:
        assert_create_201("after start")

    def test_openstack_client(self, express: Deployment) -> None:
        lab.assert_openstack_client_works("mod_wsgi-express")

    def test_hash_ring_and_single_seeding(self, express: Deployment) -> None:
        """4 rows (worker IDs 1-4), one created_at = workerid's start time; range seeded once."""
        settled_ring()
        express.created_at.append(check_run(express.server, 0, "cold start", reseeded=True))

    def test_neutron_check_passes(self, express: Deployment) -> None:
        env = {**os.environ, "OS_NEUTRON_CONFIG_DIR": str(lab.ETC)}
        cmd = [str(lab.VENV / "bin/workerid"), "neutron-check", "--db-url", lab.DB_URL]
        out = lab.run([*cmd, "--api", lab.API], env=env)  # raises unless it exits 0
        print(out)
        assert "FAIL" not in out

    def test_restart_advances_created_at(self, express: Deployment) -> None:
        restart_and_check(express, "after -k restart")

    def test_stop_start_advances_created_at(self, express: Deployment) -> None:
        server = express.server
        server.stop()
        left = lab.ring()
        offset = server.log_size()
        first = start_and_probe(server)
        assert first.status == 201, f"first answer {first.status} {lab.error_type(first.body)}"
        server.wait_daemons()
        settled_ring(after=express.created_at[-1])
        express.created_at.append(check_run(server, offset, "after stop/start", reseeded=True))
        # the stopped workers removed their own rows on SIGTERM (Neutron's handler)
        assert left == [], left

    def test_kill_9_replacement_takes_over_its_row(self, express: Deployment) -> None:
        server = express.server
        created = express.created_at[-1]
        holders = slots_by_pid()
        victim = next(pid for pid, wid in holders.items() if wid == 2)
        node = lab.node_uuid(2, neutron_host())
        old = server.daemons()
        offset = server.log_size()
        killed_at = lab.db_now()
        lab.log(f"kill -9 {victim} (worker 2, hash ring node {node})")
        os.kill(victim, signal.SIGKILL)
        new = server.wait_daemons(exclude=[victim])
        (replacement,) = set(new) - set(old)

        def registered(rows: list[lab.RingRow]) -> bool:
            mine = [r for r in rows if r.node_uuid == node]
            return (
                lab.ring_settled(rows, created) and bool(mine) and mine[0].updated_at >= killed_at
            )

        t0 = time.monotonic()
        lab.wait_for(lab.ring, registered, 60, f"the replacement's fresh row {node}")
        lab.log(f"replacement {replacement} registered {time.monotonic() - t0:.1f}s after kill")
        assert slots_by_pid().get(replacement) == 2
        new_log = server.log_since(offset)
        assert f"took over hash ring node {node}" in new_log, new_log[-3000:]
        assert server.bad_lines(offset) == []
        assert new_log.count(SEEDED) == 0  # same run: no reseeding
        assert len(lab.default_ranges()) == 1
        assert_create_201("after kill -9")

    def test_graceful_keeps_created_at(self, express: Deployment) -> None:
        """`-k graceful`: every daemon is replaced (mod_wsgi does not drain them; Apache keeps
        restart_time), and it is the same server run: created_at kept, the same 4 nodes
        re-added (the old daemons remove their rows on SIGTERM, or the new ones take them
        over), the range not reseeded, network create 201."""
        server = express.server
        created = express.created_at[-1]
        ranges = lab.default_ranges()
        old = server.daemons()
        offset = server.log_size()
        server.graceful()
        server.wait_daemons(exclude=old)
        settled_ring(equal=created)
        # let every new daemon finish loading before judging the log
        lab.wait_for(
            lambda: server.log_since(offset).count("WorkerService process has finished"),
            lambda n: n >= lab.PROCESSES,
            60,
            "4 workers initialised",
        )
        assert check_run(server, offset, "after -k graceful", reseeded=False) == created
        assert lab.default_ranges() == ranges
        new_log = server.log_since(offset)
        removed = re.findall(r'Node "(\w+)" removed from the Hash Ring', new_log)
        added = re.findall(r"Node (\w+) from host .* added to the Hash Ring", new_log)
        took_over = re.findall(r"took over hash ring node (\w+)", new_log)
        lab.log(
            f"graceful: {len(removed)} rows removed by the old daemons' SIGTERM handler, "
            f"{len(added)} added by the new ones, {len(took_over)} taken over; "
            f"created_at kept at {created}"
        )
        assert sorted(added) == sorted(lab.node_uuid(i, neutron_host()) for i in range(1, 5))

    def test_restarts_in_a_row(self, express: Deployment) -> None:
        """Ten `-k restart`s in a row (three with NEUTRON_E2E_DEPTH=quick), each advancing."""
        n = 10 if lab.DEEP else 3
        for i in range(1, n + 1):
            t0 = time.monotonic()
            created = restart_and_check(express, f"restart {i}/{n}")
            lab.log(f"restart {i}/{n}: created_at {created} ({time.monotonic() - t0:.1f}s)")
        stamps = express.created_at
        assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps), stamps

    def test_whole_log_clean(self, express: Deployment) -> None:
        """No duplicate-key, retry-limit or CRITICAL hash ring line over the whole deployment."""
        log = express.server.log_since(0)
        assert express.server.bad_lines(0) == []
        assert "WorkerService process has finished" in log


# --- the Apache site variant ---------------------------------------------------------------------


@pytest.fixture(scope="class", params=["pip-mod_wsgi", "debian-mod_wsgi"])
def site(request: pytest.FixtureRequest) -> Iterator[Deployment]:
    lab.recreate_database()
    debian = request.param == "debian-mod_wsgi"
    wsgi_so = DEBIAN_WSGI_SO if debian else None
    server = lab.SiteServer(WORK / request.param, wsgi_so).setup()
    with lab.running(server):
        yield Deployment(server, start_and_probe(server))


class TestApacheSite:
    """Debian's apache2, minimal httpd.conf, the shipped site template (lazy WSGIScriptAlias +
    WSGIImportScript, `WSGIDaemonProcess neutron-api processes=4 ... server-metrics=On`); with
    the venv's pip-built mod_wsgi, and with Debian's packaged ``libapache2-mod-wsgi-py3`` and
    the venv (on the system Python) as ``WSGIPythonHome``, as Ubuntu's packaging serves it."""

    def test_cold_start(self, site: Deployment) -> None:
        first = site.first
        assert first.status == 201, f"first answer {first.status} {lab.error_type(first.body)}"
        daemons = site.server.daemons()
        assert len(daemons) == lab.PROCESSES
        for pid in daemons:
            assert Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"(wsgi:neutron-api")
        server = site.server
        assert isinstance(server, lab.SiteServer)
        if server.wsgi_so is not None:  # every daemon runs Debian's module, not the venv's
            for pid in daemons:
                maps = Path(f"/proc/{pid}/maps").read_text()
                assert str(server.wsgi_so) in maps and "mod_wsgi-py" not in maps, pid
        settled_ring()
        site.created_at.append(check_run(site.server, 0, "site cold start", reseeded=True))

    def test_openstack_client(self, site: Deployment) -> None:
        lab.assert_openstack_client_works(site.server.root.name)

    def test_restart(self, site: Deployment) -> None:
        restart_and_check(site, "site -k restart")
