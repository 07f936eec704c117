"""Hostile lock directories, as a user meets them: real processes, hard timeouts.

Promises under test:

(c) no workerid call blocks longer than a documented bound (``settle_timeout``
    for elections plus a ledger-lock wait bound: "returns within 15 s"),
    whatever sits in the lock directory or whoever holds its locks; when it
    cannot proceed it answers ``worker_id`` None with a reason in
    ``identity().degraded``.
(d) nothing owned by another user is trusted, root included; a start time is
    never far ahead of the clock.

Every case runs the application side in a fresh interpreter
(``python -c "...workerid.identity()..."``, or ``tests/prefork.py`` workers)
under a hard ``subprocess`` timeout, so a hang is a failure, never a hung
suite. File names come only from ``workerid._layout``: the ledger
(``ledger.json``, ``ledger.lock``) sits at the top of the lock directory,
shared by every namespace; a namespace directory holds its one ``slots.lock``.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
import pwd
import select
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from workerid import _config, _generation, _layout

PY = sys.executable
SRC = str(Path(__file__).resolve().parent.parent / "src")
#: the documented bound for any one workerid call (settle + ledger-lock wait)
BOUND = 15.0
assert _generation.LOCK_WAIT < BOUND, "the ledger-lock wait alone must fit in the bound"
#: the hard kill: a child still running then is a hang
HARD = BOUND + 3
NS = "hostile"
DAY = 86400
IDENTITY = "import workerid, json; print(json.dumps(workerid.identity().as_dict()))"

NOBODY = pwd.getpwnam("nobody")
WWW = pwd.getpwnam("www-data")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs processes as other users")


# --- helpers ---------------------------------------------------------------------


def slot_paths(ns_dir: Path | str) -> list[str]:
    """Where the slot lock file of a namespace lives (one file per namespace)."""
    return [_layout.slots_file(str(ns_dir))]


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without anything that steers workerid, plus ``extra``."""
    drop = ("WORKERID_", "PREFORK_")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(drop) and k not in ("XDG_RUNTIME_DIR", "TMPDIR", "WEB_CONCURRENCY")
    }
    env["PYTHONPATH"] = SRC + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["WORKERID_NAMESPACE"] = NS
    env.update(extra)
    return env


#: run the command as the child of a shell that waits for it: with WORKERID_NAMESPACE
#: set, the parent is the run's supervisor, so this makes the call a run of its own
#: (a plain child of the test process belongs to the test process's run)
_OWN_RUN = ["/bin/sh", "-c", '"$@"; exit $?', "sh"]


def run_py(
    args: list[str], env: dict[str, str], *, user: str | None = None, own_run: bool = False
) -> tuple[subprocess.CompletedProcess[str], float]:
    began = time.monotonic()
    try:
        proc = subprocess.run(
            [*(_OWN_RUN if own_run else []), PY, *args],
            check=False,
            env=env,
            capture_output=True,
            text=True,
            timeout=HARD,
            cwd="/",
            user=user,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"{args[:2]} still blocked after {HARD:g}s (bound {BOUND:g}s); stderr: {exc.stderr!r}"
        )
    return proc, time.monotonic() - began


def identity(
    env: dict[str, str], *, user: str | None = None, own_run: bool = False
) -> dict[str, Any]:
    """``workerid.identity()`` of a fresh process; fails if it takes over the bound."""
    proc, elapsed = run_py(["-c", IDENTITY], env, user=user, own_run=own_run)
    assert proc.returncode == 0, proc.stderr
    assert elapsed <= BOUND, f"identity() took {elapsed:.1f}s, over the {BOUND:g}s bound"
    ident: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    ident["_elapsed"] = elapsed
    return ident


def reasons(ident: dict[str, Any]) -> str:
    return "\n".join(ident["degraded"])


def make_ns(base: Path, *, owner: int | None = None) -> tuple[Path, Path]:
    """``base/locks`` (0700) and its namespace directory (0700), optionally chown'ed."""
    lock = base / "locks"
    lock.mkdir(mode=0o700)
    ns = Path(_layout.namespace_dir(str(lock), NS))
    ns.mkdir(mode=0o700)
    if owner is not None:
        os.chown(lock, owner, owner)
        os.chown(ns, owner, owner)
    return lock, ns


