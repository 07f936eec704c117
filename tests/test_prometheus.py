"""workerid.prometheus: prometheus_client's multiprocess files keyed by worker.

Each test runs a fresh interpreter (prometheus_client keeps its registry and
value class in module globals) that forks real workers, kills them with
SIGKILL, and reads the directory with prometheus_client's own
``MultiProcessCollector``, as a scrape does. What they specify:

* a worker's files carry its worker ID, so replacements continue them and the
  directory holds one set per ID, not per process;
* a dead worker's live gauges are retired by the process that takes its key;
* where workerid cannot prove an ID is the process's own (helpers, a degraded
  lock directory, a key in use, a hostile file), the key is the PID, and
  nothing is lost or shared;
* ``gc`` never changes what a scrape sums, except dead live gauges.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from helpers import env_for

pytest.importorskip("prometheus_client")

from workerid import cli
from workerid.prometheus import _files, collect_garbage, inspect

PRELUDE = """\
import json, os, signal, sys, time
import workerid.prometheus as wp
wp.install()
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.multiprocess import MultiProcessCollector
REQUESTS = Counter("requests", "requests")
IN_PROGRESS = Gauge("in_progress", "in progress", multiprocess_mode="livesum")
LATENCY = Histogram("latency", "latency")
OUT = {}

def scrape():
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    found = {}
    for metric in registry.collect():
        for s in metric.samples:
            found[s.name] = found.get(s.name, 0.0) + s.value
    return found

def fork(body):
    pid = os.fork()
    if pid == 0:
        try:
            body()
        finally:
            os._exit(0)
    return pid

def key():
    return wp.process_key()
