"""workerid.neutron.install() against the real module source of the Neutron release under test.

scripts/e2e-neutron.sh runs tests/e2e once per supported release (26.0.6, 27.0.4, 28.0.0,
29.0.0), each in its own venv; these tests import that venv's real ``neutron.common.wsgi_utils``,
``neutron.service``, ``neutron.plugins.ml2.managers`` and ``neutron.db.ovn_hash_ring_db`` in
two forked workers of one pre-fork master, and check every answer the patches give. The
stand-in modules of tests/test_neutron_install.py have the same shapes; these tests are what
tells us a new release has changed one (a release with an unknown shape fails here first).

``NEUTRON_SOURCE=/path/to/a/neutron/checkout`` runs them against that tree instead (put first on
``PYTHONPATH``, with the venv's dependencies), e.g. master:
``NEUTRON_SOURCE=~/neutron NEUTRON_RELEASES=29 bash scripts/e2e-neutron.sh -k modules``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from . import lab

pytestmark = pytest.mark.e2e

#: a Neutron checkout to test instead of the venv's release (its ``neutron`` package is used)
SOURCE = Path(os.environ["NEUTRON_SOURCE"]) if os.environ.get("NEUTRON_SOURCE") else None

#: Run in the release's venv. Worker 2 seeds first (under a lazily loaded WSGIScriptAlias any
#: worker may load Neutron first), then worker 1, which must find the seeding done.
WORKERS = r"""
import json, os, sys, types
import workerid, workerid.neutron
assert workerid.neutron.install() is True
from neutron.common import wsgi_utils
from neutron.db import ovn_hash_ring_db as db
from neutron.plugins.ml2 import managers
try:
    from neutron import service
except ImportError:
    service = None
by_id = db.get_node_uuid.__wrapped__


class TypeDriver:  # the one stand-in: a type driver that records being asked to seed
    def __init__(self):
        self.calls = []

    def initialize_network_segment_range_support(self, start_time):
        self.calls.append(start_time)


def answers():
    wid = workerid.worker_id()
    first = (
        wsgi_utils.is_first_api_worker()
        if hasattr(wsgi_utils, "is_first_api_worker")
        else wsgi_utils.get_api_worker_id() == 1
    )
    return {
        "pid": os.getpid(),
        "worker_id": wid,
        "api_worker_id": wsgi_utils.get_api_worker_id(),
        "count": wsgi_utils.get_api_worker_count(),
        "service_count": (
            service._get_api_workers()
            if service is not None and hasattr(service, "_get_api_workers") else None
        ),
        "start_time": wsgi_utils.get_start_time(),
        "workerid_start_time": workerid.start_time(),
        "first": first,
        "node_by_pid_is_node_by_id": (
            db.get_node_uuid("g", "h", os.getpid()) == by_id("g", "h", wid)
        ),
        "node_by_id_unchanged": db.get_node_uuid("g", "h", wid) == by_id("g", "h", wid),
    }


def seed():
    driver = TypeDriver()
    tm = managers.TypeManager.__new__(managers.TypeManager)  # no config: only .drivers is read
    tm.drivers = {"geneve": types.SimpleNamespace(obj=driver)}
    tm.initialize_network_segment_range_support(4242)
    return driver.calls


out_r, out_w = os.pipe()
children = []
for _ in range(2):
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        reply = answers()
        os.write(out_w, (json.dumps(reply) + "\n").encode())
        os.read(go_r, 1)  # holds its slot until told to seed
        reply = {"worker_id": reply["worker_id"], "seed_calls": seed()}
        os.write(out_w, (json.dumps(reply) + "\n").encode())
        os.read(go_r, 1)
        os._exit(0)
    children.append((pid, go_w))
reader = os.fdopen(out_r)
first = [json.loads(reader.readline()) for _ in children]
print(json.dumps(first))
ids = {reply["pid"]: reply["worker_id"] for reply in first}  # replies come in any order
for pid, go in sorted(children, key=lambda child: -ids[child[0]]):  # worker 2, then worker 1
    os.write(go, b"s")
    print(reader.readline().strip())
for pid, go in children:
    os.write(go, b"q")
    os.waitpid(pid, 0)
