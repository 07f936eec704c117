"""workerid.neutron.install() against stand-in Neutron modules of each release's shape.

Shapes: 28.0.0 (uWSGI's worker ID, ``service._get_api_workers``), master of
2026-08 (``get_api_worker_count`` added, ``api_workers`` gone) and 29.0.0
(``is_first_api_worker``, argument-less ``get_start_time``, node UUIDs from the
PID); 26.0.x and 27.0.x have 28.0.0's shape except for the ML2 guard
(``TypeManager.initialize_network_segment_range_support``): none in 26.0.0,
28.0.0's in 27.0.x (and 26.0.1, 26.0.2), one that lets a missing worker ID
through in 26.0.3 and later (26.0.6 on PyPI), and 26.0.0 has no
``FIRST_WORKER_ID``. The stand-ins have the signatures and call conventions of the real
modules (neutron/common/wsgi_utils.py, neutron/service.py, ML2 managers,
ovn_hash_ring_db); the real 28.0.0 and 29.0.0 run with MariaDB and OVN in
tests/e2e (scripts/e2e-neutron.sh), their module source in
tests/e2e/test_neutron_modules.py.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

#: this tree's src/, for the subprocesses (the venv may hold another copy of workerid)
SRC = Path(__file__).resolve().parent.parent / "src"

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
WSGI_UTILS_29 = """
import os, tempfile, time

_first_worker_result = None
_start_time = None

def _write_temp_file(file_name, content):
    path = os.path.join(tempfile.gettempdir(), file_name + str(os.getppid()))
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        os.write(fd, content.encode())
        os.close(fd)
        return True, path
    except FileExistsError:
        return False, path

def get_start_time():
    global _start_time
    if _start_time is None:
        written, path = _write_temp_file("neutron_start_time", str(int(time.time())))
        _start_time = int(open(path).read())
    return _start_time

def get_api_worker_count():
    try:
        import uwsgi
        return uwsgi.numproc
    except (ImportError, ModuleNotFoundError):
        return None

def is_first_api_worker():
    global _first_worker_result
    if _first_worker_result is None:
        _first_worker_result, _ = _write_temp_file("neutron_first_worker", str(os.getpid()))
    return _first_worker_result
"""
HASH_RING_DB = """
import uuid
NS = uuid.UUID("551ea055-1982-4295-8bc7-207a0d3c9231")

def get_node_uuid(group_name, host, worker_id):
    return uuid.uuid5(NS, "{}{}{}".format(group_name, host, str(worker_id))).hex

def add_node(context, group_name, node_uuid, created_at=None):
    return node_uuid
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
@GUARD@
        time.sleep(0.3)  # 65,536 allocations take a while
        SEEDED.append(time.time())
"""
#: the ML2 guard of each shape (neutron/plugins/ml2/managers.py at the tag, lines cited)
GUARDS = {
    # 28.0.0 L193 (also 27.0.0-27.0.3 L193, 26.0.1 L193; commit 39d95a14e2 / f873d55efc)
    "28.0.0": """
        if wsgi_utils.get_api_worker_id() != wsgi_utils.FIRST_WORKER_ID:
            return
""",
    # 29.0.0 L195
    "29.0.0": """
        if not wsgi_utils.is_first_api_worker():
            return
""",
    # 26.0.0 L207-L212: no guard, every worker seeds
    "26.0.0": "",
    # 26.0.5 L193-L198 (stable-only 23ba73e8d4, first in 26.0.3; 26.0.6 the same)
    "26.0.6": """
        w_id = wsgi_utils.get_api_worker_id()
        if w_id != wsgi_utils.FIRST_WORKER_ID and w_id is not None:
            return
