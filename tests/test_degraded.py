"""Unusable lock directories and hostile state: the app keeps going and says why."""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path
from typing import Any

import pytest

import workerid
from workerid import _layout

NOBODY = pwd.getpwnam("nobody")


def only_reason(ident: Any, needle: str) -> str:
    matches = [r for r in ident["degraded"] if needle in r]
    assert matches, ident["degraded"]
    return matches[0]


def assert_degraded_but_shared(idents: list[dict[str, Any]], needle: str) -> None:
    assert {i["worker_id"] for i in idents} == {None}
    assert len({i["start_time"] for i in idents}) == 1
    assert {i["start_time_source"] for i in idents} == {"procfs"}
    assert idents[0]["start_time"] > 1_600_000_000
    only_reason(idents[0], needle)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run workers as nobody")
class TestAsAnotherUser:
    def test_lock_dir_owned_by_root_is_not_writable(
        self, start_server: Any, lock_dir: Path
    ) -> None:
        lock_dir.mkdir(mode=0o755)
        idents = start_server(workers=3, PREFORK_USER="nobody").identities()
        assert_degraded_but_shared(idents, "unusable")

    def test_read_only_lock_dir(self, start_server: Any, lock_dir: Path) -> None:
        lock_dir.mkdir(mode=0o500)
        os.chown(lock_dir, NOBODY.pw_uid, NOBODY.pw_gid)
        idents = start_server(workers=2, PREFORK_USER="nobody").identities()
        assert_degraded_but_shared(idents, "not writable")

    def test_world_writable_lock_dir_is_refused(self, start_server: Any, lock_dir: Path) -> None:
        lock_dir.mkdir()
        os.chmod(lock_dir, 0o777)
        os.chown(lock_dir, NOBODY.pw_uid, NOBODY.pw_gid)
        idents = start_server(workers=2, PREFORK_USER="nobody").identities()
        assert_degraded_but_shared(idents, "writable by other users")
        assert list(lock_dir.iterdir()) == []  # nothing was written there

    def test_lock_dir_owned_by_someone_else_is_refused(
        self, start_server: Any, lock_dir: Path
    ) -> None:
        lock_dir.mkdir(mode=0o700)
        os.chown(lock_dir, NOBODY.pw_uid, NOBODY.pw_gid)
        # Root may write anywhere; the refusal must come from the owner check.
        idents = start_server(workers=2, PREFORK_USER="daemon").identities()
        assert_degraded_but_shared(idents, "owned by uid")


def test_world_writable_dir_refused_even_for_root(start_server: Any, lock_dir: Path) -> None:
    lock_dir.mkdir()
    os.chmod(lock_dir, 0o777)
    idents = start_server(workers=2).identities()
    assert_degraded_but_shared(idents, "writable by other users")


def test_lock_dir_is_a_file(start_server: Any, lock_dir: Path) -> None:
    lock_dir.write_text("not a directory")
    idents = start_server(workers=2).identities()
    assert_degraded_but_shared(idents, "not a directory")


def test_degraded_warning_is_logged_once(fresh: Path, caplog: pytest.LogCaptureFixture) -> None:
    fresh.write_text("")
    workerid.worker_id()
    workerid.start_time()
    workerid.identity()
    warnings = [r for r in caplog.records if r.name == "workerid" and "unusable" in r.getMessage()]
    assert len(warnings) == 1
    assert str(fresh) in warnings[0].getMessage()
    assert "WORKERID_DIR" in warnings[0].getMessage()


# --- hostile state files -----------------------------------------------------------


def _ns(lock_dir: Path) -> Path:
    ns = lock_dir / "default"
    ns.mkdir(parents=True, mode=0o700)
    os.chmod(lock_dir, 0o700)
    return ns


def test_symlinked_ledger_is_replaced_not_followed(
    start_server: Any, lock_dir: Path, shared_tmp: Path
) -> None:
    target = shared_tmp / "victim"
    target.write_text("precious")
    _ns(lock_dir)
    (lock_dir / _layout.LEDGER).symlink_to(target)
    idents = start_server(workers=2, WORKERID_NAMESPACE="default").identities()
    assert sorted(i["worker_id"] for i in idents) == [1, 2]
    assert target.read_text() == "precious"
    assert not (lock_dir / _layout.LEDGER).is_symlink()
    assert json.loads((lock_dir / _layout.LEDGER).read_text())["v"] == 2


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{",
        b"\x00\xff garbage",
        b'{"v": 1, "entries": [], "floor": 0, "seq": 0, "extra": 1}',
        b'{"v": 1, "entries": [{"run": "../../etc", "slot": "x", "start": 1, "lane": 0, "seq": 0}], "floor": 1, "seq": 1}',  # noqa: E501
        b'{"v": 1, "entries": [], "floor": NaN, "seq": 0}',
        b"[" * 100_000,
        b'{"v": 1, "entries": [], "floor": 0, "seq": 0}' + b" " * (2 * 1024 * 1024),
    ],
    ids=["empty", "truncated", "binary", "extra-key", "path-key", "nan", "deep", "huge"],
)
def test_corrupt_ledger_is_ignored_and_rewritten(
    start_server: Any, lock_dir: Path, content: bytes
) -> None:
    _ns(lock_dir)
    (lock_dir / _layout.LEDGER).write_bytes(content)
    os.chmod(lock_dir / _layout.LEDGER, 0o600)
    idents = start_server(workers=2, WORKERID_NAMESPACE="default").identities()
    assert sorted(i["worker_id"] for i in idents) == [1, 2]
    assert len({i["start_time"] for i in idents}) == 1
    rewritten = json.loads((lock_dir / _layout.LEDGER).read_text())
    assert rewritten["v"] == 2 and len(rewritten["entries"]) == 1


def test_hostile_start_time_is_not_trusted(start_server: Any, lock_dir: Path) -> None:
    _ns(lock_dir)
    hostile = {"v": 2, "floor": 2**50, "seq": 0, "entries": []}
    (lock_dir / _layout.LEDGER).write_text(json.dumps(hostile))
    os.chmod(lock_dir / _layout.LEDGER, 0o600)
    idents = start_server(workers=2, WORKERID_NAMESPACE="default").identities()
    assert idents[0]["start_time"] < 2**40


def test_symlinked_slot_file_degrades(start_server: Any, lock_dir: Path, shared_tmp: Path) -> None:
    ns = _ns(lock_dir)
    target = shared_tmp / "elsewhere"
    target.write_text("")
    os.symlink(target, _layout.slots_file(str(ns)))
    idents = start_server(workers=2, WORKERID_NAMESPACE="default").identities()
    assert {i["worker_id"] for i in idents} == {None}
    only_reason(idents[0], "unusable")


def test_fifo_as_ledger_does_not_hang(start_server: Any, lock_dir: Path) -> None:
    _ns(lock_dir)
    os.mkfifo(lock_dir / _layout.LEDGER, 0o600)
    idents = start_server(workers=2, WORKERID_NAMESPACE="default").identities(timeout=15)
    assert sorted(i["worker_id"] for i in idents) == [1, 2]
