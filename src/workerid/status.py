"""Read a lock directory without changing it: who holds which worker ID.

Runs in its own process (``workerid status``): ``F_GETLK`` never reports the
caller's own locks, and opening then closing a slot file would drop any locks
the caller held on it.
"""

from __future__ import annotations

import os
import stat
from typing import Any

from . import _generation, _layout, _procfs, _reclock, _slots, _statefile, loaders

_SCAN_MIN = 64
_SCAN_MAX = 4096

#: what ``multiprocessing`` (spawn) puts on a child's command line
_SPAWNED = ("from multiprocessing.spawn import spawn_main", "--multiprocessing-fork")


def _is_python(arg: str) -> bool:
    return os.path.basename(arg).startswith("python")


def _server_of(argv: list[str]) -> str | None:
    """The server of ``uvicorn ...``, ``python /venv/bin/uvicorn ...``, ``python -m uvicorn``."""
    candidates = argv[:1]
    if argv and _is_python(argv[0]):
        rest = argv[1:]
        if len(rest) >= 2 and rest[0] == "-m":
            candidates = [rest[1]]
        elif rest and not rest[0].startswith("-"):
            candidates = [rest[0]]
    for arg in candidates:
        name = os.path.basename(arg).split(".")[0]
        if name in loaders.SPAWNING_SERVERS:
            return name
    return None


def _short(argv: list[str]) -> str:
    """A server command as typed: ``uvicorn app:app``, not ``python /venv/bin/uvicorn app:app``."""
    if (
        len(argv) >= 2
        and _is_python(argv[0])
        and not argv[1].startswith("-")
        and _server_of(argv[1:2]) is not None
    ):
        return " ".join([os.path.basename(argv[1]), *argv[2:]])
    return " ".join(argv)


def describe(pid: int, argv: list[str]) -> dict[str, Any]:
    """What to show for a holder: its command line, or, for a worker that
    multiprocessing spawned (uvicorn's, hypercorn's), who spawned it."""
    raw = " ".join(argv)
    row: dict[str, Any] = {"cmdline": raw, "command": raw, "spawned_by": None}
    if not any(mark in arg for arg in argv for mark in _SPAWNED):
        return row
    ppid = _procfs.parent_pid(pid)
    parent = _procfs.cmdline(ppid) if ppid else None
    if not parent:
        row["command"] = f"multiprocessing worker (parent gone): {raw}"
        return row
    row["spawned_by"] = " ".join(parent)
    server = _server_of(parent)
    kind = f"{server} worker" if server else "multiprocessing worker"
    row["command"] = f"{kind} (spawned by: {_short(parent)})"
    return row


def _holders(fd: int) -> list[dict[str, Any]]:
    """Who holds which worker ID in the ``slots.lock`` open on ``fd``."""
    found = []
    index = 0
    while index < _SCAN_MAX:
        if index >= _SCAN_MIN and _reclock.holder(fd, index, _layout.RUN_BASE - index) is None:
            break  # nothing held at or beyond this byte
        pid = _reclock.holder(fd, index)
        if pid is not None:
            argv = _procfs.cmdline(pid) or []
            found.append({"worker_id": index + 1, "pid": pid, **describe(pid, argv)})
        index += 1
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
    report: dict[str, Any] = {
        "namespace": name,
        "path": ns_dir,
        "runs": [],
        "slots": [],
        "errors": [],
    }
    try:
        fd = _statefile.open_existing(_layout.slots_file(ns_dir))
    except OSError as exc:
        report["errors"].append(f"{_layout.SLOTS}: {exc}")
        return report
    if fd is None:
        return report
    try:
        report["slots"] = _holders(fd)
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
            os.lstat(_layout.slots_file(ns_dir))  # a namespace has one, whatever else is here
        except FileNotFoundError:
            continue
        except OSError as exc:
            report["errors"].append(f"{ns_dir}: {exc.strerror}")
            continue
        report["namespaces"].append(_namespace(ns_dir, name, ledger))
    if not report["namespaces"] and not os.path.lexists(os.path.join(lock_dir, _layout.LEDGER)):
        report["errors"].append(
            f"{lock_dir}: not a workerid lock directory (no {_layout.LEDGER}, "
            f"no namespace directory with a {_layout.SLOTS})"
        )
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
            mark = "newest run" if run["current"] else "older run"
            state = "(current)" if run["current"] else "(still draining)"
            lines.append(
                f"  {mark} {run['generation']} {state} start_time {run['start_time']} "
                f"supervisor {run['supervisor_pid'] or '-'}"
            )
        for slot in ns["slots"]:
            lines.append(
                f"    worker {slot['worker_id']:>3}  pid {slot['pid']:>7}  "
                f"{slot.get('command') or slot['cmdline']}"
            )
    return "\n".join(lines)


def scan_backend(url: str, namespace: str | None = None) -> dict[str, Any]:
    """Who holds which worker ID in a backend (``workerid status --backend URL``)."""
    from . import backends

    report: dict[str, Any] = {"backend": url, "holders": [], "once": [], "errors": []}
    try:
        parsed = backends.parse(url)
    except (TypeError, ValueError) as exc:
        report["errors"].append(str(exc))
        return report
    report["backend"] = parsed.safe
    try:
        engine = backends.connect(parsed, timeout=5.0)
    except backends.BackendError as exc:
        report["errors"].append(str(exc))
        return report
    try:
        report["holders"] = engine.holders(namespace)
        report["once"] = engine.once_results(namespace)
    except backends.BackendError as exc:
        report["errors"].append(str(exc))
    finally:
        engine.close()
    return report


def format_backend_text(report: dict[str, Any]) -> str:
    lines = [f"backend: {report['backend']}"]
    lines += [f"  error: {e}" for e in report["errors"]]
    if not report["holders"] and not report["errors"]:
        lines.append("  (no live holders)")
    namespace = None
    for row in report["holders"]:
        if row["namespace"] != namespace:
            namespace = row["namespace"]
            lines.append(f"namespace {namespace}:")
        if "lease_ttl_left" in row:
            age = f"lease {row.get('lease') or '-'} ttl left {row['lease_ttl_left']}s"
        else:
            beat = row.get("last_beat_ago")
            age = f"last beat {beat if beat is not None else '-'}s ago"
        lines.append(
            f"    worker {row['worker_id']:>3}  host {row['host']}  pid {row['pid']:>7}  "
            f"token {row['fencing_token']}  held {row['held_for']}s  {age}"
        )
    if report.get("once"):
        lines.append('once(scope="deploy"):')
    for row in report.get("once", []):
        where = f"by pid {row['pid']} on {row['host']}" if row["pid"] else ""
        running = row.get("running")
        now = f"  running in pid {running['pid']} on {running['host']}" if running else ""
        error = f"  ({row['error']})" if row["state"] == "failed" and row.get("error") else ""
        lines.append(
            f"    {row['namespace']}  deploy {row['deploy']}  {row['name']}: {row['state']} "
            f"{where}{error}{now}".rstrip()
        )
    return "\n".join(lines)
