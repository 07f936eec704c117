"""``workerid status`` reads a live lock directory from another process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any


def status(lock_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workerid", "status", "--dir", str(lock_dir), *extra],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_status_lists_every_live_worker(start_server: Any, lock_dir: Path) -> None:
    server = start_server(workers=3)
    idents = server.identities()
    out = status(lock_dir, "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    (ns,) = report["namespaces"]
    assert ns["namespace"] == idents[0]["namespace"]
    assert ns["generation"] == idents[0]["generation"]
    assert ns["start_time"] == idents[0]["start_time"]
    current = next(run for run in ns["runs"] if run["current"])
    assert current["supervisor_pid"] == server.master["pid"]
    assert report["runs"][0]["generation"] == idents[0]["generation"]
    held = {slot["worker_id"]: slot["pid"] for slot in ns["slots"]}
    assert held == {i["worker_id"]: i["pid"] for i in idents}
    assert all("prefork.py" in slot["cmdline"] for slot in ns["slots"])


def test_status_sees_a_killed_worker_go_and_its_replacement_come(
    start_server: Any, lock_dir: Path
) -> None:
    server = start_server(workers=2)
    victim = server.identities()[0]
    server.kill9(victim["pid"])
    server.identities()
    text = status(lock_dir).stdout
    assert f"pid {victim['pid']:>7}" not in text
    assert text.count("    worker ") == 2, text
    assert "(current)" in text


def test_status_of_a_missing_directory_fails_plainly(shared_tmp: Path) -> None:
    out = status(shared_tmp / "nope")
    assert out.returncode == 1
    assert "No such file or directory" in out.stdout


def test_status_reports_a_corrupt_ledger_and_goes_on(start_server: Any, lock_dir: Path) -> None:
    start_server(workers=1).identities()
    (lock_dir / "ledger.json").write_text("{garbage")
    out = status(lock_dir, "--json")
    report = json.loads(out.stdout)
    assert "ledger" in report["errors"][0]
    assert report["namespaces"][0]["slots"]  # and goes on
