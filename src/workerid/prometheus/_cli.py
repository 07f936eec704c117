"""``workerid prometheus status|gc``: a multiprocess directory, by key."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from typing import Any

from . import _files
from ._report import Key, collect_garbage, inspect

_DESCRIPTION = """\
prometheus_client's multiprocess directory as workerid keys it: one set of
files per worker ID (w<ID>-<tag>), PID keys where a process had no worker ID
of its own, and whether a live process uses each key (it holds the key's
lock). Keys without a workerid lock are prometheus_client's own PID files:
"unmanaged", listed and never removed."""

_EPILOG = """\
examples:
  workerid prometheus status --dir /run/myapp/metrics
  workerid prometheus gc --dry-run

gc removes the live gauges (gauge_live*) of keys no live process uses, as
prometheus_client's mark_process_dead does, and the lock files of keys with no
file left. Counters, histograms, summaries and other gauges stay: removing one
would make a total go backwards (see docs/design.md).

Exit code 0 if the directory was read (and gc removed all it meant to), 1 if
it could not be (or a file could not be removed: another user's, say)."""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "prometheus",
        help="show or clean a prometheus_client multiprocess directory keyed by worker",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    psub = p.add_subparsers(dest="prometheus_command", required=True, metavar="COMMAND")
    for name, summary in (
        ("status", "list the keys, their files and bytes, live or dead"),
        ("gc", "remove what provably belongs to dead keys and counts for nothing"),
    ):
        q = psub.add_parser(
            name,
            help=summary,
            description=summary[0].upper() + summary[1:] + ".",
            epilog=_EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        q.add_argument("--dir", help="the directory (default: PROMETHEUS_MULTIPROC_DIR)")
        q.add_argument("--json", action="store_true", help="print JSON")
        if name == "gc":
            q.add_argument("--dry-run", action="store_true", help="list, remove nothing")
        q.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    path = args.dir or os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        print(
            "workerid prometheus: no directory: --dir or PROMETHEUS_MULTIPROC_DIR", file=sys.stderr
        )
        return 2
    try:
        if args.prometheus_command == "gc":
            removed = collect_garbage(path, dry_run=args.dry_run)
            problems = _files.take_problems()
            for name, why in problems:
                print(f"workerid prometheus: cannot remove {name}: {why}", file=sys.stderr)
            if args.json:
                report = {"dir": path, "dry_run": args.dry_run, "removed": removed}
                print(json.dumps({**report, "problems": [n for n, _ in problems]}))
            else:
                verb = "would remove" if args.dry_run else "removed"
                print(f"{verb} {len(removed)} file(s) in {path}")
                for name in removed:
                    print(f"  {name}")
            return 1 if problems else 0
        keys = inspect(path)
    except OSError as exc:
        print(f"workerid prometheus: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"dir": path, "keys": [dataclasses.asdict(k) for k in keys]}, indent=2))
    else:
        print(_format(path, keys))
    return 0


def _format(path: str, keys: list[Key]) -> str:
    lines = [f"{path}: {len(keys)} key(s)"]
    if keys:
        lines.append(
            f"  {'key':<22} {'state':<10} {'pid':>8} {'files':>5} {'bytes':>10}  removable"
        )
    for k in keys:
        pid = str(k.pid) if k.pid is not None else "-"
        lines.append(
            f"  {k.key:<22} {k.state:<10} {pid:>8} {len(k.files):>5} {k.bytes:>10}  "
            f"{len(k.removable) or ''}"
        )
    return "\n".join(lines)