""",
}
API = """
from neutron.plugins.ml2 import managers
managers.TypeManager().initialize_network_segment_range_support(99)
application = "neutron"
"""


SHAPES = ["28.0.0", "master-2026-08", "29.0.0", "26.0.0", "26.0.6", "27.0.4"]
#: the shapes with ``service._get_api_workers`` (removed after 28.0.x)
SERVICE_SHAPES = ("26.0.0", "26.0.6", "27.0.4", "28.0.0")


def make_neutron(root: Path, shape: str = "28.0.0") -> None:
    assert shape in SHAPES, shape
    utils = {
        "28.0.0": WSGI_UTILS,
        "27.0.4": WSGI_UTILS,  # 27.0.3 wsgi_utils.py = 28.0.0's
        "26.0.6": WSGI_UTILS,  # 26.0.5 L22 FIRST_WORKER_ID, L26 get_start_time, L54 worker ID
        # 26.0.0: no FIRST_WORKER_ID yet (added by f873d55efc, 26.0.1)
        "26.0.0": WSGI_UTILS.replace("FIRST_WORKER_ID = 1\n", ""),
        "master-2026-08": WSGI_UTILS + MASTER_EXTRA,
        "29.0.0": WSGI_UTILS_29,
    }[shape]
    guard = GUARDS.get(shape, GUARDS["28.0.0"]).strip("\n")
    files = {
        "neutron/__init__.py": "",
        "neutron/common/__init__.py": "",
        "neutron/common/wsgi_utils.py": utils,
        "neutron/db/__init__.py": "",
        "neutron/db/ovn_hash_ring_db.py": HASH_RING_DB,
        "neutron/plugins/__init__.py": "",
        "neutron/plugins/ml2/__init__.py": "",
        "neutron/plugins/ml2/managers.py": MANAGERS.replace("@GUARD@", guard),
        "neutron/wsgi/__init__.py": "",
        "neutron/wsgi/api.py": API,
    }
    if shape in SERVICE_SHAPES:  # later removed api_workers and service._get_api_workers
        files["neutron/service.py"] = SERVICE
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def run(root: Path, lock_dir: Path, body: str, env: dict[str, str] | None = None) -> str:
    script = f"import sys; sys.path.insert(0, {str(root)!r})\n" + textwrap.dedent(body)
    # TMPDIR: 29.0.0-shaped modules fall back to election files in the temp dir.
    # PYTHONPATH: this tree's workerid, not whatever copy the venv has installed.
    full = {
        "WORKERID_DIR": str(lock_dir),
        "PATH": "/usr/bin:/bin",
        "TMPDIR": str(root),
        "PYTHONPATH": str(SRC),
    }
    full.update(env or {})
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


@pytest.mark.parametrize("shape", SHAPES)
def test_install_before_import_answers_every_question(
    tmp_path: Path, lock_dir: Path, shape: str
) -> None:
    make_neutron(tmp_path, shape)
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
        if hasattr(wsgi_utils, "is_first_api_worker"):  # 29.0.0: no arguments
            print(wsgi_utils.is_first_api_worker())
        else:
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
    assert lines[3] == ("4" if shape in SERVICE_SHAPES else "no service")
    assert lines[4] == "1"


def test_start_time_keeps_neutrons_semantics_when_workerid_knows_nothing(
    tmp_path: Path, lock_dir: Path
) -> None:
    make_neutron(tmp_path)
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


def test_under_uwsgi_its_values_are_kept_and_the_count_fixed(
    tmp_path: Path, lock_dir: Path
) -> None:
    make_neutron(tmp_path)
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
    make_neutron(tmp_path)
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


@pytest.mark.parametrize("shape", SHAPES)
def test_a_worker_other_than_1_seeds_when_it_loads_first(
    tmp_path: Path, shared_tmp: Path, shape: str
) -> None:
    """Under a lazily loaded WSGIScriptAlias, worker 1 may load Neutron only on a request."""
    make_neutron(tmp_path, shape)
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


FORK_TWO_WORKERS = """
import os, workerid, workerid.neutron
workerid.neutron.install()
from neutron.common import wsgi_utils
from neutron.db import ovn_hash_ring_db as db
{prelude}
hold_r, hold_w = os.pipe()  # both workers keep their IDs until both have answered
done_r, done_w = os.pipe()
pids = []
for _ in range(2):
    pid = os.fork()
    if pid == 0:
        os.close(hold_w)
        line = " ".join(str(x) for x in ({answers}))
        os.write(done_w, (line + "\\n").encode())
        os.read(hold_r, 1)
        os._exit(0)
    pids.append(pid)
os.close(done_w)
lines = b""
while lines.count(b"\\n") < 2:
    lines += os.read(done_r, 4096)
os.close(hold_w)
for pid in pids:
    os.waitpid(pid, 0)
