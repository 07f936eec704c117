"""Start-up time of Neutron's API: Apache mod_wsgi + workerid, uWSGI + workerid, plain uWSGI.

From the server start command to the first ``POST /v2.0/networks`` answered 201, for

* Apache mod_wsgi (``mod_wsgi-express``, 4 daemon processes, threads 1, server metrics) serving
  ``workerid.neutron.wsgi`` (the e2e test's deployment),
* uWSGI as upstream recommends (``bench/neutron_uwsgi.ini``: processes 4, master, lazy-apps,
  ``start-time = %t``, ``module = neutron.wsgi.api:application``, http-socket 127.0.0.1:9696),
  the reference, and
* the same uWSGI serving ``workerid.neutron.wsgi``: workerid's own cost, the server set apart,

same machine, same Neutron venv, interleaved runs, a freshly created database (and empty OVN NB)
before every run. Prints every run (with when, from the start command, Neutron's config was
loaded in the first worker, the default-range seeding began and ended, the first worker was
ready, and under workerid the first request that waited for the seeding), the medians, how many
runs answered 503 first, and each workerid variant's ratio to plain uWSGI (issue 14's target:
<= 1.0, and no 503). The release is the venv's (``NEUTRON_VENV``; 28.0.0 by default).

Needs what ``scripts/e2e-neutron.sh`` sets up (MariaDB + OVN running, workerid installed in
Neutron's venv); installs uWSGI into Neutron's venv if it is missing (it compiles). It uses the
end-to-end lab (``tests/e2e/lab``: servers, database, API), so it runs as a module from the
repository root, as root:

    cd /path/to/workerid && /opt/workerid/venv/bin/python -m bench.neutron_startup [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from pathlib import Path

try:
    from tests.e2e import lab
except ModuleNotFoundError as exc:  # run by path, or from another directory
    if exc.name not in ("tests", "tests.e2e"):
        raise
    sys.exit("run it from the repository root: python -m bench.neutron_startup")

HERE = Path(__file__).resolve().parent
WORK = lab.STATE / "bench"


def wait_port_free() -> None:
    lab.wait_for(lab.port_free, bool, 60, f"port {lab.PORT} to be free", every=0.2)


NEUTRON_LINE = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) (\d+) \w+ (.*)")


def milestones(log: Path, t0_wall: float) -> str:
    """Seconds from the start command to: Neutron's config loaded in the first worker, the
    seeding of the default ranges begun and done (in the seeding worker), the first worker ready
    (Neutron loaded, its post-fork initialisation done), and under workerid the first worker
    to log its identity ("serve": it can answer from then on) and the first request through
    the wait for the seeding where it allocates a segment ("waited"). Read from Neutron's own
    log lines (local time, milliseconds); workerid's go through Neutron's logging."""
    events: list[tuple[float, str, str]] = []
    for line in log.read_text(errors="replace").splitlines():
        m = NEUTRON_LINE.search(line)
        if m:
            stamp = time.mktime(time.strptime(m[1][:19], "%Y-%m-%d %H:%M:%S")) + float(m[1][19:])
            events.append((stamp - t0_wall, m[2], m[3]))
    found: dict[str, float] = {}
    seeder = None
    for at, pid, text in events:
        if "Logging enabled!" in text:
            found.setdefault("config", at)
        elif "Initializing driver network segment range support" in text and seeder is None:
            found["seed"], seeder = at, pid
        elif seeder == pid and "Loading Plugin:" in text and "seed" in found:
            found.setdefault("seeded", at)
        elif "WorkerService process has finished the post initialization" in text:
            found.setdefault("ready", at)
        elif "workerid: a network create waited" in text:
            found.setdefault("waited", at)
        elif "workerid: Neutron API worker " in text:
            found.setdefault("serve", at)
    names = ("config", "seed", "seeded", "ready", "serve", "waited")
    return "  ".join(f"{n} {found[n]:.2f}" if n in found else f"{n} -" for n in names)


def run_mod_wsgi() -> lab.FirstAnswer:
    wsgi = WORK / "neutron-api-workerid.wsgi"
    wsgi.write_text(lab.WORKERID_WSGI.format(etc=lab.ETC))
    os.chmod(wsgi, 0o644)
    server = lab.ExpressServer(WORK / "mod_wsgi", wsgi).setup()
    wait_port_free()
    with lab.running(server):
        t0, t0_wall = time.monotonic(), time.time()
        server.start()
        answer = lab.poll_first_post(t0, until_201=True)
    answer.detail = milestones(server.error_log, t0_wall)
    return answer


def run_uwsgi(ini: Path | None = None, name: str = "uwsgi") -> lab.FirstAnswer:
    server = lab.UwsgiServer(WORK / name, ini or HERE / "neutron_uwsgi.ini")
    wait_port_free()
    try:
        t0, t0_wall = time.monotonic(), time.time()
        server.start()
        answer = lab.poll_first_post(t0, until_201=True)
    finally:
        server.stop()
        wait_port_free()
    answer.detail = milestones(server.log, t0_wall)
    return answer


def run_uwsgi_workerid() -> lab.FirstAnswer:
    """The same uWSGI, serving ``workerid.neutron.wsgi``: workerid's own cost, server apart."""
    ini = lab.write_uwsgi_ini(WORK / "neutron-uwsgi-workerid.ini", lab.WORKERID_MODULE)
    return run_uwsgi(ini, "uwsgi-workerid")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each server (default 3)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("run as root")
    if not (lab.VENV / "bin/uwsgi").exists():
        lab.log("installing uWSGI into Neutron's venv (compiles, ~20 s)")
        lab.run([str(lab.VENV / "bin/pip"), "install", "-q", "uwsgi"], timeout=900)
        lab.run(["chmod", "-R", "a+rX", str(lab.VENV)])
    lab.run([str(lab.VENV / "bin/python"), "-c", "import workerid.neutron"])
    WORK.mkdir(parents=True, exist_ok=True)
    os.chmod(WORK, 0o755)

    servers = {
        "mod_wsgi+workerid": run_mod_wsgi,
        "uWSGI": run_uwsgi,
        "uWSGI+workerid": run_uwsgi_workerid,
    }
    times: dict[str, list[float]] = {name: [] for name in servers}
    unavailable: dict[str, int] = dict.fromkeys(servers, 0)
    print(f"{'run':>3}  {'server':<18} {'first 201':>9}  first answer was 201?")
    for i in range(1, args.runs + 1):
        # rotate which server goes first, so none always follows another
        names = list(servers)
        order = names[i % len(names) :] + names[: i % len(names)]
        for name in order:
            lab.recreate_database()
            result = servers[name]()
            times[name].append(result.seconds)
            unavailable[name] += any(e.startswith("503") for e in result.earlier)
            note = "; ".join(result.earlier[:3]) + (" ..." if len(result.earlier) > 3 else "")
            note = f"{len(result.earlier)} answers before it: {note}" if result.earlier else "yes"
            print(f"{i:>3}  {name:<18} {result.seconds:>8.2f}s  {note}", flush=True)
            print(f"{'':>3}  {'':<18} {'':>9}  ({result.detail})", flush=True)

    med = {name: statistics.median(values) for name, values in times.items()}
    print()
    for name, values in times.items():
        shown = ", ".join(f"{v:.2f}" for v in values)
        print(
            f"{name:<18} median {med[name]:.2f}s  min {min(values):.2f}s  runs [{shown}]  "
            f"503 first in {unavailable[name]} of {len(values)}"
        )
    for name in ("mod_wsgi+workerid", "uWSGI+workerid"):
        ratio = med[name] / med["uWSGI"]
        print(f"ratio {name} / uWSGI (medians): {ratio:.3f}  (target <= 1.0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
