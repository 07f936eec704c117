"""Read a lock directory without changing it: who holds which worker ID.

Runs in its own process (``workerid status``): ``F_GETLK`` never reports the
caller's own locks, and opening then closing a slot file would drop any locks
the caller held on it.
"""

from __future__ import annotations

import os
import stat
from typing import Any

from . import _generation, _layout, _procfs, _reclock, _statefile

_SCAN_MIN = 64
_SCAN_MAX = 4096


def _holders(path: str) -> list[dict[str, Any]]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return []
    found = []
    try:
        index = 0
        while index < _SCAN_MAX:
            if index >= _SCAN_MIN and _reclock.holder(fd, index, 0) is None:
                break  # nothing held at or beyond this byte
            pid = _reclock.holder(fd, index)
            if pid is not None:
                argv = _procfs.cmdline(pid) or []
                found.append({"worker_id": index + 1, "pid": pid, "cmdline": " ".join(argv)})
            index += 1
    finally:
        os.close(fd)
    return found


def _namespace(ns_dir: str, name: str) -> dict[str, Any]:
    report: dict[str, Any] = {"namespace": name, "path": ns_dir, "runs": [], "errors": []}
    owner = os.stat(ns_dir).st_uid
    ledger = _generation.Ledger()
    try:
        raw = _statefile.read_json(os.path.join(ns_dir, _layout.LEDGER), owner=owner)
        if raw is not None:
            ledger = _generation.parse(raw)
    except ValueError as exc:
        report["errors"].append(f"ledger: {exc}")
    newest = max(ledger.entries, key=lambda e: e.seq, default=None)
    for entry in sorted(ledger.entries, key=lambda e: -e.seq):
        report["runs"].append(
            {
                "generation": entry.run,
                "start_time": entry.start,
                "lane": entry.lane,
                "current": entry is newest,
                "slots": _holders(_layout.slots_file(ns_dir, entry.lane)),
            }
        )
    if newest is not None:
        report["generation"] = newest.run
        report["start_time"] = newest.start
    return report


def scan(lock_dir: str) -> dict[str, Any]:
    """Everything ``workerid status`` shows, as plain data."""
    report: dict[str, Any] = {"lock_dir": lock_dir, "namespaces": [], "errors": []}
    try:
        names = sorted(os.listdir(lock_dir))
    except OSError as exc:
        report["errors"].append(f"{lock_dir}: {exc.strerror}")
        return report
    for name in names:
        ns_dir = os.path.join(lock_dir, name)
        try:
            if not stat.S_ISDIR(os.lstat(ns_dir).st_mode):
                continue
            report["namespaces"].append(_namespace(ns_dir, name))
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
            mark = "current" if run["current"] else "older"
            lines.append(
                f"  run {run['generation']} ({mark}) start_time {run['start_time']} "
                f"lane {run['lane']}: {len(run['slots'])} live"
            )
            for slot in run["slots"]:
                lines.append(
                    f"    worker {slot['worker_id']:>3}  pid {slot['pid']:>7}  {slot['cmdline']}"
                )
    return "\n".join(lines)