print(lines.decode().strip())
"""


def fork_two_workers(
    root: Path, lock_dir: Path, answers: str, tmp: Path, prelude: str = ""
) -> list[list[str]]:
    """Two workers of one pre-fork master; each prints ``answers`` (a tuple expression)."""
    out = run(
        root,
        lock_dir,
        FORK_TWO_WORKERS.format(answers=answers, prelude=prelude),
        env={"WORKERID_COUNT": "2", "TMPDIR": str(tmp)},
    )
    return sorted(line.split() for line in out.splitlines())


def test_29_first_worker_is_workerids_worker_1(tmp_path: Path, shared_tmp: Path) -> None:
    make_neutron(tmp_path, "29.0.0")
    (shared_tmp / "tmp").mkdir()
    rows = fork_two_workers(
        tmp_path,
        shared_tmp / "locks",
        "workerid.worker_id(), wsgi_utils.is_first_api_worker()",
        shared_tmp / "tmp",
    )
    assert rows == [["1", "True"], ["2", "False"]]
    # workerid answered: 29.0.0's own O_EXCL election file was never made
    assert list((shared_tmp / "tmp").iterdir()) == []


def test_29_degraded_falls_back_to_neutrons_own_election(tmp_path: Path, shared_tmp: Path) -> None:
    make_neutron(tmp_path, "29.0.0")
    (shared_tmp / "tmp").mkdir()
    unusable = shared_tmp / "not-a-dir"
    unusable.write_text("")
    rows = fork_two_workers(
        tmp_path,
        unusable,
        "workerid.worker_id(), wsgi_utils.is_first_api_worker(), wsgi_utils.get_start_time()",
        shared_tmp / "tmp",
    )
    assert [r[0] for r in rows] == ["None", "None"]
    assert sorted(r[1] for r in rows) == ["False", "True"]  # exactly one, by Neutron's file
    assert rows[0][2] == rows[1][2] != "None"  # a start time all the same
    names = sorted(p.name.rstrip("0123456789") for p in (shared_tmp / "tmp").iterdir())
    assert names == ["neutron_first_worker"]  # workerid's own start time served, not the file


def test_29_hash_ring_node_named_after_the_worker_id_not_the_pid(
    tmp_path: Path, shared_tmp: Path
) -> None:
    """29.0.0 passes os.getpid(); with an elected ID the node is named after the ID."""
    make_neutron(tmp_path, "29.0.0")
    (shared_tmp / "tmp").mkdir()
    rows = fork_two_workers(
        tmp_path,
        shared_tmp / "locks",
        "workerid.worker_id(), "
        "db.get_node_uuid('g', 'h', os.getpid()) == by_id('g', 'h', workerid.worker_id()), "
        "db.get_node_uuid('g', 'h', 7) == by_id('g', 'h', 7)",
        shared_tmp / "tmp",
        prelude="by_id = db.get_node_uuid.__wrapped__",
    )
    assert rows == [["1", "True", "True"], ["2", "True", "True"]]


@pytest.mark.parametrize(
    ("shape", "seeders"),
    # without install(), four workers of a pre-fork master that is not uWSGI: 26.0.0 and 26.0.6
    # seed in every worker, 27.0.4 and 28.0.0 in none (LP: #2150285), 29.0.0 in the first
    [("26.0.0", 4), ("26.0.6", 4), ("27.0.4", 0), ("28.0.0", 0), ("29.0.0", 1)],
)
def test_without_install_each_shape_has_its_releases_fault(
    tmp_path: Path, lock_dir: Path, shape: str, seeders: int
) -> None:
    make_neutron(tmp_path, shape)
    out = run(
        tmp_path,
        lock_dir,
        """
        import os
        r, w = os.pipe()
        pids = []
        for _ in range(4):
            pid = os.fork()
            if pid == 0:
                from neutron.plugins.ml2 import managers
                managers.TypeManager().initialize_network_segment_range_support(1)
                os.write(w, b"%d\\n" % len(managers.SEEDED))
                os._exit(0)
            pids.append(pid)
        for pid in pids:
            os.waitpid(pid, 0)
        os.close(w)
        print(sum(int(x) for x in os.fdopen(r).read().split()))
        """,
    )
    assert out == str(seeders)


#: neutron_lib.db.api's writer, with an engine whose GET_LOCK is an flock on a shared file
FAKE_DB_API = """
import fcntl, os, time
LOG = os.environ["FAKE_DB_LOG"]


def _note(what):
    with open(LOG, "a") as f:
        f.write(f"{os.getpid()} {what} {time.time()}\\n")


class _Result:
    def __init__(self, value):
        self.value = value

    def scalar(self):
        return self.value


