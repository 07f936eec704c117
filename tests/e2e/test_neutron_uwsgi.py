"""Issue 6's uWSGI proof: unmodified Neutron (26.0.x-29.0.x) under its own loader, uWSGI
(processes=4, master, lazy-apps, ``start-time = %t``: bench/neutron_uwsgi.ini with ``env =
OS_NEUTRON_CONFIG_DIR``), ``kill -9`` of one worker, without and with workerid's entry point.
Run by ``bash scripts/e2e-neutron.sh`` (WORKERID_E2E=1).

* ``test_plain_kill_9_leaves_a_stale_row`` (the "before"): uWSGI respawns worker N with the same
  worker ID and start time, so the replacement's INSERT hits its predecessor's row; the row's
  ``updated_at`` stays frozen at the kill while ``_init_hash_ring`` retries ("removed from the
  Hash Ring created at" again and again); 28.0.0 logs CRITICAL "Hash Ring (4) is higher than the
  number of API workers (2)" (CPU count); ``workerid neutron-check`` exits 1 on the stale row.
  29.0.0 names ring nodes after the worker's PID instead: the replacement adds a 5th row beside
  the frozen one, and the health check logs CRITICAL "Hash Ring (5) is higher than the number of
  API workers (4)". The row is judged frozen once every other row was touched after the kill
  (about 15-30 s); with the deep checks (``NEUTRON_E2E_DEPTH=full``: 28 and 29) it then waits for
  Neutron's own stale rule (``updated_at`` older than HASH_RING_NODES_TIMEOUT, 120 s) and
  ``neutron check``'s verdict on it, about 2.5 minutes in all.
* ``test_workerid_kill_9_takes_over_its_row`` (the "after"): ``module =
  workerid.neutron.wsgi:application``: within 60 s 4 live rows (``updated_at`` within 45 s),
  "took over hash ring node", one ``_init_hash_ring`` try, no CRITICAL line at all, 201, and
  ``neutron-check`` exits 0.

Each deployment starts from a freshly created ``neutron`` database and an empty OVN NB.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import lab

pytestmark = pytest.mark.e2e

WORK = Path(os.environ.get("WORKERID_E2E_DIR", str(lab.STATE / "e2e")))
VICTIM = 2  # the uWSGI worker ID killed
FRESH = 45  # "none stale" after the kill: every row touched within this many seconds
#: the line workerid.neutron logs in each worker once Neutron is loaded
INSTALLED = re.compile(
    r"workerid: Neutron (?:API )?worker (\d+) of (\d+), start time (\d+) \((\w+);"
)
GENEVE = lab.GENEVE
#: plain 29.0.0 after the kill: the dead row and the replacement's new one
FIVE_ROWS = "Hash Ring (5) is higher than the number of API workers (4)"


def deploy(module: str, name: str) -> Iterator[lab.UwsgiLab]:
    lab.recreate_database()
    WORK.mkdir(parents=True, exist_ok=True)
    os.chmod(WORK, 0o755)
    ini = lab.write_uwsgi_ini(WORK / f"neutron-uwsgi-{name}.ini", module)
    server = lab.UwsgiLab(WORK / f"uwsgi-{name}", ini)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def plain() -> Iterator[lab.UwsgiLab]:
    yield from deploy(lab.PLAIN_MODULE, "plain")


@pytest.fixture
def with_workerid() -> Iterator[lab.UwsgiLab]:
    yield from deploy(lab.WORKERID_MODULE, "workerid")


def start_and_settle(
    server: lab.UwsgiLab, *, nodes_by_pid: bool = False
) -> tuple[float, list[lab.RingRow]]:
    """Start uWSGI, POST until 201, wait for 4 workers and 4 live ring rows; (t0, rows).

    Nodes are named after uWSGI's worker IDs 1..4 (28.0.0; anything with workerid), or after
    the workers' PIDs (``nodes_by_pid``: plain 29.0.0).
    """
    t0 = time.monotonic()
    server.start()
    first = lab.poll_first_post(t0, until_201=True)
    lab.log(f"first 201 at {first.seconds:.2f}s (before it: {first.earlier or 'nothing'})")
    assert first.body["provider:network_type"] == "geneve", first.body
    workers = server.wait_workers()
    rows = lab.wait_for(lab.ring, lab.ring_settled, 90, "4 live hash ring rows, one created_at")
    lab.assert_ring_nodes(rows, workers if nodes_by_pid else range(1, 5), socket.gethostname())
    ranges = lab.default_ranges()
    assert [(r.network_type, r.minimum, r.maximum) for r in ranges] == [GENEVE], ranges
    return t0, rows


def kill_worker(server: lab.UwsgiLab) -> tuple[int, int, str, int, dt.datetime]:
    """kill -9 uWSGI worker VICTIM; (victim pid, replacement pid, node, log offset, killed_at)."""
    ids = server.worker_ids()
    live = server.workers()
    assert sorted(ids.get(pid, 0) for pid in live) == [1, 2, 3, 4], (live, ids)
    victim = next(pid for pid in live if ids[pid] == VICTIM)
    node = lab.node_uuid(VICTIM, socket.gethostname())
    offset = server.log_size()
    killed_at = lab.db_now()
    lab.log(f"kill -9 {victim} (uWSGI worker {VICTIM}, hash ring node {node})")
    os.kill(victim, signal.SIGKILL)
    new = server.wait_workers(exclude=[victim])
    (replacement,) = set(new) - set(live)
    assert server.worker_ids().get(replacement) == VICTIM, "uWSGI respawns with the same ID"
    return victim, replacement, node, offset, killed_at


def retries_of(server: lab.UwsgiLab, offset: int, replacement: int) -> int:
    """How often the replacement's ``_init_hash_ring`` logged "removed ... created at"."""
    return sum(
        1
        for line in server.log_since(offset).splitlines()
        if lab.REMOVED_CREATED_AT in line and f" {replacement} " in line
    )


