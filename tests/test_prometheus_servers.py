"""workerid.prometheus under real gunicorn and Apache mod_wsgi, with real prometheus_client.

The app (``tests/helpers/promapp.py``) counts each ``/`` and serves the merged
metrics of every process on ``/metrics``. Workers are recycled every 20
requests (gunicorn ``--max-requests``, mod_wsgi ``maximum-requests``), the
server is reloaded in the middle (gunicorn ``HUP``, Apache graceful restart,
``SIGUSR1``), and what a user relies on is checked against a scrape:

* the counter total is exactly the number of requests answered;
* the directory stays bounded: at most 3 files (counter, histogram, live
  gauge) per key and at most 2N keys (N workers and N more overlapping them
  during a reload), against one set per process with prometheus_client's PID
  keys, measured side by side in the same test;
* a worker killed (``kill -9``) inside a slow request does not leave its
  in-progress gauge up once its replacement runs;
* with an unusable lock directory every request is still counted (PID keys).
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from helpers import TESTS, env_for, wait_for
from helpers.serving import find_program, free_port, mod_wsgi_skip, serving, tail, www_data

pytest.importorskip("prometheus_client")

from workerid.prometheus import inspect

pytestmark = pytest.mark.servers

WORKERS = 4
MAX_REQUESTS = 20
#: 2,000 requests recycle each server's workers 100 times, a reload in the middle: enough to
#: tell bounded files (<= BOUND) from a set per recycled process (>= 100). The figures in
#: bench/README.md are from WORKERID_TEST_RECYCLE_REQUESTS=10000 (about 3 minutes more).
REQUESTS = int(os.environ.get("WORKERID_TEST_RECYCLE_REQUESTS", "2000"))
#: files per key (counter, histogram, livesum gauge) x keys (N, plus N overlapping a reload)
BOUND = 3 * 2 * WORKERS

GUNICORN_PID_CONFIG = """\
from prometheus_client import multiprocess

def child_exit(server, worker):  # prometheus_client's documented gunicorn hook
    multiprocess.mark_process_dead(worker.pid)