class _Conn:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def exec_driver_sql(self, sql, params):
        if sql.startswith("SELECT GET_LOCK("):
            self.fd = os.open(LOG + ".lock", os.O_CREAT | os.O_RDWR)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            _note("lock " + params[0])
            return _Result(1)
        assert sql.startswith("SELECT RELEASE_LOCK("), sql
        _note("release " + params[0])
        os.close(self.fd)
        return _Result(1)


class _Engine:
    class dialect:
        name = "mysql"

    def connect(self):
        return _Conn()


class _Writer:
    def get_engine(self):
        return _Engine()


CONTEXT_WRITER = _Writer()
"""
#: neutron/db/models/network_segment_range.py: 28.0.0's table has
#: UniqueConstraint('default', 'network_type', 'physical_network', 'minimum', 'maximum',
#: name='uniq_network_segment_ranges') (L69); 26.0.x and 27.0.x's has none
FAKE_RANGE_MODEL = """
import types


class Constraint:
    def __init__(self, *names):
        self.columns = [types.SimpleNamespace(name=name) for name in names]


class UniqueConstraint(Constraint):
    pass


class PrimaryKeyConstraint(Constraint):
    pass


class _Table:
    constraints = {@CONSTRAINTS@}


class NetworkSegmentRange:
    __table__ = _Table()
"""


@pytest.mark.parametrize(
    ("shape", "unique"), [("26.0.6", False), ("27.0.4", False), ("28.0.0", True)]
)
def test_degraded_seeding_is_serialised_where_ranges_are_not_unique(
    tmp_path: Path, shared_tmp: Path, shape: str, unique: bool
) -> None:
    """No usable lock directory: once() runs the seeding in every worker. On 26.0.x/27.0.x
    (no unique constraint) one worker at a time, under a database lock; on 28.0.0 as before."""
    make_neutron(tmp_path, shape)
    for name, text in {
        "neutron_lib/__init__.py": "",
        "neutron_lib/db/__init__.py": "",
        "neutron_lib/db/api.py": FAKE_DB_API,
        "neutron/db/models/__init__.py": "",
        "neutron/db/models/network_segment_range.py": FAKE_RANGE_MODEL.replace(
            "@CONSTRAINTS@",
            # every release: PrimaryKeyConstraint('id'), UniqueConstraint('standard_attr_id')
            "PrimaryKeyConstraint('id'), UniqueConstraint('standard_attr_id')"
            + (
                ", UniqueConstraint('default', 'network_type', 'physical_network', 'minimum',"
                " 'maximum')"
                if unique
                else ""
            ),
        ),
    }.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    unusable = shared_tmp / "not-a-dir"
    unusable.write_text("")
    events = shared_tmp / "events"
    out = run(
        tmp_path,
        unusable,
        """
        import os, workerid, workerid.neutron
        workerid.neutron.install()
        import neutron.db.models.network_segment_range  # Neutron has loaded it by then
        pids = []
        for _ in range(3):
            pid = os.fork()
            if pid == 0:
                from neutron.plugins.ml2 import managers
                managers.TypeManager().initialize_network_segment_range_support(1)
                with open(os.environ["FAKE_DB_LOG"], "a") as f:
                    f.write(f"{os.getpid()} seeded {managers.SEEDED[0]}\\n")
                os._exit(0)
            pids.append(pid)
        for pid in pids:
            os.waitpid(pid, 0)
        print(workerid.worker_id())
        """,
        env={"FAKE_DB_LOG": str(events)},
    )
    assert out == "None", out  # degraded: no worker ID
    lines = [line.split() for line in events.read_text().splitlines()]
    seeded = sorted(float(line[2]) for line in lines if line[1] == "seeded")
    assert len(seeded) == 3  # every worker seeds
    locks = [line for line in lines if line[1] in ("lock", "release")]
    if unique:
        assert locks == []  # 28.0.0: untouched
        return
    assert {line[2] for line in locks} == {"workerid.neutron.ml2.segment-ranges"}, lines
    # one at a time: lock, release, lock, release, ... each seeding inside its own lock
    assert [line[1] for line in locks] == ["lock", "release"] * 3
    spans = [
        (float(locks[i][3]), float(locks[i + 1][3]), locks[i][0]) for i in range(0, len(locks), 2)
    ]
    for (_, released, _), (taken, _, _) in itertools.pairwise(spans):
        assert released <= taken
    by_pid = {line[0]: float(line[2]) for line in lines if line[1] == "seeded"}
    for taken, released, pid in spans:
        assert taken <= by_pid[pid] <= released


#: Ml2Plugin's shape at 26.0.x-29.0.x (neutron/plugins/ml2/plugin.py, L1219-L1316 at 28.0.0):
#: create_network and _create_bulk_ml2 call _before_create_network before the transaction that
#: allocates the segments. Each step is written to FAKE_EVENTS: "before" (the BEFORE_CREATE
#: callbacks), then "allocate" (where the transaction would read the ranges).
PLUGIN = """
import os, time