_HOLDER = """
import fcntl, os, sys, time
fds = []
for path in sys.argv[1:]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.lockf(fd, fcntl.LOCK_EX)  # the whole file, as the ledger lock is taken
    fds.append(fd)
print("locked", flush=True)
time.sleep(600)
"""


@contextlib.contextmanager
def holding(paths: list[str], *, user: str | None = None) -> Iterator[subprocess.Popen[str]]:
    """A live process (optionally another user) holding whole-file locks on ``paths``."""
    proc = subprocess.Popen(
        [PY, "-c", _HOLDER, *paths],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd="/",
        user=user,
        env=clean_env(),
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 10)
        line = proc.stdout.readline() if ready else ""
        assert line.strip() == "locked", f"lock holder failed: {proc.poll()} {line!r}"
        yield proc
    finally:
        proc.kill()
        proc.wait(10)


def tree(root: Path) -> dict[str, tuple[int, int, int, int]]:
    """Every entry under ``root``: (type, size, mtime_ns, inode); ``root`` itself as '.'."""
    found: dict[str, tuple[int, int, int, int]] = {}
    if not os.path.lexists(root):
        return found
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [".", *dirnames, *filenames]:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            found[os.path.relpath(os.path.normpath(path), root)] = (
                stat.S_IFMT(st.st_mode),
                st.st_size,
                st.st_mtime_ns,
                st.st_ino,
            )
    return found


def ledger_on_disk(lock: Path) -> Any:
    return json.loads((lock / _layout.LEDGER).read_text())


def seed_ledger(lock: Path) -> Path:
    """Let a real application process write a valid ledger (whatever the format); its
    namespace directory. The ledger itself is ``lock / LEDGER``. The seeding process is a
    run of its own, so the test's later calls are a new run: they go past the ledger's
    unlocked fast path (their entry is not there yet) and take ``ledger.lock``."""
    ident = identity(clean_env(WORKERID_DIR=str(lock)), own_run=True)
    assert ident["worker_id"] is not None, ident
    assert ident["supervisor_pid"] != os.getpid(), ident
    ns = Path(_layout.namespace_dir(str(lock), NS))
    assert ns.is_dir()
    assert (lock / _layout.LEDGER).is_file()
    return ns


def mutate_ledger(lock: Path, values: dict[str, int]) -> int:
    """Set every field of the on-disk ledger named in ``values``, at any depth; how many.

    Planting by mutation keeps these tests valid whatever the ledger's format version.
    """
    path = lock / _layout.LEDGER
    obj = ledger_on_disk(lock)
    count = 0

    def walk(node: Any) -> None:
        nonlocal count
        if isinstance(node, dict):
            for key in list(node):
                if key in values and type(node[key]) is int:
                    node[key] = values[key]
                    count += 1
                else:
                    walk(node[key])
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(obj)
    path.write_text(json.dumps(obj))
    os.chmod(path, 0o600)
    return count


# --- (c) nothing blocks past the bound -----------------------------------------------


def test_fifo_as_slot_file_answers_within_bound_and_names_it(shared_tmp: Path) -> None:
    """A FIFO where the slot lock file should be: identity() returns within the bound,
    worker_id None, and a reason that names the file."""
    lock, ns = make_ns(shared_tmp)
    paths = slot_paths(ns)
    for path in paths:
        os.mkfifo(path, 0o600)
    ident = identity(clean_env(WORKERID_DIR=str(lock)))
    assert ident["worker_id"] is None
    assert any(os.path.basename(p) in reasons(ident) for p in paths), ident["degraded"]


def test_fifo_as_ledger_lock_answers_within_bound_and_names_it(shared_tmp: Path) -> None:
    """A FIFO where ledger.lock should be: identity() returns within the bound,
    worker_id None, and a reason that names the file."""
    lock, _ns = make_ns(shared_tmp)
    os.mkfifo(lock / _layout.LEDGER_LOCK, 0o600)
    ident = identity(clean_env(WORKERID_DIR=str(lock)))
    assert ident["worker_id"] is None
    assert _layout.LEDGER_LOCK in reasons(ident), ident["degraded"]
    assert ident["start_time"] is not None  # the fallback still answers


