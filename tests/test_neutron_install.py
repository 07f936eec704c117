"""workerid.neutron.install() against stand-in Neutron modules of 28.0.0's and master's shape.

The stand-ins have the signatures and call conventions of the real modules
(neutron/common/wsgi_utils.py, neutron/service.py, ML2 managers,
ovn_hash_ring_db); the real Neutron 28.0.0 with MariaDB and OVN runs in
tests/e2e (scripts/e2e-neutron.sh).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

WSGI_UTILS = """
FIRST_WORKER_ID = 1

def get_start_time(default=None, current_time=False):
    if not default and current_time:
        default = 1234567890
    default = int(default) if default else None
    try:
        import uwsgi
        start_time = uwsgi.opt.get("start-time")
        if not start_time:
            return default
        return int(start_time.decode(encoding="utf-8"))
    except ImportError:
        return default

def get_api_worker_id():
    try:
        import uwsgi
        return uwsgi.worker_id()
    except (ImportError, ModuleNotFoundError):
        return None
"""
MASTER_EXTRA = """
def get_api_worker_count():
    try:
        import uwsgi
        return uwsgi.numproc
    except (ImportError, ModuleNotFoundError):
        return None
"""
SERVICE = """
def _get_api_workers():
    return 2  # api_workers unset: the CPU count
"""
MANAGERS = """
import time
from neutron.common import wsgi_utils
SEEDED = []

class TypeManager:
    def initialize_network_segment_range_support(self, start_time):
        if wsgi_utils.get_api_worker_id() != wsgi_utils.FIRST_WORKER_ID:
            return
        time.sleep(0.3)  # 65,536 allocations take a while
        SEEDED.append(time.time())