def _note(what):
    with open(os.environ["FAKE_EVENTS"], "a") as f:
        f.write(f"{what} {os.getpid()} {time.time()}\\n")

class Ml2Plugin:
    def _before_create_network(self, context, network):
        _note("before")

    def create_network(self, context, network):
        self._before_create_network(context, network)
        _note("allocate")
        return network
"""
#: neutron/services/segments/db.py L88-L94: create_segment opens _create_segment_db's transaction
SEGMENTS_DB = """
import os, time

class SegmentDbMixin:
    def create_segment(self, context, segment):
        with open(os.environ["FAKE_EVENTS"], "a") as f:
            f.write(f"allocate {os.getpid()} {time.time()}\\n")
        return segment
"""
#: a seeding that lasts until FAKE_CALLERS workers are about to allocate a segment (at most
#: 10 s), so that they are serving *while* it runs whatever the timing
MANAGERS_WAITS_FOR_CALLERS = """
import os, time
from neutron.common import wsgi_utils
SEEDED = []

class TypeManager:
    def initialize_network_segment_range_support(self, start_time):
@GUARD@
        events, deadline = os.environ["FAKE_EVENTS"], time.time() + 10
        while time.time() < deadline:
            with open(events) as f:
                if f.read().count("calling ") >= int(os.environ["FAKE_CALLERS"]):
                    break
            time.sleep(0.02)
        if os.environ.get("FAKE_KILL_SEEDER") and not os.path.exists(events + ".first"):
            open(events + ".first", "w").close()
            with open(events, "a") as f:
                f.write(f"seeding {os.getpid()} {time.time()}\\n")
            time.sleep(60)  # the test's kill -9 comes here
        SEEDED.append(time.time())
        with open(events, "a") as f:
            f.write(f"seeded {os.getpid()} {time.time()}\\n")

    def allocate_dynamic_segment(self, context, network_id, segment):
        with open(os.environ["FAKE_EVENTS"], "a") as f:
            f.write(f"allocate {os.getpid()} {time.time()}\\n")
        return segment
"""
#: each worker loads Neutron, says it serves ("ready"), then makes its first allocation, by
#: the entry point {call}
FORK_FOUR_SERVERS = """
import logging, os, time, workerid, workerid.neutron
logging.basicConfig(filename={log!r}, level=logging.INFO, format="%(process)d %(message)s")
workerid.neutron.install()
hold_r, hold_w = os.pipe()  # workers keep their IDs until all have reported
pids = []
for _ in range(4):
    pid = os.fork()
    if pid == 0:
        os.close(hold_w)
        import neutron.wsgi.api  # loads Neutron (the first to get there seeds)
        from neutron.plugins.ml2 import managers, plugin
        from neutron.services.segments import db as segments_db
        with open({events!r}, "a") as f:
            f.write(f"id {{os.getpid()}} {{workerid.worker_id()}}\\n")
            f.write(f"ready {{os.getpid()}} {{time.time()}}\\n")
            f.write(f"calling {{os.getpid()}} {{time.time()}}\\n")
        {call}
        os.read(hold_r, 1)
        os._exit(0)
    pids.append(pid)
kill, killed = bool(os.environ.get("FAKE_KILL_SEEDER")), None
deadline = time.time() + 30
while time.time() < deadline:
    text = open({events!r}).read()
    seeding = [line.split()[1] for line in text.splitlines() if line.startswith("seeding ")]
    if kill and killed is None and seeding:
        killed = int(seeding[0])
        os.kill(killed, 9)  # the seeder dies mid-seeding, its record locks with it
    if text.count("allocate ") >= (3 if kill else 4):
        break
    time.sleep(0.05)
os.close(hold_w)
for pid in pids:
    os.waitpid(pid, 0)