"""


def get(port: int, path: str = "/", timeout: float = 30) -> bytes | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.read()  # type: ignore[no-any-return]
    except OSError:
        return None


def metric(port: int, name: str) -> float | None:
    body = get(port, "/metrics")
    if body is None:
        return None
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def hammer(port: int, total: int, midway: Any) -> int:
    """``total`` requests, 8 at a time; ``midway()`` after half. How many were answered."""
    answered = 0
    with ThreadPoolExecutor(8) as pool:
        for half in (total // 2, total - total // 2):
            answered += sum(r is not None for r in pool.map(lambda _: get(port), range(half)))
            if midway is not None:
                midway()
                midway = None
    return answered


def db_count(path: Path) -> int:
    return sum(1 for p in path.iterdir() if p.name.endswith(".db"))


class Site:
    """One server serving promapp with its own metrics and lock directories."""

    def __init__(self, root: Path, name: str, keying: str, **env: str) -> None:
        self.root = root / name
        self.metrics = self.root / "metrics"
        self.locks = self.root / "locks"
        for path in (self.root, self.metrics):
            path.mkdir(mode=0o755)
        shutil.copy(TESTS / "helpers" / "promapp.py", self.root / "promapp.py")
        self.port = free_port()
        self.log = self.root / "server.log"
        self.env = env_for(
            self.locks, PROMETHEUS_MULTIPROC_DIR=str(self.metrics), PROM_KEYING=keying, **env
        )
        self.keying = keying

    def ready(self, proc: Any) -> None:
        def up() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"server exited with {proc.returncode}:\n{tail(self.log)}")
            return get(self.port, timeout=5) is not None

        wait_for(up, "the server's first answer", timeout=60)


def gunicorn_argv(site: Site, *extra: str) -> list[str]:
    gunicorn = find_program("gunicorn")
    assert gunicorn is not None
    if site.keying == "workerid":
        config = "python:workerid.gunicorn"
    else:
        (site.root / "pid_conf.py").write_text(GUNICORN_PID_CONFIG)
        config = str(site.root / "pid_conf.py")
    return [str(gunicorn), "-w", str(WORKERS), "--max-requests", str(MAX_REQUESTS),
            "-b", f"127.0.0.1:{site.port}", "-c", config,
            *extra, "promapp:application"]  # fmt: skip


def mod_wsgi_argv(site: Site) -> list[str]:
    express = find_program("mod_wsgi-express")
    assert express is not None
    argv = [str(express), "start-server", str(site.root / "promapp.py"),
            "--processes", str(WORKERS), "--threads", "1",
            "--maximum-requests", str(MAX_REQUESTS), "--server-metrics",
            "--host", "127.0.0.1", "--port", str(site.port),
            "--server-root", str(site.root / "server"), "--log-to-terminal"]  # fmt: skip
    user = www_data() if os.geteuid() == 0 else None
    if user is not None:
        argv += ["--user", "www-data", "--group", "www-data"]
        site.locks.mkdir(mode=0o700)
        for path in (site.locks, site.metrics):
            os.chown(path, user.pw_uid, user.pw_gid)
    return argv


def apache_graceful(site: Site) -> None:
    pid = int((site.root / "server" / "httpd.pid").read_text())
    os.kill(pid, signal.SIGUSR1)


def _count(site: Site, argv: list[str], requests: int) -> tuple[int, float | None]:
    """Serve ``argv``, send ``requests`` requests: (answered, the scraped counter total)."""
    with serving(argv, site.root, site.env, site.log) as proc:
        site.ready(proc)
        answered = 1 + hammer(site.port, requests, None)  # + the readiness probe
        return answered, metric(site.port, "app_requests_total")


def _recycle_run(tmp: Path, server: str, keying: str) -> tuple[int, float | None, int, int]:
    """(answered, scraped total, .db files, keys) of one server under REQUESTS requests."""
    site = Site(tmp, f"{server}-{keying}", keying)
    argv = gunicorn_argv(site) if server == "gunicorn" else mod_wsgi_argv(site)
    with serving(argv, site.root, site.env, site.log) as proc:
        site.ready(proc)
        warmup = 1
        if server == "gunicorn":
            midway = lambda: os.kill(proc.pid, signal.SIGHUP)  # noqa: E731
        else:
            midway = lambda: apache_graceful(site)  # noqa: E731
        answered = warmup + hammer(site.port, REQUESTS, midway)
        total = metric(site.port, "app_requests_total")
    keys = len({k.key for k in inspect(site.metrics)})
    return answered, total, db_count(site.metrics), keys


def _side_by_side(tmp: Path, server: str) -> dict[str, tuple[int, float | None, int, int]]:
    """Both keyings at once, two servers side by side (recycling is mostly waiting)."""
    keyings = ("workerid", "pid")
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda k: _recycle_run(tmp, server, k), keyings))
    return dict(zip(keyings, results, strict=True))


def _check_bounded(server: str, runs: dict[str, tuple[int, float | None, int, int]]) -> None:
    answered, total, files, keys = runs["workerid"]
    pid_answered, pid_total, pid_files, _ = runs["pid"]
    print(
        f"\n{server}: {REQUESTS} requests, recycled every {MAX_REQUESTS}: workerid keys "
        f"{files} .db files ({keys} keys), counted {total} of {answered}; PID keys "
        f"{pid_files} .db files, counted {pid_total} of {pid_answered}"
    )
    assert answered > REQUESTS * 0.99, f"only {answered} answered"
    assert total == answered
    assert files <= BOUND, f"{files} files, bound {BOUND}"
    # the baseline: a set of files per recycled process
    assert pid_files >= REQUESTS // MAX_REQUESTS, pid_files
    assert pid_total == pid_answered


@pytest.mark.skipif(find_program("gunicorn") is None, reason="gunicorn not installed")
def test_gunicorn_recycling_counts_exactly_with_bounded_files(shared_tmp: Path) -> None:
    _check_bounded("gunicorn", _side_by_side(shared_tmp, "gunicorn"))


@pytest.mark.skipif(mod_wsgi_skip() is not None, reason=mod_wsgi_skip() or "")
def test_mod_wsgi_recycling_counts_exactly_with_bounded_files(shared_tmp: Path) -> None:
    _check_bounded("mod_wsgi", _side_by_side(shared_tmp, "mod_wsgi"))


def _slow_worker_killed(site: Site, argv: list[str]) -> None:
    with serving(argv, site.root, site.env, site.log) as proc:
        site.ready(proc)
        slow = threading.Thread(target=get, args=(site.port, "/slow?s=60", 90), daemon=True)
        slow.start()
        wait_for(lambda: metric(site.port, "app_in_progress") == 1.0, "the slow request")
        # The worker in the slow request: the one key whose live gauge is up.
        from prometheus_client.mmap_dict import MmapedDict

        def victim() -> int | None:
            for k in inspect(site.metrics):
                name = next((f for f in k.files if f.startswith("gauge_livesum_")), None)
                if name is None or k.state != "live":
                    continue
                values = MmapedDict.read_all_values_from_file(str(site.metrics / name))
                if any(entry[1] == 1.0 for entry in values):  # (key, value[, timestamp], pos)
                    return k.pid
            return None

        pid = wait_for(victim, "the slow request's worker")
        os.kill(pid, signal.SIGKILL)
        # Its replacement (or gunicorn's child_exit) retires the dead gauge.
        started = time.monotonic()
        wait_for(
            lambda: metric(site.port, "app_in_progress") == 0.0,
            f"app_in_progress back to 0 after kill -9 of {pid}",
            timeout=30,
        )
        print(f"\nin-progress gauge back to 0 {time.monotonic() - started:.2f}s after kill -9")
        assert proc.poll() is None


@pytest.mark.skipif(find_program("gunicorn") is None, reason="gunicorn not installed")
def test_gunicorn_kill_9_in_a_slow_request_retires_its_gauge(shared_tmp: Path) -> None:
    site = Site(shared_tmp, "gunicorn-kill", "workerid")
    _slow_worker_killed(site, gunicorn_argv(site, "--timeout", "120"))


@pytest.mark.skipif(mod_wsgi_skip() is not None, reason=mod_wsgi_skip() or "")
def test_mod_wsgi_kill_9_in_a_slow_request_retires_its_gauge(shared_tmp: Path) -> None:
    # No master hook here: the replacement daemon process, which imports the
    # app at start (WSGIImportScript), takes the key and retires the gauge.
    site = Site(shared_tmp, "mod_wsgi-kill", "workerid")
    _slow_worker_killed(site, mod_wsgi_argv(site))


@pytest.mark.skipif(find_program("gunicorn") is None, reason="gunicorn not installed")
def test_gunicorn_preload_master_leaves_no_files(shared_tmp: Path) -> None:
    # --preload: the arbiter imports the app (install() and the metrics run
    # there), then forks the workers; the arbiter never serves.
    site = Site(shared_tmp, "gunicorn-preload", "workerid")
    with serving(gunicorn_argv(site, "--preload"), site.root, site.env, site.log) as proc:
        site.ready(proc)
        answered = 1 + hammer(site.port, 1000, None)
        total = metric(site.port, "app_requests_total")
        master_files = [p.name for p in site.metrics.iterdir() if str(proc.pid) in p.name]
    assert total == answered
    assert master_files == []
    assert all(k.key.startswith("w") for k in inspect(site.metrics)), inspect(site.metrics)


@pytest.mark.skipif(find_program("uvicorn") is None, reason="uvicorn not installed")
def test_uvicorn_limit_max_requests_counts_exactly_with_worker_keys(shared_tmp: Path) -> None:
    # uvicorn's workers are multiprocessing spawn children of its supervisor,
    # which replaces each one after --limit-max-requests: workers, not helpers.
    site = Site(shared_tmp, "uvicorn", "workerid")
    uvicorn = find_program("uvicorn")
    argv = [str(uvicorn), "--workers", str(WORKERS), "--limit-max-requests", str(MAX_REQUESTS),
            "--interface", "wsgi", "--host", "127.0.0.1", "--port", str(site.port),
            "--no-access-log", "promapp:application"]  # fmt: skip
    answered, total = _count(site, argv, 1000)
    keys = {k.key for k in inspect(site.metrics)}
    print(f"\nuvicorn: {answered} answered, counted {total}, keys {sorted(keys)}")
    assert total == answered
    assert all(k.startswith("w") for k in keys), sorted(keys)
    assert db_count(site.metrics) <= BOUND


@pytest.mark.skipif(find_program("uwsgi") is None, reason="uWSGI not installed")
def test_uwsgi_forking_in_c_counts_exactly_with_worker_keys(shared_tmp: Path) -> None:
    # uWSGI loads the app in its master (no lazy-apps) and forks the workers
    # in C, running no Python at-fork handler; its own worker IDs key the files.
    site = Site(shared_tmp, "uwsgi", "workerid")
    uwsgi = find_program("uwsgi")
    argv = [str(uwsgi), "--master", "--processes", str(WORKERS),
            "--max-requests", str(MAX_REQUESTS), "--http-socket", f"127.0.0.1:{site.port}",
            "--wsgi-file", str(site.root / "promapp.py"), "--need-app",
            "--die-on-term", "--disable-logging"]  # fmt: skip
    answered, total = _count(site, argv, 2000)
    keys = {k.key for k in inspect(site.metrics)}
    print(f"\nuwsgi: {answered} answered, counted {total}, keys {sorted(keys)}")
    assert total == answered
    assert {k.split("-")[0] for k in keys} == {f"w{i}" for i in range(1, WORKERS + 1)}
    assert db_count(site.metrics) <= BOUND


@pytest.mark.skipif(find_program("gunicorn") is None, reason="gunicorn not installed")
def test_gunicorn_with_an_unusable_lock_dir_counts_every_request(shared_tmp: Path) -> None:
    blocker = shared_tmp / "not-a-dir"
    blocker.write_text("")
    site = Site(shared_tmp, "gunicorn-degraded", "workerid", WORKERID_DIR=str(blocker))
    answered, total = _count(site, gunicorn_argv(site), 2000)
    assert total == answered
    assert all(k.key.isdigit() for k in inspect(site.metrics))
    assert "prometheus_client files keyed by" in site.log.read_text()