"""
API = """
from neutron.plugins.ml2 import managers
managers.TypeManager().initialize_network_segment_range_support(99)
application = "neutron"
"""


def make_neutron(root: Path, *, master: bool) -> None:
    files = {
        "neutron/__init__.py": "",
        "neutron/common/__init__.py": "",
        "neutron/common/wsgi_utils.py": WSGI_UTILS + (MASTER_EXTRA if master else ""),
        "neutron/plugins/__init__.py": "",
        "neutron/plugins/ml2/__init__.py": "",
        "neutron/plugins/ml2/managers.py": MANAGERS,
        "neutron/wsgi/__init__.py": "",
        "neutron/wsgi/api.py": API,
    }
    if not master:  # master removed api_workers and service._get_api_workers
        files["neutron/service.py"] = SERVICE
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def run(root: Path, lock_dir: Path, body: str, env: dict[str, str] | None = None) -> str:
    script = f"import sys; sys.path.insert(0, {str(root)!r})\n" + textwrap.dedent(body)
    full = {"WORKERID_DIR": str(lock_dir), "PATH": "/usr/bin:/bin", **(env or {})}
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=full,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.parametrize("master", [False, True], ids=["28.0.0", "master"])
def test_install_before_import_answers_every_question(
    tmp_path: Path, lock_dir: Path, master: bool
) -> None:
    make_neutron(tmp_path, master=master)
    out = run(
        tmp_path,
        lock_dir,
        """
        import workerid, workerid.neutron
        assert workerid.neutron.install() is True
        assert workerid.neutron.install() is False  # idempotent
        from neutron.common import wsgi_utils
        from neutron.plugins.ml2 import managers
        print(wsgi_utils.get_api_worker_id(), wsgi_utils.get_api_worker_count())
        print(wsgi_utils.get_start_time() == workerid.start_time())
        print(wsgi_utils.get_start_time(default=5, current_time=True) == workerid.start_time())
        try:
            from neutron import service
            print(service._get_api_workers())
        except ImportError:
            print("no service")
        managers.TypeManager().initialize_network_segment_range_support(42)
        print(len(managers.SEEDED))
        """,
        env={"WORKERID_COUNT": "4"},
    )
    lines = out.splitlines()
    assert lines[0] == "1 4"
    assert lines[1:3] == ["True", "True"]
    assert lines[3] == ("no service" if master else "4")
    assert lines[4] == "1"


def test_start_time_keeps_neutrons_semantics_when_workerid_knows_nothing(
    tmp_path: Path, lock_dir: Path
) -> None:
    make_neutron(tmp_path, master=False)
    out = run(
        tmp_path,
        lock_dir,
        """
        import workerid, workerid.neutron
        from workerid import _identity
        workerid.neutron.install()
        from neutron.common import wsgi_utils
        _identity._cached = _identity.dataclasses.replace(workerid.identity(), start_time=None)
        print(wsgi_utils.get_start_time(), wsgi_utils.get_start_time(default=7))
        print(wsgi_utils.get_start_time(current_time=True))
        """,
    )
    assert out.splitlines() == ["None 7", "1234567890"]


def test_seeding_runs_once_and_no_worker_is_ready_before_it_is_done(
    tmp_path: Path, shared_tmp: Path
) -> None:
    """Four workers of one pre-fork master load Neutron (neutron.wsgi.api) at once."""
    make_neutron(tmp_path, master=False)
    seeds = shared_tmp / "seeds"
    out = run(
        tmp_path,
        shared_tmp / "locks",
        f"""
        import os, time, workerid, workerid.neutron
        workerid.neutron.install()
        hold_r, hold_w = os.pipe()  # workers keep their IDs until all have reported
        pids = []
        for _ in range(4):
            pid = os.fork()
            if pid == 0:
                os.close(hold_w)
                import neutron.wsgi.api  # loads Neutron; install() waits for seeding after it
                from neutron.plugins.ml2 import managers
                ready = time.time()
                seeded = managers.SEEDED[0] if managers.SEEDED else 0
                with open({str(seeds)!r}, "a") as f:
                    f.write(f"{{workerid.worker_id()}} {{seeded}} {{ready}}\\n")
                os.read(hold_r, 1)
                os._exit(0)
            pids.append(pid)
        deadline = time.time() + 30
        while time.time() < deadline:
            if os.path.exists({str(seeds)!r}) and len(open({str(seeds)!r}).readlines()) == 4:
                break
            time.sleep(0.05)
        os.close(hold_w)
        for pid in pids:
            os.waitpid(pid, 0)
        print("done")
        """,
    )
    assert out == "done"
    rows = [line.split() for line in seeds.read_text().splitlines()]
    assert sorted(r[0] for r in rows) == ["1", "2", "3", "4"]
    seeded = [float(r[1]) for r in rows if float(r[1]) > 0]
    assert len(seeded) == 1  # exactly one worker seeded
    assert all(float(r[2]) >= seeded[0] for r in rows)  # nobody was ready before it was done


def test_under_uwsgi_its_values_are_kept_and_the_count_fixed(
    tmp_path: Path, lock_dir: Path
) -> None:
    make_neutron(tmp_path, master=False)
    out = run(
        tmp_path,
        lock_dir,
        """
        import sys, types
        sys.modules["uwsgi"] = types.SimpleNamespace(
            worker_id=lambda: 3, numproc=4, masterpid=lambda: 1, started_on=1700000000,
            opt={"start-time": b"1700000007"},
        )
        import workerid.neutron
        print(workerid.neutron.install())
        from neutron.common import wsgi_utils
        from neutron import service
        wid, start = wsgi_utils.get_api_worker_id(), wsgi_utils.get_start_time()
        print(wid, start, service._get_api_workers())
        """,
    )
    # 28.0.0 alone would say 2 (api_workers unset: the CPUs), not uWSGI's 4 processes.
    assert out.splitlines() == ["True", "3 1700000007 4"]


def test_lock_dir_defaults_to_neutrons_lock_path(tmp_path: Path, shared_tmp: Path) -> None:
    conf = shared_tmp / "etc"
    conf.mkdir()
    lock_path = shared_tmp / "neutron-lock"
    lock_path.mkdir(mode=0o700)
    (conf / "neutron.conf").write_text(f"[oslo_concurrency]\nlock_path = {lock_path}\n")
    make_neutron(tmp_path, master=False)
    out = run(
        tmp_path,
        shared_tmp / "unused",
        """
        import os, workerid, workerid.neutron
        del os.environ["WORKERID_DIR"]
        workerid.neutron.install()
        print(workerid.identity().lock_dir)
        """,
        env={"OS_NEUTRON_CONFIG_DIR": str(conf)},
    )
    assert out == str(lock_path / "workerid")


def test_neutron_cli_prints_the_shipped_files() -> None:
    wsgi = subprocess.run(
        [sys.executable, "-m", "workerid", "neutron", "wsgi-path"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(wsgi).read_text().count("from workerid.neutron.wsgi import application") == 1
    site = subprocess.run(
        [sys.executable, "-m", "workerid", "neutron", "site-config"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"WSGIScriptAlias / {wsgi}" in site
    assert "server-metrics=On" in site and "processes=4" in site
    assert "@WSGI" not in site


def test_a_worker_other_than_1_seeds_when_it_loads_first(tmp_path: Path, shared_tmp: Path) -> None:
    """Under a lazily loaded WSGIScriptAlias, worker 1 may load Neutron only on a request."""
    make_neutron(tmp_path, master=False)
    out = run(
        tmp_path,
        shared_tmp / "locks",
        """
        import os, workerid, workerid.neutron
        workerid.neutron.install()
        ready_r, ready_w = os.pipe()
        hold_r, hold_w = os.pipe()
        first = os.fork()
        if first == 0:  # worker 1: elected, but never loads Neutron
            os.close(hold_w)
            workerid.worker_id()
            os.write(ready_w, b"x")
            os.read(hold_r, 1)
            os._exit(0)
        os.read(ready_r, 1)
        second = os.fork()
        if second == 0:
            from neutron.plugins.ml2 import managers
            managers.TypeManager().initialize_network_segment_range_support(7)
            print(workerid.worker_id(), len(managers.SEEDED), flush=True)
            os._exit(0)
        os.waitpid(second, 0)
        os.close(hold_w)
        os.waitpid(first, 0)
        """,
    )
    assert out == "2 1"