print("done")
"""
#: the three entry points that allocate a segment (see _patches: patch_plugin,
#: patch_segments, patch_managers)
CALLS = {
    "network": "plugin.Ml2Plugin().create_network(None, {'network': {}})",
    "segment": "segments_db.SegmentDbMixin().create_segment(None, {'segment': {}})",
    "dynamic": "managers.TypeManager().allocate_dynamic_segment(None, 'n', {})",
}
#: how workerid's log names each of them
WHERE = {
    "network": "a network create",
    "segment": "a segment create",
    "dynamic": "a dynamic segment allocation",
}


def serve_four_workers(
    root: Path, tmp: Path, shape: str, call: str, kill_seeder: bool = False
) -> tuple[dict[str, dict[str, float]], str]:
    """Four workers load stand-in Neutron at once and allocate; ({kind: {pid: time}}, log)."""
    make_neutron(root, shape)
    guard = GUARDS.get(shape, GUARDS["28.0.0"]).strip("\n")
    files = {
        "neutron/plugins/ml2/managers.py": MANAGERS_WAITS_FOR_CALLERS.replace("@GUARD@", guard),
        "neutron/plugins/ml2/plugin.py": PLUGIN,
        "neutron/services/__init__.py": "",
        "neutron/services/segments/__init__.py": "",
        "neutron/services/segments/db.py": SEGMENTS_DB,
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    events, log = tmp / "events", tmp / "log"
    events.write_text("")
    env = {"FAKE_EVENTS": str(events), "FAKE_CALLERS": "3"}
    if kill_seeder:
        env["FAKE_KILL_SEEDER"] = "1"
    script = FORK_FOUR_SERVERS.format(log=str(log), events=str(events), call=CALLS[call])
    assert run(root, tmp / "locks", script, env=env) == "done"
    by_kind: dict[str, dict[str, float]] = {}
    for line in events.read_text().splitlines():
        kind, pid, at = line.split()
        assert pid not in by_kind.setdefault(kind, {}), line  # each once per worker
        by_kind[kind][pid] = float(at)
    return by_kind, log.read_text()


@pytest.mark.parametrize(
    ("shape", "call"),
    [*((shape, "network") for shape in SHAPES), ("28.0.0", "segment"), ("26.0.6", "dynamic")],
)
def test_workers_serve_while_the_seeding_runs_and_allocate_after_it(
    tmp_path: Path, shared_tmp: Path, shape: str, call: str
) -> None:
    """Four workers of one pre-fork master load Neutron (neutron.wsgi.api) at once."""
    ev, log = serve_four_workers(tmp_path, shared_tmp, shape, call)
    assert sorted(ev["id"].values()) == [1, 2, 3, 4]
    ((seeder, seeded),) = ev["seeded"].items()  # exactly one worker seeded
    others = sorted(pid for pid in ev["ready"] if pid != seeder)
    assert len(others) == 3 and sorted(ev["allocate"]) == sorted(ev["ready"])
    # the three others served (were about to allocate) while the seeding ran ...
    assert all(ev["calling"][pid] < seeded for pid in others)
    if call == "network":  # ... and ran Neutron's BEFORE_CREATE callbacks meanwhile
        assert all(ev["before"][pid] < seeded for pid in others)
    # ... but no worker allocated a segment before the ranges were there
    assert all(at >= seeded for at in ev["allocate"].values())
    assert log.count(f"workerid: {WHERE[call]} waited ") == 3
    assert log.count("requests that allocate a network segment wait for it") == 3


@pytest.mark.parametrize("shape", ["28.0.0", "29.0.0"])
def test_a_seeder_killed_mid_seeding_is_replaced_before_any_allocation(
    tmp_path: Path, shared_tmp: Path, shape: str
) -> None:
    """``kill -9`` of the seeder while three workers wait to allocate: one of them seeds (in its
    request, outside the allocation's transaction), and only then do the three allocate."""
    ev, log = serve_four_workers(tmp_path, shared_tmp, shape, "network", kill_seeder=True)
    ((killed, began),) = ev["seeding"].items()
    ((reseeder, seeded),) = ev["seeded"].items()  # seeded once, and not by the dead worker
    assert reseeder != killed and killed not in ev["ready"]
    others = sorted(ev["ready"])
    assert len(others) == 3 and sorted(ev["allocate"]) == others
    assert all(ev["calling"][pid] < began for pid in others)  # all were waiting at the kill
    assert all(at >= seeded for at in ev["allocate"].values())
    assert log.count("workerid: a network create waited ") == 3
    assert "503" not in log  # nobody went on without the ranges