"""


#: the files of a process that has all three metrics of PRELUDE (each made at 0
#: when the process takes its key, as upstream makes them at creation)
KINDS = ("counter", "gauge_livesum", "histogram")


def run(tmp: Path, code: str, timeout: float = 60, **env: str) -> dict[str, Any]:
    """Run ``code`` after PRELUDE in a fresh interpreter; what it put in ``OUT``."""
    metrics = tmp / "metrics"
    metrics.mkdir(exist_ok=True)
    full = PRELUDE + textwrap.dedent(code) + "\nprint('OUT=' + json.dumps(OUT))\n"
    environ = env_for(tmp / "locks", PROMETHEUS_MULTIPROC_DIR=str(metrics), **env)
    # Files, not pipes: a worker the test leaves alive keeps its copy of them.
    stdout, stderr = tmp / "stdout", tmp / "stderr"
    with stdout.open("wb") as o, stderr.open("wb") as e:
        proc = subprocess.run(
            [sys.executable, "-c", full],
            env=environ,
            stdout=o,
            stderr=e,
            timeout=timeout,
            check=False,
        )
    assert proc.returncode == 0, stderr.read_text()
    line = next(x for x in stdout.read_text().splitlines() if x.startswith("OUT="))
    out: dict[str, Any] = json.loads(line[4:])
    out["stderr"] = stderr.read_text()
    return out


def db_files(tmp: Path) -> list[str]:
    return sorted(p.name for p in (tmp / "metrics").iterdir() if p.name.endswith(".db"))


def test_replacements_continue_their_predecessors_files(tmp_path: Path) -> None:
    # 3 workers, each replaced 4 times in turn (a recycled worker exits and
    # the master forks another): 15 processes, 3 sets of files, every
    # increment counted.
    out = run(
        tmp_path,
        """
        def serve():
            for _ in range(10):
                REQUESTS.inc()
            time.sleep(0.3)  # live beside the next ones: 3 at a time, as a server's
            os.write(w, (key() + "\\n").encode())
        r, w = os.pipe()
        live = [fork(serve) for _ in range(3)]
        for _ in range(4):
            for i, pid in enumerate(live):
                os.waitpid(pid, 0)
                live[i] = fork(serve)
        for pid in live:
            os.waitpid(pid, 0)
        os.close(w)
        OUT["keys"] = sorted(set(os.read(r, 65536).decode().split()))
        OUT["total"] = scrape()["requests_total"]
        OUT["master"] = os.getpid()
        """,
    )
    assert out["total"] == 150
    assert [k.split("-")[0] for k in out["keys"]] == ["w1", "w2", "w3"]
    tag = out["keys"][0].split("-")[1]
    files = db_files(tmp_path)
    keys = [f"w{i}-{tag}" for i in (1, 2, 3)]
    assert [f for f in files if not f.startswith("gauge_live")] == sorted(
        f"{kind}_{key}.db" for key in keys for kind in ("counter", "histogram")
    )
    # the live gauges of workers found dead by a later worker's start are gone
    assert {f for f in files if f.startswith("gauge_live")} <= {
        f"gauge_livesum_{key}.db" for key in keys
    }
    # the master created the metrics but never wrote one: it left nothing
    assert not any(str(out["master"]) in p.name for p in (tmp_path / "metrics").iterdir())


def test_a_killed_workers_live_gauge_is_retired_by_its_replacement(tmp_path: Path) -> None:
    out = run(
        tmp_path,
        """
        r, w = os.pipe()
        def slow():
            REQUESTS.inc()
            IN_PROGRESS.inc()                 # a request in progress
            os.write(w, key().encode())
            time.sleep(60)
        victim = fork(slow)
        OUT["victim_key"] = os.read(r, 100).decode()
        OUT["before"] = scrape()["in_progress"]
        os.kill(victim, signal.SIGKILL)
        os.waitpid(victim, 0)
        OUT["after_kill"] = scrape()["in_progress"]   # nobody retired it yet
        def replacement():
            wp.activate()                     # what the gunicorn post_fork hook does
            os.write(w, key().encode())
            time.sleep(0.5)
        pid = fork(replacement)
        OUT["replacement_key"] = os.read(r, 100).decode()
        OUT["with_replacement"] = scrape()["in_progress"]
        os.waitpid(pid, 0)
        OUT["total"] = scrape()["requests_total"]
        """,
    )
    assert out["before"] == 1.0
    assert out["after_kill"] == 1.0
    assert out["replacement_key"] == out["victim_key"]
    assert out["with_replacement"] == 0.0
    assert out["total"] == 1.0  # the killed worker's count survives in its key's file


def test_first_write_of_a_replacement_retires_too(tmp_path: Path) -> None:
    # No hook (mod_wsgi, uvicorn, any pre-fork master): the replacement's
    # first use of a metric takes the key and retires the stale gauge.
    out = run(
        tmp_path,
        """
        r, w = os.pipe()
        def slow():
            IN_PROGRESS.inc(); os.write(w, b"x"); time.sleep(60)
        victim = fork(slow)
        os.read(r, 1)
        os.kill(victim, signal.SIGKILL); os.waitpid(victim, 0)
        def replacement():
            REQUESTS.inc(); os.write(w, b"x"); time.sleep(0.5)
        pid = fork(replacement)
        os.read(r, 1)
        OUT["in_progress"] = scrape()["in_progress"]
        os.waitpid(pid, 0)
        """,
    )
    assert out["in_progress"] == 0.0


def test_any_workers_start_sweeps_dead_keys_it_does_not_take(tmp_path: Path) -> None:
    # Worker 2 dies in a request while 1 lives; the next worker takes ID 2
    # only if it is free... here 3 starts while 2 is still held, then 2 is
    # killed: the next worker to start (any key) sweeps key 2's gauge.
    out = run(
        tmp_path,
        """
        r, w = os.pipe()
        def hold(gauge):
            def body():
                if gauge:
                    IN_PROGRESS.inc()
                else:
                    REQUESTS.inc()
                os.write(w, key().encode() + b"\\n"); time.sleep(60)
            return body
        first = fork(hold(False)); os.read(r, 100)
        second = fork(hold(True)); OUT["second"] = os.read(r, 100).decode().strip()
        os.kill(second, signal.SIGKILL); os.waitpid(second, 0)
        third = fork(hold(False)); OUT["third"] = os.read(r, 100).decode().strip()
        OUT["in_progress"] = scrape()["in_progress"]
        for pid in (first, third):
            os.kill(pid, signal.SIGKILL); os.waitpid(pid, 0)
        """,
    )
    # the third took ID 2 (lowest free), and with it the dead worker's key
    assert out["third"] == out["second"]
    assert out["in_progress"] == 0.0


def test_helpers_of_a_worker_write_under_their_own_pid(tmp_path: Path) -> None:
    # A helper reports its worker's ID (inherited) but must not write the
    # worker's files: both increment at once, nothing is lost.
    out = run(
        tmp_path,
        """
        import multiprocessing
        r, w = os.pipe()
        def spawned():
            import workerid.prometheus as wp2
            from prometheus_client import Counter as C
            wp2.install()
            c = C("requests", "requests")
            for _ in range(2000):
                c.inc()
            return wp2.process_key()
        def worker():
            REQUESTS.inc()
            mine = key()
            helper = fork(lambda: [REQUESTS.inc() for _ in range(2000)] and os.write(
                w, (key() + "\\n").encode()))
            for _ in range(2000):
                REQUESTS.inc()
            os.waitpid(helper, 0)
            os.write(w, (mine + "\\n").encode())
        os.waitpid(fork(worker), 0)
        os.close(w)
        OUT["keys"] = os.read(r, 1000).decode().split()
        OUT["total"] = scrape()["requests_total"]
        """,
    )
    helper_key, worker_key = out["keys"]
    assert worker_key.startswith("w1-")
    assert helper_key.isdigit()
    assert "a helper of worker 1" in out["stderr"]
    assert out["total"] == 4001


def test_spawned_child_of_a_worker_is_a_helper_too(tmp_path: Path) -> None:
    (tmp_path / "child.py").write_text(
        textwrap.dedent(
            """
            def run(q):
                import workerid.prometheus as wp
                wp.install()
                from prometheus_client import Counter
                c = Counter("requests", "requests")
                for _ in range(500):
                    c.inc()
                q.put(wp.process_key())
            """
        )
    )
    out = run(
        tmp_path,
        f"""
        import multiprocessing
        sys.path.insert(0, {str(tmp_path)!r})
        import child
        r, w = os.pipe()
        def worker():
            mine = key()
            ctx = multiprocessing.get_context("spawn")
            q = ctx.Queue()
            p = ctx.Process(target=child.run, args=(q,))
            p.start()
            for _ in range(500):
                REQUESTS.inc()
            theirs = q.get(timeout=30)
            p.join()
            os.write(w, f"{{mine}} {{theirs}}".encode())
        os.waitpid(fork(worker), 0)
        OUT["keys"] = os.read(r, 1000).decode().split()
        OUT["total"] = scrape()["requests_total"]
        """,
    )
    mine, theirs = out["keys"]
    assert mine.startswith("w1-")
    assert theirs.isdigit(), theirs
    assert out["total"] == 1000


def test_a_fork_without_python_at_fork_handlers_never_shares_files(tmp_path: Path) -> None:
    # uWSGI forks its workers in C and runs no Python at-fork handler (unless
    # --py-call-osafterfork): the children inherit the master's open files
    # and key as they are. libc's fork() through ctypes does the same.
    out = run(
        tmp_path,
        """
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        REQUESTS.inc()                        # the master writes: it has a key and files
        OUT["master_key"] = key()
        r, w = os.pipe()
        kids = []
        for _ in range(2):
            pid = libc.fork()
            if pid == 0:
                for _ in range(1000):
                    REQUESTS.inc()
                os.write(w, (key() + "\\n").encode())
                os._exit(0)
            kids.append(pid)
        for pid in kids:
            os.waitpid(pid, 0)
        os.close(w)
        OUT["kid_keys"] = os.read(r, 1000).decode().split()
        OUT["total"] = scrape()["requests_total"]
        """,
    )
    keys = [out["master_key"], *out["kid_keys"]]
    assert len(set(keys)) == 3, keys
    assert out["total"] == 2001


def test_degraded_lock_dir_falls_back_to_pids_and_counts_everything(tmp_path: Path) -> None:
    (tmp_path / "notadir").write_text("")
    out = run(
        tmp_path,
        """
        def serve():
            for _ in range(100):
                REQUESTS.inc()
        pids = [fork(serve) for _ in range(4)]
        for pid in pids:
            os.waitpid(pid, 0)
        OUT["pids"] = pids
        OUT["total"] = scrape()["requests_total"]
        """,
        WORKERID_DIR=str(tmp_path / "notadir"),
    )
    assert out["total"] == 400
    files = db_files(tmp_path)
    assert [f for f in files if not f.startswith("gauge_live")] == sorted(
        f"{kind}_{pid}.db" for pid in out["pids"] for kind in ("counter", "histogram")
    )
    assert "prometheus_client files keyed by" in out["stderr"]


def test_a_full_disk_keeps_the_app_serving_and_says_so(tmp_path: Path) -> None:
    # prometheus_client makes its files with ftruncate, which a full tmpfs
    # accepts; the first write to the mapping would then kill the worker
    # with SIGBUS. The worker must survive, and say what it did instead.
    mnt = tmp_path / "metrics"
    mnt.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
                       check=True, capture_output=True, timeout=10)  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot mount a tmpfs: {exc}")
    try:
        fd = os.open(mnt / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
        with contextlib.suppress(OSError):
            while os.write(fd, b"\0" * 4096):
                pass
        os.close(fd)
        out = run(
            tmp_path,
            """
            def worker():
                for _ in range(100):
                    REQUESTS.inc()
                    with IN_PROGRESS.track_inprogress():
                        pass
            pid = fork(worker)
            OUT["status"] = os.waitpid(pid, 0)[1]
            """,
        )
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False, capture_output=True, timeout=10)
    assert out["status"] == 0, f"the worker died: wait status {out['status']}"
    assert "cannot be written" in out["stderr"] and "in memory only" in out["stderr"]


def test_a_key_held_by_another_live_process_is_never_shared(tmp_path: Path) -> None:
    # Another process (a second server with the same lock dir and namespace)
    # holds the key worker 1 would use: worker 1 takes a PID key instead.
    out = run(
        tmp_path,
        """
        from workerid.prometheus import _files, _value
        ident = wp._identity.identity()
        r, w = os.pipe()
        def other():
            # not a workerid worker: it only holds the key's lock
            path = os.environ["PROMETHEUS_MULTIPROC_DIR"]
            tag = _value.namespace_tag(ident.lock_dir, ident.namespace)
            assert _files.acquire(path, f"w1-{tag}") is not None
            os.write(w, b"x"); time.sleep(30)
        squatter = fork(other); os.read(r, 1)
        def worker():
            REQUESTS.inc(); os.write(w, key().encode())
        os.waitpid(fork(worker), 0)
        OUT["key"] = os.read(r, 100).decode()
        OUT["total"] = scrape()["requests_total"]
        os.kill(squatter, signal.SIGKILL)
        """,
    )
    assert not out["key"].startswith("w"), out
    assert "is in use by another live process" in out["stderr"]
    assert out["total"] == 1


@pytest.mark.parametrize("kind", ["fifo", "symlink"])
def test_a_hostile_file_under_the_workers_key_is_not_opened(tmp_path: Path, kind: str) -> None:
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    target = tmp_path / "target"
    target.write_text("keep me")
    code = """
    from workerid.prometheus import _value
    ident = wp._identity.identity()
    tag = _value.namespace_tag(ident.lock_dir, ident.namespace)
    path = os.path.join(os.environ["PROMETHEUS_MULTIPROC_DIR"], f"counter_w1-{tag}.db")
    os.unlink(path)  # made at 0 when this process took worker 1's key on install()
    if KIND == "fifo":
        os.mkfifo(path)
    else:
        os.symlink(TARGET, path)
    def worker():
        REQUESTS.inc(); os.write(w, key().encode())
    r, w = os.pipe()
    os.waitpid(fork(worker), 0)
    OUT["key"] = os.read(r, 100).decode()
    # (no scrape here: prometheus_client's collector itself would block on the FIFO)
    """
    code = f"KIND = {kind!r}\nTARGET = {str(target)!r}\n" + textwrap.dedent(code)
    out = run(tmp_path, code, timeout=30)
    assert not out["key"].startswith("w"), out
    assert "not a regular file" in out["stderr"]
    assert target.read_text() == "keep me"


def test_a_master_that_was_worker_1_gives_the_key_to_its_first_child(tmp_path: Path) -> None:
    # install() in a process at the top of its tree makes it worker 1; when it
    # forks, it is a master, and its child takes ID 1 and the key with it.
    out = run(
        tmp_path,
        """
        OUT["master_key"] = key()
        r, w = os.pipe()
        def worker():
            REQUESTS.inc(); os.write(w, key().encode())
        os.waitpid(fork(worker), 0)
        OUT["child_key"] = os.read(r, 100).decode()
        """,
    )
    assert out["master_key"].startswith("w1-")
    assert out["child_key"] == out["master_key"]
    assert "in use" not in out["stderr"]


def test_metrics_made_before_install_are_named(tmp_path: Path) -> None:
    code = """
    import os, prometheus_client
    early = prometheus_client.Counter("early", "made before install")
    import workerid.prometheus
    workerid.prometheus.install()
    """
    env = env_for(tmp_path / "locks", PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "came after these metrics were created" in proc.stderr
    assert "early" in proc.stderr


def test_install_refuses_a_missing_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import workerid.prometheus as wp

    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    with pytest.raises(ValueError, match="no directory"):
        wp.install()
    with pytest.raises(ValueError, match="is not a directory"):
        wp.install(tmp_path / "absent")


# --- the directory: status, gc, mark_process_dead ------------------------------


def _dead_and_live(tmp: Path) -> dict[str, Any]:
    """Worker 1 alive in a request, worker 2 killed in one, a PID file of upstream's."""
    return run(
        tmp,
        """
        r, w = os.pipe()
        def slow():
            REQUESTS.inc(); IN_PROGRESS.inc(); os.write(w, key().encode() + b"\\n")
            time.sleep(60)
        live = fork(slow); OUT["live_key"] = os.read(r, 100).decode().strip()
        dead = fork(slow); OUT["dead_key"] = os.read(r, 100).decode().strip()
        os.kill(dead, signal.SIGKILL); os.waitpid(dead, 0)
        OUT["live_pid"], OUT["dead_pid"] = live, dead
        # a dead process of plain prometheus_client (PID key, no workerid lock)
        path = os.environ["PROMETHEUS_MULTIPROC_DIR"]
        from prometheus_client.mmap_dict import MmapedDict, mmap_key
        upstream = MmapedDict(os.path.join(path, "gauge_livesum_999999.db"))
        from workerid.prometheus._value import _write
        _write(upstream, mmap_key("in_progress", "in_progress", [], [], "in progress"), 5, 0)
        upstream.close()
        """,
    )