def row_of(node: str) -> lab.RingRow | None:
    return next((r for r in lab.ring() if r.node_uuid == node), None)


def figures(label: str, server: lab.UwsgiLab, offset: int, node: str) -> dict[str, object]:
    rows = lab.ring()
    after_kill = server.log_since(offset)
    fig: dict[str, object] = {
        "rows": len(rows),
        "created_at": sorted({str(r.created_at) for r in rows}),
        "ages_s": {r.node_uuid[:8] + ("*" if r.node_uuid == node else ""): r.age for r in rows},
        "critical_lines_total": len(server.lines(lab.CRITICAL_COUNT)),
        "removed_created_at_after_kill": after_kill.count(lab.REMOVED_CREATED_AT),
        "duplicate_entry_after_kill": after_kill.count("Duplicate entry"),
        "took_over_after_kill": after_kill.count("took over hash ring node"),
    }
    lab.log(f"{label}: {fig}")
    return fig


# --- before: plain neutron.wsgi.api under uWSGI ------------------------------------------------


def test_plain_kill_9_leaves_a_stale_row(plain: lab.UwsgiLab) -> None:
    server = plain
    by_pid = lab.NEUTRON_MAJOR >= 29  # 29.0.0 names nodes after the worker's PID
    start_and_settle(server, nodes_by_pid=by_pid)
    victim, replacement, node, offset, killed_at = kill_worker(server)
    host = socket.gethostname()
    if by_pid:
        node = lab.node_uuid(victim, host)
    t_kill = time.monotonic()

    # The dead worker's row is not touched again while the live workers' rows are (every
    # HASH_RING_TOUCH_INTERVAL, 15 s): wait until every other row was touched after the kill
    # and the release's fault shows in the log, then judge the row.
    def fault_shown(rows: list[lab.RingRow]) -> bool:
        others = [r for r in rows if r.node_uuid != node]
        if len(others) < lab.PROCESSES - 1 or any(r.updated_at <= killed_at for r in others):
            return False
        critical = server.lines(lab.CRITICAL_COUNT)
        if by_pid:
            return f"Node {lab.node_uuid(replacement, host)} from host" in server.log_since(
                offset
            ) and any(FIVE_ROWS in line for line in critical)
        return bool(critical) and retries_of(server, offset, replacement) >= 3

    lab.wait_for(lab.ring, fault_shown, 90, "live rows touched after the kill, the fault logged")
    row = row_of(node)
    assert row is not None and row.updated_at <= killed_at, (row, killed_at)
    frozen = row.updated_at
    after_kill = server.log_since(offset)
    lab.log(
        f"{time.monotonic() - t_kill:.0f} s after the kill, the others touched since: row {node} "
        f"updated_at {frozen} (age {row.age}s), replacement {replacement} logged "
        f"{retries_of(server, offset, replacement)} x '{lab.REMOVED_CREATED_AT}'"
    )
    critical = server.lines(lab.CRITICAL_COUNT)
    if by_pid:
        # 29.0.0: the replacement registers a new node (its PID) beside the frozen one; the
        # count is right (uwsgi.numproc), the ring is one row too long
        assert FIVE_ROWS in critical[-1], critical[-1]
    else:
        # 28.0.0: the replacement's INSERT keeps hitting its predecessor's row (same ID)
        assert f"Node {node} from host" not in after_kill  # never added again
        # 28.0.0 counts API workers by CPUs
        assert "Hash Ring (4) is higher than the number of API workers (2)" in critical[0]
    if not lab.DEEP:
        fig = figures(
            f"BEFORE (plain, {time.monotonic() - t_kill:.0f}s after kill)", server, offset, node
        )
        assert fig["rows"] == lab.PROCESSES + (1 if by_pid else 0)
        assert fig["took_over_after_kill"] == 0
        return

    # the real stale rule: updated_at older than HASH_RING_NODES_TIMEOUT
    row = lab.wait_for(
        lambda: row_of(node),
        lambda r: r is not None and r.age > lab.HASH_RING_NODES_TIMEOUT,
        lab.HASH_RING_NODES_TIMEOUT + 30,
        f"row {node} older than {lab.HASH_RING_NODES_TIMEOUT}s",
        every=1,
    )
    assert row is not None and row.updated_at == frozen, (row, frozen)
    rc, out = lab.neutron_check()
    print(out)
    fails = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert rc == 1, out
    assert any("hash ring stale rows" in f and node in f for f in fails), out
    fig = figures(
        f"BEFORE (plain, {time.monotonic() - t_kill:.0f}s after kill)", server, offset, node
    )
    assert fig["rows"] == lab.PROCESSES + (1 if by_pid else 0)
    assert fig["took_over_after_kill"] == 0