def test_fifo_as_ledger_json_answers_within_bound(shared_tmp: Path) -> None:
    """A FIFO where ledger.json should be: identity() returns within the bound; either it
    refuses (worker_id None, a reason naming ledger.json) or it replaces the FIFO with a
    real, parseable ledger (a state file that fails the checks is "no state")."""
    lock, _ns = make_ns(shared_tmp)
    os.mkfifo(lock / _layout.LEDGER, 0o600)
    ident = identity(clean_env(WORKERID_DIR=str(lock)))
    if ident["worker_id"] is None:
        assert _layout.LEDGER in reasons(ident), ident["degraded"]
    else:
        st = os.lstat(lock / _layout.LEDGER)
        assert stat.S_ISREG(st.st_mode)
        _generation.parse(ledger_on_disk(lock))


def test_ledger_lock_held_by_another_user_in_their_dir_is_refused_within_bound(
    shared_tmp: Path,
) -> None:
    """Root pointed at a lock dir that `nobody` owns, while `nobody` holds ledger.lock:
    root's call returns within the bound and refuses the directory (owned by another
    user), worker_id None."""
    lock, _ns = make_ns(shared_tmp, owner=NOBODY.pw_uid)
    with holding([str(lock / _layout.LEDGER_LOCK)], user="nobody"):
        before = tree(lock)
        ident = identity(clean_env(WORKERID_DIR=str(lock)))
        after = tree(lock)
    assert ident["worker_id"] is None
    text = reasons(ident)
    assert "owned" in text.lower() and str(lock) in text, ident["degraded"]
    assert after == before  # root wrote nothing into nobody's directory


def _shared_tmp_dir(base: Path) -> Path:
    tmp = base / "tmp"
    tmp.mkdir()
    os.chmod(tmp, 0o1777)
    return tmp


def _precreate_as_nobody(path: Path, env: dict[str, str]) -> None:
    made, _ = run_py(["-c", f"import os; os.mkdir({str(path)!r}, 0o700)"], env, user="nobody")
    assert made.returncode == 0, made.stderr
    assert os.stat(path).st_uid == NOBODY.pw_uid


def _default_lock_dir(env: dict[str, str], *, user: str | None = None) -> Path:
    proc, _ = run_py(
        ["-c", "from workerid import _config; print(_config.default_lock_dir())"], env, user=user
    )
    assert proc.returncode == 0, proc.stderr
    return Path(proc.stdout.strip())


@contextlib.contextmanager
def _root_default_state(namespace: str) -> Iterator[None]:
    """Remove what a root call with the default lock dir adds to this host."""
    root_dir = Path(_config.ROOT_LOCK_DIR)
    existed = os.path.lexists(root_dir)
    ns_existed = os.path.lexists(root_dir / namespace)
    try:
        yield
    finally:
        if not existed:
            shutil.rmtree(root_dir, ignore_errors=True)
        elif not ns_existed:
            shutil.rmtree(root_dir / namespace, ignore_errors=True)


def test_default_lock_dir_precreated_by_another_user_is_never_used(shared_tmp: Path) -> None:
    """Root's would-be default in a shared 1777 temp dir (TMPDIR, no WORKERID_DIR, no
    XDG_RUNTIME_DIR) pre-created by `nobody`: root's call returns quickly and never uses
    that directory (creates nothing in it): root's default lock dir is not inside the
    world-writable temp dir at all. Whatever root uses is root's own and not writable by
    others."""
    tmp = _shared_tmp_dir(shared_tmp)
    namespace = f"{NS}-default-{os.getpid()}"
    env = clean_env(TMPDIR=str(tmp), WORKERID_NAMESPACE=namespace)
    env.pop("WORKERID_DIR", None)
    # What another user can plant: the per-uid name in the temp dir, for root.
    planted = tmp / f"workerid-{os.geteuid()}"
    _precreate_as_nobody(planted, env)
    before = tree(planted)

    default = _default_lock_dir(env)
    assert not default.resolve().is_relative_to(tmp.resolve()), default
    with _root_default_state(namespace):
        ident = identity(env)
    assert ident["_elapsed"] < 5, "answering without the temp dir is quick"
    assert os.listdir(planted) == [], "root created files in nobody's directory"
    assert tree(planted) == before, "root touched nobody's directory"
    used = ident["lock_dir"]
    assert used, ident
    assert not Path(used).resolve().is_relative_to(tmp.resolve()), used
    if ident["worker_id"] is not None:
        assert os.path.realpath(used) != os.path.realpath(planted)
    else:
        assert ident["degraded"], "no reason given"


