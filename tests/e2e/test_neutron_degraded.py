"""Issue 6's degraded proof: workerid's entry point under mod_wsgi-express (4 daemon processes,
WSGIImportScript) with a lock directory the neutron user cannot use. Run by
``bash scripts/e2e-neutron.sh`` (WORKERID_E2E=1).

The lock directory is the default one, ``<lock_path>/workerid`` = /var/lib/neutron/lock/workerid,
made root-owned 0755 before Apache starts (what an earlier run of a workerid command as root
leaves behind), and removed again afterwards. Without it no worker has an ID, so ``once()`` runs
the ML2 default segment range seeding in every worker (4 workers racing on MariaDB); the start
time falls back to Apache's ``restart_time`` (server metrics on), the same in every worker, so
the unique constraint ``uniq_network_segment_ranges`` keeps it to one range. Three cold starts,
each from a freshly created ``neutron`` database, to catch a race that only shows sometimes.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import time
from pathlib import Path

import pytest

from . import lab

pytestmark = pytest.mark.e2e

WORK = Path(os.environ.get("WORKERID_E2E_DIR", str(lab.STATE / "e2e")))
SEEDED = "workerid: seeded the ML2 default segment ranges"
NEUTRON_SEEDS = "Initializing driver network segment range support for type 'geneve'"
EVERY_WORKER = "no usable lock directory and no worker ID; running it in every worker"
GENEVE = lab.GENEVE
#: what would mean the concurrent seeding went wrong. (Not every ERROR: this deployment logs a
#: few benign ones in every mode, workerid or not: the auto-allocated-topology extension, no
#: memcache module, the Nova notifier without Keystone.)
TROUBLE = re.compile(
    r"(ERROR|CRITICAL).*(segment|allocation|type_tunnel|oslo_db)|Duplicate entry|DBDuplicateEntry"
    r"|IntegrityError|Deadlock|Lock wait timeout|retry limit"
)


def test_degraded_cold_starts() -> None:
    results = [cold_start(attempt) for attempt in (1, 2, 3)]
    for attempt, fig in enumerate(results, 1):
        lab.log(f"degraded cold start {attempt}: {fig}")
    failures = [fig["problems"] for fig in results if fig["problems"]]
    assert failures == [], failures


def cold_start(attempt: int) -> dict[str, object]:
    """One cold start; its figures, with what went wrong in "problems" (checked by the caller,
    so that all three starts run and are reported)."""
    lab.recreate_database()  # also removes the lock directory
    WORK.mkdir(parents=True, exist_ok=True)
    os.chmod(WORK, 0o755)
    wsgi = WORK / "neutron-api-workerid.wsgi"
    wsgi.write_text(lab.WORKERID_WSGI.format(etc=lab.ETC))
    os.chmod(wsgi, 0o644)
    lock = lab.WORKERID_DIR
    lock.mkdir(mode=0o755)
    os.chmod(lock, 0o755)  # root:root 0755: the neutron user can read, not write
    st = lock.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o755)
    server = lab.ExpressServer(WORK / "degraded", wsgi).setup()
    problems: list[str] = []
    try:
        with lab.running(server):
            t0 = time.monotonic()
            server.start()
            first = lab.poll_first_post(t0, until_201=True)
            server.wait_daemons()
            lab.wait_for(
                lambda: server.log_since(0).count("WorkerService process has finished"),
                lambda n: n >= lab.PROCESSES,
                90,
                "4 workers initialised",
            )
            time.sleep(1)
            log = server.log_since(0)
            ranges = lab.default_ranges()
            allocations = int(lab.sql("SELECT COUNT(*) FROM ml2_geneve_allocations")[0][0])
            rows = lab.ring()
            status, net = lab.create_network()
            post = f"{status} {lab.error_type(net)}"
            if status == 201:
                post = f"201 {net['provider:network_type']} {net['provider:segmentation_id']}"
                lab.delete_network(str(net["id"]))
    finally:
        shutil.rmtree(lock, ignore_errors=True)  # restore: absent, as recreate_database leaves it

    trouble = [line for line in log.splitlines() if TROUBLE.search(line)]
    fig: dict[str, object] = {
        "first": f"{first.status} at {first.seconds:.2f}s"
        + (f" after {first.earlier}" * bool(first.earlier)),
        "ranges": [(r.network_type, r.minimum, r.maximum, str(r.created_at)) for r in ranges],
        "allocations": allocations,
        "workerid_seeded": log.count(SEEDED),
        "neutron_seeded": log.count(NEUTRON_SEEDS),
        "every_worker_warnings": log.count(EVERY_WORKER),
        "ring_rows": len(rows),
        "ring_created_at": sorted({str(r.created_at) for r in rows}),
        "critical": len(lab.CRITICAL_COUNT.findall(log)),
        "trouble": trouble,
        "error_lines_any": len(re.findall(r" ERROR ", log)),
        "post": post,
    }
    warning = f"lock directory {lock} is unusable"
    fix = "Fix: make it a directory owned by uid"
    if first.earlier:
        problems.append(f"answers before the first 201: {first.earlier}")
    if first.body.get("provider:network_type") != "geneve":
        problems.append(f"first 201 is not geneve: {first.body}")
    if [(r.network_type, r.minimum, r.maximum) for r in ranges] != [GENEVE]:
        problems.append(f"default ranges: {ranges}")
    if allocations != GENEVE[2]:
        problems.append(f"{allocations} geneve allocations")
    if log.count(SEEDED) < 1 or log.count(NEUTRON_SEEDS) < 1:
        problems.append("no seeding logged")
    if not any(warning in line and fix in line for line in log.splitlines()):
        problems.append(f"no warning {warning!r} ... {fix!r} in {server.error_log}")
    if log.count(EVERY_WORKER) < 1:
        problems.append(f"no {EVERY_WORKER!r} warning")
    if trouble:
        problems.append(f"{len(trouble)} error lines")
    if status != 201:
        problems.append(f"POST after start: {post}")
    fig["problems"] = problems
    lab.log(f"degraded cold start {attempt}: {fig}")
    return fig