# --- after: workerid.neutron.wsgi under uWSGI ---------------------------------------------------


def test_workerid_kill_9_takes_over_its_row(with_workerid: lab.UwsgiLab) -> None:
    server = with_workerid
    t0, rows = start_and_settle(server)
    created = rows[0].created_at

    # uWSGI's own values pass through: IDs 1..4, count 4 (uwsgi.numproc), start-time = %t
    installed = lab.wait_for(
        lambda: INSTALLED.findall(server.log_since(0)),
        lambda found: len(found) >= lab.PROCESSES,
        30,
        "workerid's identity line from every worker",
    )
    assert sorted(int(w) for w, *_ in installed) == [1, 2, 3, 4], installed
    assert {(n, s, loader) for _, n, s, loader in installed} == {
        ("4", str(int(created.replace(tzinfo=dt.timezone.utc).timestamp())), "uwsgi")
    }, (installed, created)

    _, replacement, node, offset, killed_at = kill_worker(server)
    t_kill = time.monotonic()

    def recovered(rows: list[lab.RingRow]) -> bool:
        mine = [r for r in rows if r.node_uuid == node]
        return (
            len(rows) == lab.PROCESSES
            and {r.created_at for r in rows} == {created}
            and all(r.age <= FRESH for r in rows)
            and bool(mine)
            and mine[0].updated_at >= killed_at
        )

    lab.wait_for(lab.ring, recovered, 60, f"4 live rows, {node} re-registered")
    lab.log(f"replacement {replacement} registered {time.monotonic() - t_kill:.1f}s after kill")
    # let the maintenance task (every 15 s) run in every worker, the replacement included,
    # before judging the log for CRITICAL worker-count lines
    time.sleep(max(0.0, 35 - (time.monotonic() - t0), 16 - (time.monotonic() - t_kill)))

    new_log = server.log_since(offset)
    assert f"took over hash ring node {node} (worker {VICTIM})" in new_log, new_log[-3000:]
    assert new_log.count(lab.REMOVED_CREATED_AT) == 1, "one _init_hash_ring try, no retry loop"
    assert server.lines(lab.CRITICAL_COUNT) == []
    assert server.lines(lab.BAD_LINE) == []
    assert len(lab.default_ranges()) == 1
    status, net = lab.create_network()
    assert status == 201, f"POST /v2.0/networks -> {status} {lab.error_type(net)}"
    assert net["provider:network_type"] == "geneve"
    assert lab.delete_network(str(net["id"])) == 204
    lab.assert_openstack_client_works("uWSGI + workerid, after kill -9")
    rc, out = lab.neutron_check()
    print(out)
    assert rc == 0 and "FAIL" not in out, out
    fig = figures(
        f"AFTER (workerid, {time.monotonic() - t_kill:.0f}s after kill)", server, offset, node
    )
    assert fig["rows"] == lab.PROCESSES and fig["took_over_after_kill"] == 1