def test_default_lock_dir_precreated_by_another_user_is_refused_for_non_root(
    shared_tmp: Path,
) -> None:
    """www-data's default lock dir (TMPDIR a shared 1777 temp dir, no XDG_RUNTIME_DIR)
    pre-created by `nobody`: www-data's call returns within the bound, refuses it with a
    reason naming the directory and its owner, answers worker_id None, and writes nothing
    inside it."""
    tmp = _shared_tmp_dir(shared_tmp)
    env = clean_env(TMPDIR=str(tmp))
    env.pop("WORKERID_DIR", None)
    default = _default_lock_dir(env, user="www-data")
    assert default == tmp / f"workerid-{WWW.pw_uid}", default  # the test steers the default
    _precreate_as_nobody(default, env)
    before = tree(default)

    ident = identity(env, user="www-data")
    assert tree(default) == before, "www-data touched nobody's directory"
    assert os.listdir(default) == []
    assert ident["worker_id"] is None, ident
    text = reasons(ident)
    assert str(default) in text, ident["degraded"]
    assert "owned" in text.lower(), ident["degraded"]
    assert f"uid {NOBODY.pw_uid}" in text or NOBODY.pw_name in text, ident["degraded"]
    assert ident["start_time"] is not None  # the fallback still answers


def test_ledger_lock_held_forever_by_same_user_answers_within_bound(shared_tmp: Path) -> None:
    """A process of the same user holding ledger.lock and never letting go: a new run's
    first call returns within the bound (the ledger-lock wait is bounded), worker_id None,
    with a reason that says the ledger is stuck."""
    lock, _ns = make_ns(shared_tmp)
    with holding([str(lock / _layout.LEDGER_LOCK)]):
        ident = identity(clean_env(WORKERID_DIR=str(lock)))
    assert ident["degraded"], "no reason given"
    assert "ledger" in reasons(ident).lower(), ident["degraded"]
    assert ident["worker_id"] is None, ident
    assert ident["start_time"] is not None


def test_slot_file_locked_whole_by_same_user_answers_within_bound(shared_tmp: Path) -> None:
    """A process of the same user holding a lock over the whole slot file(s): every ID is
    taken, so the call returns within the bound with worker_id None and a reason."""
    lock, ns = make_ns(shared_tmp)
    with holding(slot_paths(ns)):
        ident = identity(clean_env(WORKERID_DIR=str(lock)))
    assert ident["worker_id"] is None
    assert ident["degraded"] and "None)" not in reasons(ident), ident["degraded"]


# --- (d) trust ------------------------------------------------------------------------


def _assert_sane_start(start: Any) -> None:
    assert isinstance(start, int)
    assert abs(start - time.time()) <= DAY, f"start time {start} is not near the clock"
    datetime.datetime.fromtimestamp(start)  # must not raise


_CAP_START = _generation.MAX_START
_CAP_SEQ = _generation.MAX_SEQ


def _start_id(value: int) -> str:
    return {10**12: "1e12", 2**40: "2^40"}.get(value, f"cap{value}")


@pytest.mark.parametrize("value", sorted({10**12, 2**40, _CAP_START}), ids=_start_id)
@pytest.mark.parametrize("where", ["floor", "entry"])
def test_far_future_ledger_is_not_obeyed(
    start_server: Any, lock_dir: Path, where: str, value: int
) -> None:
    """A planted ledger whose floor (or an entry's start) is far in the future (10**12 is
    year 33658; 2**40 and the parser's own cap): the start time a new run is handed is
    within a day of the clock, datetime.fromtimestamp() accepts it, all workers of the run
    share it, and the ledger left behind still parses."""
    lock_dir.mkdir(mode=0o700)
    seed_ledger(lock_dir)
    fields = {"floor": value} if where == "floor" else {"start": value, "floor": value}
    assert mutate_ledger(lock_dir, fields), f"the ledger has no {where} field"
    idents = start_server(workers=2, WORKERID_NAMESPACE=NS).identities(timeout=BOUND)
    assert len(idents) == 2
    assert len({i["start_time"] for i in idents}) == 1, [i["start_time"] for i in idents]
    _assert_sane_start(idents[0]["start_time"])
    _generation.parse(ledger_on_disk(lock_dir))