@pytest.fixture
def populated(tmp_path: Path) -> Any:
    out = _dead_and_live(tmp_path)
    yield tmp_path / "metrics", out
    os.kill(out["live_pid"], 9)


def _sums(path: Path) -> dict[str, float]:
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(path))
    found: dict[str, float] = {}
    for metric in registry.collect():
        for s in metric.samples:
            found[s.name] = found.get(s.name, 0.0) + s.value
    return found


def test_status_tells_live_dead_and_unmanaged_keys_apart(populated: Any) -> None:
    path, out = populated
    keys = {k.key: k for k in inspect(path)}
    assert keys[out["live_key"]].state == "live"
    assert keys[out["live_key"]].pid == out["live_pid"]
    assert keys[out["dead_key"]].state == "dead"
    assert keys[out["dead_key"]].removable == (f"gauge_livesum_{out['dead_key']}.db",)
    assert keys["999999"].state == "unmanaged"
    assert keys["999999"].removable == ()


def test_gc_removes_only_dead_live_gauges_and_keeps_every_total(populated: Any) -> None:
    path, out = populated
    before = _sums(path)
    # 1 live, 1 of the dead worker, 5 of a PID file nothing proves dead
    assert before["in_progress"] == 7.0
    assert collect_garbage(path, dry_run=True) == [f"gauge_livesum_{out['dead_key']}.db"]
    assert _sums(path) == before
    removed = collect_garbage(path)
    assert removed == [f"gauge_livesum_{out['dead_key']}.db"]
    after = _sums(path)
    assert after["in_progress"] == 6.0
    assert after["requests_total"] == before["requests_total"] == 2.0
    assert collect_garbage(path) == []