"""


def run_workers(tmp_path: Path) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    lock_dir = tmp_path / "locks"
    out = subprocess.run(
        [str(lab.VENV / "bin/python"), "-c", WORKERS],
        capture_output=True,
        text=True,
        env={
            "PATH": "/usr/bin:/bin",
            "WORKERID_DIR": str(lock_dir),
            "WORKERID_COUNT": "4",
            "TMPDIR": str(tmp_path),
            **({"PYTHONPATH": str(SOURCE)} if SOURCE else {}),
        },
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    return json.loads(lines[0]), [json.loads(line) for line in lines[1:]]


def neutron_source() -> dict[str, str]:
    """The package's non-test source files, by path relative to the package's parent."""
    if SOURCE is not None:
        site = SOURCE / "neutron"
    else:
        site = next(lab.VENV.glob("lib/python3*/site-packages/neutron"))
    return {
        str(p.relative_to(site.parent)): p.read_text(errors="replace")
        for p in site.rglob("*.py")
        if "/tests/" not in str(p)
    }


#: the ML2 guard in ``TypeManager.initialize_network_segment_range_support``, per release
GUARDS = {
    # 26.0.0: none, every worker seeds (commit 39d95a14e2 added one; backported as f873d55efc)
    "none": None,
    # 26.0.1, 26.0.2, 27.0.x, 28.0.x (managers.py L193): no uWSGI, no worker 1, nobody seeds
    "uwsgi-id": "if wsgi_utils.get_api_worker_id() != wsgi_utils.FIRST_WORKER_ID:",
    # 26.0.3 and later 26.0.x (managers.py L197, stable-only 23ba73e8d4): no ID, every worker
    "uwsgi-id-or-none": "if w_id != wsgi_utils.FIRST_WORKER_ID and w_id is not None:",
    # 29.0.x (managers.py L195): its own file election
    "file": "if not wsgi_utils.is_first_api_worker():",
}


def guard() -> str:
    """Which of GUARDS the release under test has."""
    managers = neutron_source()["neutron/plugins/ml2/managers.py"]
    body = managers.split("def initialize_network_segment_range_support(self, start_time):")[1]
    body = body.split("\n    def ")[0]
    found = [name for name, line in GUARDS.items() if line is not None and line in body]
    if not found and "wsgi_utils" not in body:
        found = ["none"]
    assert len(found) == 1, body
    return found[0]


def shape() -> tuple[bool, bool]:
    """(elects by file: 29.0.x's ``is_first_api_worker``, has ``service._get_api_workers``)."""
    src = neutron_source()
    return (
        "def is_first_api_worker(" in src["neutron/common/wsgi_utils.py"],
        "def _get_api_workers(" in src["neutron/service.py"],
    )


def test_release_under_test_is_supported() -> None:
    if SOURCE is None:
        assert lab.NEUTRON_MAJOR in (26, 27, 28, 29), lab.NEUTRON_VERSION
        # the round's release (scripts/e2e-neutron.sh) is the one installed in its venv
        wanted = os.environ.get("NEUTRON_VERSION")
        assert wanted in (None, lab.NEUTRON_VERSION), (wanted, lab.NEUTRON_VERSION, lab.VENV)
    # the known shapes: 26.0.x to 28.0.x (uWSGI ID, service count), master of 2026-08 (uWSGI
    # ID, no service count) and 29.0.x (file election, no service count)
    assert shape() in {(False, True), (False, False), (True, False)}, shape()
    if SOURCE is None:
        assert guard() == expected_guard(lab.NEUTRON_VERSION), (lab.NEUTRON_VERSION, guard())


def expected_guard(version: str) -> str:
    """The ML2 guard a release has (``GUARDS``; docs/design.md, "Neutron releases"): 26.0.x
    changed it twice in stable releases, 26.0.1 (``f873d55efc``) and 26.0.3 (``23ba73e8d4``)."""
    release = tuple(int(part) for part in version.split(".")[:3])
    if release[0] == 26:
        if release < (26, 0, 1):
            return "none"
        return "uwsgi-id" if release < (26, 0, 3) else "uwsgi-id-or-none"
    return {27: "uwsgi-id", 28: "uwsgi-id", 29: "file"}[release[0]]


@pytest.mark.parametrize(
    ("version", "guard_name"),
    [
        ("26.0.0", "none"),
        ("26.0.2", "uwsgi-id"),
        ("26.0.3", "uwsgi-id-or-none"),
        ("26.0.6", "uwsgi-id-or-none"),
        ("27.0.4", "uwsgi-id"),
        ("28.0.1", "uwsgi-id"),
        ("29.0.0", "file"),
    ],
)
def test_each_release_is_expected_with_its_own_guard(version: str, guard_name: str) -> None:
    assert expected_guard(version) == guard_name


def test_every_patched_question_answered_from_workerid(tmp_path: Path) -> None:
    workers, _ = run_workers(tmp_path)
    by_file, service_count = shape()
    by_id = {w["worker_id"]: w for w in workers}
    assert sorted(by_id) == [1, 2]
    for wid, w in by_id.items():
        assert w["api_worker_id"] == wid
        assert w["count"] == 4  # WORKERID_COUNT, not the CPUs (28) or None (29 under no server)
        assert w["start_time"] == w["workerid_start_time"] is not None
        assert w["node_by_pid_is_node_by_id"] is True
        assert w["node_by_id_unchanged"] is True
        # 28.0.0 counts api_workers or the CPUs in service._get_api_workers; later ones do not
        assert w["service_count"] == (4 if service_count else None)
    assert by_id[1]["first"] is True and by_id[2]["first"] is False
    assert by_id[1]["start_time"] == by_id[2]["start_time"]
    if by_file:
        # 29.0.0's own election (O_EXCL files named after the parent PID in the temp dir) was
        # never consulted: workerid answered.
        assert sorted(p.name for p in tmp_path.iterdir()) == ["locks"]


def test_ml2_seeding_runs_once_through_the_real_guard(tmp_path: Path) -> None:
    _, seeded = run_workers(tmp_path)
    assert [s["worker_id"] for s in seeded] == [2, 1]
    assert seeded[0]["seed_calls"] == [4242]  # worker 2 got there first and seeded
    assert seeded[1]["seed_calls"] == []  # worker 1 found it done for this start time


def test_every_caller_reads_the_patched_attributes_at_call_time() -> None:
    """install() replaces module attributes: a `from module import name` would bypass it."""
    bypass = re.compile(
        r"from neutron\.(common\.wsgi_utils|db\.ovn_hash_ring_db|service) import "
        r"|from neutron\.common\.ovn\.hash_ring_manager import"
    )
    offenders = {
        path: m.group(0)
        for path, text in neutron_source().items()
        for m in [bypass.search(text)]
        if m is not None
    }
    assert offenders == {}


def test_the_call_sites_have_the_shape_the_patches_expect() -> None:
    src = neutron_source()
    mech = src["neutron/plugins/ml2/drivers/ovn/mech_driver/mech_driver.py"]
    managers = src["neutron/plugins/ml2/managers.py"]
    ring_db = src["neutron/db/ovn_hash_ring_db.py"]
    assert "def add_node(context, group_name, node_uuid, created_at=None):" in ring_db
    assert "ovn_hash_ring_db.add_node(" in mech
    assert "def initialize_network_segment_range_support(self, start_time):" in managers
    by_file, _ = shape()
    if not by_file:
        assert guard() in ("none", "uwsgi-id", "uwsgi-id-or-none")
        assert "self.hash_ring_group, cfg.CONF.host, worker_id)" in mech
        # mech_driver.py L195-L204 (26.0.x-28.0.x): no uWSGI start time -> this worker's clock
        assert "self._start_time = wsgi_utils.get_start_time(current_time=True)" in mech
    else:
        assert guard() == "file"
        assert "self.hash_ring_group, cfg.CONF.host, os.getpid())" in mech


def test_segments_are_allocated_where_the_patches_wait() -> None:
    """``_patches.await_seeding`` runs at three entry points, each outside any transaction, and
    every segment allocation of the release goes through one of them.

    * ``Ml2Plugin.create_network`` (``@utils.transaction_guard``) and ``_create_bulk_ml2`` call
      ``_before_create_network`` before the ``CONTEXT_WRITER`` in which ``_create_network_db``
      allocates (``plugin.py`` L1124-L1131, L1225-L1238, L1289-L1294 at 28.0.0);
    * ``SegmentDbMixin.create_segment`` calls ``_create_segment_db``, whose transaction's
      ``PRECOMMIT_CREATE`` makes ML2 reserve a partial segment (``segments/db.py`` L88-L94);
    * ``TypeManager.allocate_dynamic_segment`` (``@db_api.retry_if_session_inactive()``), from
      port binding (``driver_context.py``).
    """
    src = neutron_source()
    plugin = src["neutron/plugins/ml2/plugin.py"]
    create = plugin.split("    def create_network(self, context, network):\n")
    assert (
        create[0]
        .rstrip()
        .endswith("@utils.transaction_guard\n    @db_api.retry_if_session_inactive()")
    )
    body = create[1].split("\n    def ")[0]
    assert body.index("self._before_create_network(") < body.index("self._create_network_db(")
    bulk = plugin.split("    def _create_bulk_ml2(self, resource, context, request_items):")[1]
    bulk = bulk.split("\n    def ")[0]
    assert bulk.index("obj_before_create(context, item)") < bulk.index(
        "with db_api.CONTEXT_WRITER.using(context):"
    )
    assert "obj_before_create = getattr(self, '_before_create_%s' % resource)" in bulk
    net_db = plugin.split("    def _create_network_db(self, context, network):")[1]
    net_db = net_db.split("\n    def ")[0]
    assert net_db.index("with db_api.CONTEXT_WRITER.using(context):") < net_db.index(
        "self.type_manager.create_network_segments("
    )
    segments = src["neutron/services/segments/db.py"]
    seg = segments.split("    def create_segment(self, context, segment):")[1].split("\n    def ")
    assert "self._create_segment_db(context, segment_id, segment)" in seg[0]
    assert "with db_api.CONTEXT_WRITER.using(context):" in seg[1]  # _create_segment_db
    managers = src["neutron/plugins/ml2/managers.py"]
    assert (
        "    @db_api.retry_if_session_inactive()\n"
        "    def allocate_dynamic_segment(self, context, network_id, segment):"
    ) in managers
    # the only callers of the type manager's allocations are behind those entry points
    callers = {
        path
        for path, text in src.items()
        if re.search(r"type_manager\.(create_network_segments|reserve_network_segment)\(", text)
    }
    assert callers == {"neutron/plugins/ml2/plugin.py"}, callers


#: Run in the release's venv: install(), then the real modules; which entry points now wait
WRAPPED = r"""
import json, workerid.neutron
workerid.neutron.install()
from neutron.plugins.ml2 import managers, plugin
from neutron.services.segments import db as segments_db
print(json.dumps({
    "network": hasattr(plugin.Ml2Plugin._before_create_network, "__wrapped__"),
    "segment": hasattr(segments_db.SegmentDbMixin.create_segment, "__wrapped__"),
    "dynamic": hasattr(managers.TypeManager.allocate_dynamic_segment, "__wrapped__"),
}))
"""


def test_install_makes_the_real_entry_points_wait(tmp_path: Path) -> None:
    src = Path(__file__).resolve().parents[2] / "src"  # this tree's workerid
    out = subprocess.run(
        [str(lab.VENV / "bin/python"), "-c", WRAPPED],
        capture_output=True,
        text=True,
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": ":".join([*([str(SOURCE)] if SOURCE else []), str(src)]),
            "TMPDIR": str(tmp_path),
            "WORKERID_DIR": str(tmp_path / "locks"),
        },
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {
        "network": True,
        "segment": True,
        "dynamic": True,
    }
    assert "will not wait for the segment range seeding" not in out.stderr


def test_unique_constraint_on_default_ranges_is_known() -> None:
    """28.0.0 added ``uniq_network_segment_ranges`` (migration b1bca967e19d); 26.0.x and 27.0.x
    have none, so two concurrent seedings with one start time can insert two default ranges.
    install() serialises a seeding that runs in every worker (degraded) on those releases."""
    model = neutron_source()["neutron/db/models/network_segment_range.py"]
    has = "name='uniq_network_segment_ranges'" in model
    if SOURCE is None:
        assert has == (lab.NEUTRON_MAJOR >= 28), lab.NEUTRON_VERSION
    # and install() reads the real model the same way (a unique constraint on the range's
    # columns, not the one every release has on standard_attr_id)
    out = subprocess.run(
        [
            str(lab.VENV / "bin/python"),
            "-c",
            "from neutron.db.models import network_segment_range\n"
            "from workerid.neutron import _patches\n"
            "print(_patches._ranges_unique())",
        ],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **({"PYTHONPATH": str(SOURCE)} if SOURCE else {})},
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == str(has)


#: Without install(): two forked workers of one master (no uWSGI) go through the real ML2 guard.
PLAIN_WORKERS = r"""
import json, os, types
from neutron.plugins.ml2 import managers


class TypeDriver:
    def __init__(self):
        self.calls = []

    def initialize_network_segment_range_support(self, start_time):
        self.calls.append(start_time)


r, w = os.pipe()
pids = []
for _ in range(2):
    pid = os.fork()
    if pid == 0:
        driver = TypeDriver()
        tm = managers.TypeManager.__new__(managers.TypeManager)
        tm.drivers = {"geneve": types.SimpleNamespace(obj=driver)}
        tm.initialize_network_segment_range_support(4242)
        os.write(w, (json.dumps(len(driver.calls)) + "\n").encode())
        os._exit(0)
    pids.append(pid)
for pid in pids:
    os.waitpid(pid, 0)
os.close(w)
print(sorted(json.loads(line) for line in os.fdopen(r).read().split()))
"""


def test_without_install_the_real_guard_has_the_releases_fault(tmp_path: Path) -> None:
    """The "before" of each release, at the module level: how many of two workers seed."""
    out = subprocess.run(
        [str(lab.VENV / "bin/python"), "-c", PLAIN_WORKERS],
        capture_output=True,
        text=True,
        env={
            "PATH": "/usr/bin:/bin",
            "TMPDIR": str(tmp_path),
            **({"PYTHONPATH": str(SOURCE)} if SOURCE else {}),
        },
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    seeded = json.loads(out.stdout.strip().splitlines()[-1])
    expected = {
        "none": [1, 1],  # 26.0.0: every worker
        "uwsgi-id-or-none": [1, 1],  # 26.0.3+: every worker (no ID is let through)
        "uwsgi-id": [0, 0],  # 27.0.x, 28.0.x: nobody (LP: #2150285)
        "file": [0, 1],  # 29.0.x: the first by its O_EXCL file
    }[guard()]
    assert seeded == expected, (guard(), seeded)