@pytest.mark.parametrize(
    "value", sorted({2**62, _CAP_SEQ}), ids=lambda v: f"2^{v.bit_length() - 1}"
)
def test_huge_seq_keeps_ids_distinct_and_ledger_parseable(
    start_server: Any, lock_dir: Path, value: int
) -> None:
    """A planted ledger whose seq is 2**62 (or the parser's own cap): the next workers
    still get distinct IDs 1..N with one start time, and the ledger stays parseable."""
    lock_dir.mkdir(mode=0o700)
    seed_ledger(lock_dir)
    assert mutate_ledger(lock_dir, {"seq": value}), "the ledger has no seq"
    idents = start_server(workers=3, WORKERID_NAMESPACE=NS).identities(timeout=BOUND)
    assert sorted(i["worker_id"] for i in idents) == [1, 2, 3], idents
    assert len({i["start_time"] for i in idents}) == 1
    _generation.parse(ledger_on_disk(lock_dir))


@pytest.mark.parametrize("what", ["lock_dir", "namespace", "ledger.lock", "slots", "ledger.json"])
def test_symlink_where_state_should_be_is_not_followed(shared_tmp: Path, what: str) -> None:
    """A symlink where a state directory or file should be: never followed (its target is
    untouched); the app gets an answer within the bound: worker_id None with a reason
    naming the path, or (for ledger.json, which is only ever replaced whole) the link
    replaced by a real ledger."""
    lock, ns = make_ns(shared_tmp)
    target = shared_tmp / "target"
    if what in ("lock_dir", "namespace"):
        target.mkdir(mode=0o700)
        link = lock if what == "lock_dir" else ns
        shutil.rmtree(link)
        link.symlink_to(target, target_is_directory=True)
        named = [link.name]
    else:
        target.write_text("precious")
        os.chmod(target, 0o600)
        if what == "slots":
            links = [Path(p) for p in slot_paths(ns)]
        else:
            links = [lock / (_layout.LEDGER_LOCK if what == "ledger.lock" else _layout.LEDGER)]
        for link in links:
            link.symlink_to(target)
        named = [p.name for p in links]
    before = tree(target)
    ident = identity(clean_env(WORKERID_DIR=str(lock)))
    assert tree(target) == before, "the symlink's target was touched"
    if what == "ledger.json" and ident["worker_id"] is not None:
        assert not (lock / _layout.LEDGER).is_symlink()
        _generation.parse(ledger_on_disk(lock))
        return
    assert ident["worker_id"] is None
    assert any(n in reasons(ident) for n in named), ident["degraded"]


@pytest.mark.parametrize("what", ["lock_dir", "namespace", "ledger.json", "ledger.lock", "slots"])
def test_state_owned_by_another_user_is_not_trusted_even_by_root(
    shared_tmp: Path, what: str
) -> None:
    """A state directory or file owned by `nobody` in root's lock directory: root does not
    trust it (a planted ledger's start time is not obeyed; a directory or lock file is
    refused: worker_id None) and says so, naming it, within the bound."""
    lock = shared_tmp / "locks"
    lock.mkdir(mode=0o700)
    ns = seed_ledger(lock)
    soon = int(time.time()) + 2 * 3600  # parseable, plausible, and not ours
    if what == "ledger.json":
        assert mutate_ledger(lock, {"floor": soon, "start": soon})
    nobody = NOBODY.pw_uid
    if what == "lock_dir":
        os.chown(lock, nobody, nobody)
        named = str(lock)
    elif what == "namespace":
        os.chown(ns, nobody, nobody)
        named = str(ns)
    elif what == "ledger.json":
        os.chown(lock / _layout.LEDGER, nobody, nobody)
        named = _layout.LEDGER
    elif what == "ledger.lock":
        path = lock / _layout.LEDGER_LOCK
        path.touch(mode=0o600)
        os.chown(path, nobody, nobody)
        named = _layout.LEDGER_LOCK
    else:
        for p in slot_paths(ns):
            Path(p).touch(mode=0o600)
            os.chown(p, nobody, nobody)
        named = os.path.basename(slot_paths(ns)[0]).split(".")[0]
    ident = identity(clean_env(WORKERID_DIR=str(lock)))
    assert ident["start_time"] is not None and ident["start_time"] < soon, "obeyed nobody's floor"
    if what != "ledger.json":
        assert ident["worker_id"] is None
    text = reasons(ident)
    assert named in text and "owned" in text.lower(), ident["degraded"]


