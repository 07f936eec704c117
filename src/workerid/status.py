"""Read a lock directory without changing it: who holds which worker ID.

Runs in its own process (``workerid status``): ``F_GETLK`` never reports the
caller's own locks, and opening then closing a slot file would drop any locks
the caller held on it.
"""

from __future__ import annotations

import os
import stat
from typing import Any

from . import _generation, _layout, _procfs, _reclock, _slots, _statefile

_SCAN_MIN = 64
_SCAN_MAX = 4096


def _holders(path: str) -> list[dict[str, Any]]:
    try:
        fd = _statefile.open_existing(path)
    except OSError:
        return []
    if fd is None:
        return []
    found = []
    try:
        index = 0
        while index < _SCAN_MAX:
            if index >= _SCAN_MIN and _reclock.holder(fd, index, _layout.RUN_BASE - index) is None:
                break  # nothing held at or beyond this byte
            pid = _reclock.holder(fd, index)
            if pid is not None:
                argv = _procfs.cmdline(pid) or []
                found.append({"worker_id": index + 1, "pid": pid, "cmdline": " ".join(argv)})
            index += 1
    finally:
        os.close(fd)
    return found


def _run_row(entry: _generation.Entry, newest: _generation.Entry | None) -> dict[str, Any]:
    return {
        "generation": entry.run,
        "start_time": entry.start,
        "current": entry is newest,
        "supervisor_pid": entry.owner.pid or None,
    }


def _namespace(ns_dir: str, name: str, ledger: _generation.Ledger) -> dict[str, Any]:
    """One namespace: who holds which ID, and which runs have live workers here."""
    report: dict[str, Any] = {"namespace": name, "path": ns_dir, "runs": [], "errors": []}
    path = _layout.slots_file(ns_dir)
    report["slots"] = _holders(path)
    try:
        fd = _statefile.open_existing(path)
    except OSError as exc:
        report["errors"].append(f"{_layout.SLOTS}: {exc}")
        return report
    if fd is None:
        return report
    try:
        live = [e for e in ledger.entries if _slots.run_start(fd, e.run) is not None]
    finally:
        os.close(fd)
    newest = max(live, key=lambda e: e.seq, default=None)
    report["runs"] = [_run_row(e, newest) for e in sorted(live, key=lambda e: -e.seq)]
    if newest is not None:
        report["generation"] = newest.run
        report["start_time"] = newest.start
    return report


def scan(lock_dir: str) -> dict[str, Any]:
    """Everything ``workerid status`` shows, as plain data."""
    report: dict[str, Any] = {"lock_dir": lock_dir, "runs": [], "namespaces": [], "errors": []}
    try:
        names = sorted(os.listdir(lock_dir))
        owner = os.stat(lock_dir).st_uid
    except OSError as exc:
        report["errors"].append(f"{lock_dir}: {exc.strerror}")
        return report
    ledger, problem = _generation.read(lock_dir, owner)
    if problem:
        report["errors"].append(f"ledger: {problem}")
    newest = max(ledger.entries, key=lambda e: e.seq, default=None)
    report["runs"] = [_run_row(e, newest) for e in sorted(ledger.entries, key=lambda e: -e.seq)]
    for name in names:
        ns_dir = os.path.join(lock_dir, name)
        try:
            if not stat.S_ISDIR(os.lstat(ns_dir).st_mode):
                continue
            report["namespaces"].append(_namespace(ns_dir, name, ledger))
        except OSError as exc:
            report["errors"].append(f"{ns_dir}: {exc.strerror}")
    return report


def format_text(report: dict[str, Any]) -> str:
    lines = [f"lock directory: {report['lock_dir']}"]
    lines += [f"  error: {e}" for e in report["errors"]]
    if not report["namespaces"]:
        lines.append("  (no namespaces)")
    for ns in report["namespaces"]:
        lines.append(
            f"namespace {ns['namespace']}: generation {ns.get('generation', '-')} "
            f"start_time {ns.get('start_time', '-')}"
        )
        lines += [f"  error: {e}" for e in ns["errors"]]
        for run in ns["runs"]:
            mark = "current" if run["current"] else "older, still draining"
            lines.append(
                f"  run {run['generation']} ({mark}) start_time {run['start_time']} "
                f"supervisor {run['supervisor_pid'] or '-'}"
            )
        for slot in ns["slots"]:
            lines.append(
                f"    worker {slot['worker_id']:>3}  pid {slot['pid']:>7}  {slot['cmdline']}"
            )
    return "\n".join(lines)