def test_mark_process_dead_retires_a_dead_worker_only(populated: Any) -> None:
    import workerid.prometheus as wp

    path, out = populated
    assert wp.mark_process_dead(out["live_pid"], path) == []
    assert wp.mark_process_dead(out["dead_pid"], path) == [f"gauge_livesum_{out['dead_key']}.db"]
    assert _sums(path)["in_progress"] == 6.0


def test_cli_status_and_gc(populated: Any, capsys: pytest.CaptureFixture[str]) -> None:
    path, out = populated
    assert cli.main(["prometheus", "status", "--dir", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    states = {k["key"]: k["state"] for k in report["keys"]}
    assert states[out["live_key"]] == "live"
    assert states[out["dead_key"]] == "dead"
    assert cli.main(["prometheus", "status", "--dir", str(path)]) == 0
    text = capsys.readouterr().out
    assert out["live_key"] in text and "live" in text
    assert cli.main(["prometheus", "gc", "--dir", str(path), "--dry-run"]) == 0
    assert f"gauge_livesum_{out['dead_key']}.db" in capsys.readouterr().out
    assert (path / f"gauge_livesum_{out['dead_key']}.db").exists()
    assert cli.main(["prometheus", "gc", "--dir", str(path)]) == 0
    assert not (path / f"gauge_livesum_{out['dead_key']}.db").exists()
    assert cli.main(["prometheus", "status", "--dir", str(path / "absent")]) == 1


def test_lock_files_are_not_followed_through_symlinks(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_text("keep")
    (tmp_path / _files.lock_name("w1-00000000")).symlink_to(target)
    with pytest.raises(OSError):
        _files.acquire(str(tmp_path), "w1-00000000", wait=0)
    assert _files.probe(str(tmp_path), "w1-00000000") is True  # not provably dead
    assert target.read_text() == "keep"
    assert stat.S_ISLNK(os.lstat(tmp_path / _files.lock_name("w1-00000000")).st_mode)


def test_file_names_parse_as_prometheus_client_writes_them() -> None:
    assert _files.parse_db("counter_w3-0a1b2c3d.db") == ("counter", None, "w3-0a1b2c3d")
    assert _files.parse_db("gauge_livesum_1234.db") == ("gauge", "livesum", "1234")
    assert _files.parse_db("gauge_livesum_a_b.db") is None
    assert _files.parse_db("other_1.db") is None
    assert _files.valid_key("w3-0a1b2c3d") and not _files.valid_key("w_3")