def test_world_writable_namespace_dir_is_refused(shared_tmp: Path) -> None:
    """A world-writable namespace directory: refused with a reason, nothing is created in
    it, and the app still gets an answer within the bound."""
    lock, ns = make_ns(shared_tmp)
    os.chmod(ns, 0o777)
    ident = identity(clean_env(WORKERID_DIR=str(lock)))
    assert ident["worker_id"] is None
    assert str(ns) in reasons(ident) and "writable" in reasons(ident), ident["degraded"]
    assert os.listdir(ns) == []
    assert ident["start_time"] is not None


# --- (9) the CLI reads, the exhausted and the full say why -------------------------------


def _snapshot(lock: Path) -> tuple[dict[str, tuple[int, int, int, int]], Any]:
    ledgers = {}
    for path in sorted(lock.rglob(_layout.LEDGER)):
        ledgers[str(path)] = json.loads(path.read_text())["seq"]
    return tree(lock), ledgers


def test_identity_cli_does_not_write_the_lock_dir(shared_tmp: Path) -> None:
    """`workerid identity --json` only reads: calls from the application's run and from a
    run the ledger does not know yet leave the lock directory exactly as they found it
    (names, sizes, mtimes, inodes, the ledger's seq)."""
    lock = shared_tmp / "locks"
    env = clean_env(WORKERID_DIR=str(lock))
    app = identity(env)  # an application process populates the directory
    assert app["worker_id"] == 1, app
    before = _snapshot(lock)
    assert before[1], "the application wrote no ledger"
    for own_run in (False, True, False, True):
        proc, elapsed = run_py(["-m", "workerid.cli", "identity", "--json"], env, own_run=own_run)
        assert proc.returncode == 0, proc.stderr
        assert elapsed <= BOUND
        json.loads(proc.stdout)
    assert _snapshot(lock) == before


def test_identity_cli_does_not_create_a_missing_lock_dir(shared_tmp: Path) -> None:
    """`workerid identity --json` on a lock directory that does not exist yet answers
    and leaves it absent."""
    lock = shared_tmp / "locks"
    env = clean_env(WORKERID_DIR=str(lock))
    for own_run in (False, True):
        proc, _ = run_py(["-m", "workerid.cli", "identity", "--json"], env, own_run=own_run)
        assert proc.returncode == 0, proc.stderr
        json.loads(proc.stdout)
        assert not os.path.lexists(lock)


def test_every_slot_held_names_the_condition(start_server: Any, lock_dir: Path) -> None:
    """WORKERID_MAX_SLOTS=2 and two live workers hold IDs 1 and 2: a third worker answers
    within the bound with worker_id None, and its reason names the condition (IDs all
    held, the limit) rather than printing a missing errno as "None)"."""
    server = start_server(
        workers=3, WORKERID_NAMESPACE=NS, WORKERID_MAX_SLOTS="2", WEB_CONCURRENCY=""
    )
    idents = server.identities(expect=3, timeout=BOUND)
    assert len(idents) == 3, idents
    assert sorted(i["worker_id"] or 0 for i in idents) == [0, 1, 2]
    third = next(i for i in idents if i["worker_id"] is None)
    text = reasons(third)
    assert "None)" not in text, third["degraded"]
    assert "held" in text and "2" in text and "MAX_SLOTS" in text.upper(), third["degraded"]


def test_full_filesystem_answers_with_a_reason_and_leaves_no_temp_files(
    shared_tmp: Path,
) -> None:
    """A lock directory on a full filesystem: identity() answers within the bound (worker_id
    may be None) with a reason, and no `*.tmp.*` file is left behind."""
    mnt = shared_tmp / "full"
    mnt.mkdir(mode=0o700)
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(mnt)],
            check=True,
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot mount a tmpfs: {exc}")
    try:
        fd = os.open(mnt / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        finally:
            os.close(fd)
        ident = identity(clean_env(WORKERID_DIR=str(mnt)))
        leftovers = [str(p) for p in mnt.rglob("*.tmp.*")]
        assert ident["degraded"], "no reason given"
        assert ident["start_time"] is not None
        assert leftovers == [], leftovers
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False, capture_output=True, timeout=10)
