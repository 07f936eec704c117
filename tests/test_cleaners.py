"""State cleaners against live workers: real systemd-tmpfiles ageing, real ``rm -rf``."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

TMPFILES = shutil.which("systemd-tmpfiles")


def _backdate(root: Path, seconds: float) -> None:
    old = time.time() - seconds
    # bottom-up: listing a directory would refresh its atime after we set it
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in [*dirnames, *filenames]:
            os.utime(os.path.join(dirpath, name), (old, old), follow_symlinks=False)
    os.utime(root, (old, old))


def _clean(conf: Path) -> None:
    subprocess.run([TMPFILES, "--clean", str(conf)], check=True, timeout=60, capture_output=True)


@pytest.mark.skipif(TMPFILES is None, reason="needs systemd-tmpfiles")
def test_tmpfiles_ageing_does_not_remove_a_live_servers_lock_dir(
    start_server: Any, shared_tmp: Path
) -> None:
    """systemd-tmpfiles ages /tmp on many distributions (upstream: 10 days). A live
    server's lock directory is skipped (its workers flock it); the same directory
    with no live worker, and an unlocked sibling, are removed."""
    base = shared_tmp / "aged"
    base.mkdir(mode=0o1777)
    conf = shared_tmp / "age.conf"
    conf.write_text(f"d {base} 1777 root root amAM:1h\n")
    lock_dir = base / "workerid-0"
    control = base / "control"
    control.mkdir()
    (control / "file").write_text("x")

    server = start_server(workers=3, WORKERID_DIR=str(lock_dir), WORKERID_NAMESPACE="app")
    before = {i["worker_id"]: i for i in server.identities()}
    assert sorted(before) == [1, 2, 3]
    _backdate(base, 86400)
    _clean(conf)

    assert not control.exists(), "tmpfiles did not age the unlocked directory: test is void"
    assert (lock_dir / "app" / "slots.lock").exists()
    assert (lock_dir / "ledger.json").exists()
    server.kill9(before[2]["pid"])
    after = {i["worker_id"]: i for i in server.identities()}
    assert sorted(after) == [1, 2, 3]
    assert after[2]["start_time"] == before[2]["start_time"]

    server.stop()
    _backdate(base, 86400)
    _clean(conf)
    assert not lock_dir.exists(), "with no live worker the directory is aged like any other"
