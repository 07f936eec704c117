"""``workerid verify``: run the scenarios on real servers and print the verdict.

Hook for the main CLI: :func:`add_parser` adds the ``verify`` sub-command
and :func:`run` runs it; ``python -m workerid.verify`` runs it standalone.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from . import records, scenarios, workspace
from .report import Report, Verdict, format_table
from .servers import SERVERS, Options, ServerError
from .servers._base import binary
from .servers.mod_wsgi import DEBIAN_SHORTHAND, DEBIAN_WSGI_SO, resolve_wsgi_so, wsgi_so_problem
from .session import Session

#: what ``--server all`` runs, in order
ALL = ("mod_wsgi", "mod_wsgi-site", "gunicorn", "uwsgi", "uvicorn")
#: the executables each server needs
NEEDS = {
    "mod_wsgi": ("mod_wsgi-express", "apache2"),
    "mod_wsgi-site": ("mod_wsgi-express", "apache2"),
    "gunicorn": ("gunicorn",),
    "uwsgi": ("uwsgi",),
    "uvicorn": ("uvicorn",),
}


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--server",
        choices=(*ALL, "all"),
        default="all",
        help="which server to verify (mod_wsgi: mod_wsgi-express; mod_wsgi-site: a plain "
        "Apache config with WSGIDaemonProcess); default: all",
    )
    p.add_argument("--workers", type=int, default=4, help="worker processes (default 4)")
    p.add_argument(
        "--restarts", type=int, default=3, help="full restarts, the last two in one second"
    )
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the report as JSON")
    p.add_argument("--keep", action="store_true", help="keep the run directory and logs")
    p.add_argument("--user", default="www-data", help="the worker user (default www-data)")
    p.add_argument(
        "--mod-wsgi-so",
        metavar="PATH",
        help=f"mod_wsgi-site: the Apache module to load instead of the venv's mod_wsgi-express "
        f"one; {DEBIAN_SHORTHAND!r} is Debian's and Ubuntu's packaged {DEBIAN_WSGI_SO} "
        "(libapache2-mod-wsgi-py3). It must be built for this venv's Python: the daemon "
        "processes run with python-home=<this venv>",
    )


SUMMARY = "start real servers (mod_wsgi, gunicorn, uWSGI, uvicorn) and check workerid on them"

DESCRIPTION = """\
Start each server for real on 127.0.0.1 with a probe application, as the
worker user, and check what workerid promises: worker IDs exactly 1..N, one
worker count and start time per run, a strictly later start time after each
restart, the freed ID reused after kill -9 or recycling, once() run once per
run, and an unwritable lock directory reported, never fatal. Prints a
PASS/FAIL table. Run as root; the servers and their workers run as --user,
who must be able to read this Python environment (the venv)."""

EPILOG = """\
examples:
  sudo workerid verify
  sudo workerid verify --server gunicorn --workers 2 --json report.json
  sudo workerid verify --server mod_wsgi-site --mod-wsgi-so debian

Exit code 0 if every check passed, 1 if one failed (the run directory and the
servers' logs are kept and printed), 2 on bad arguments or when not run as
root."""


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "verify",
        help=SUMMARY,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _arguments(p)
    p.set_defaults(func=run)


def missing_binaries(name: str, prefix: Path, wsgi_so: Path | None = None) -> list[str]:
    """The executables ``name`` needs that are not installed.

    A given ``wsgi_so`` replaces mod_wsgi-express (it only locates the venv's module).
    """
    probe = Options(1, Path(), Path(), Path(), Path(), prefix=prefix)
    missing = []
    for exe in NEEDS[name]:
        if wsgi_so is not None and exe == "mod_wsgi-express":
            continue
        try:
            binary(probe, exe)
        except ServerError:
            missing.append(exe)
    return missing


def wsgi_so_of(name: str, args: argparse.Namespace) -> Path | None:
    """The ``--mod-wsgi-so`` that server ``name`` loads (only mod_wsgi-site loads one)."""
    value = getattr(args, "mod_wsgi_so", None)
    return resolve_wsgi_so(value) if value and name == "mod_wsgi-site" else None


def verify_server(name: str, root: Path, args: argparse.Namespace, report: Report) -> None:
    base = root / name
    wsgi_so = wsgi_so_of(name, args)
    opts = Options(
        workers=args.workers,
        run_dir=base / "run",
        state_dir=base / "state",
        lock_dir=base / "locks",
        db_path=base / "state" / "verify.sqlite",
        user=args.user,
        group=args.user,
        wsgi_so=wsgi_so,
    )
    missing = missing_binaries(name, opts.prefix, wsgi_so)
    if missing:
        report.add(
            name, "setup", "installed", Verdict("server installed", f"missing {missing}", False)
        )
        return
    workspace.prepare_dirs(base, opts)
    uid, gid = workspace.worker_user(opts)
    conn = records.prepare(str(opts.db_path), uid, gid)
    server = SERVERS[name](opts)
    report.logs[name] = [str(p) for p in server.log_paths]
    session = Session(server, report, records.Ledger(conn))
    steps = scenarios.ordered(restarts=args.restarts, ro_dir=base / "locks-ro")
    try:
        scenarios.run_all(session, steps)
    finally:
        conn.close()


def run(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        print(
            "workerid verify: run as root (Apache and the workers run as --user)", file=sys.stderr
        )
        return 2
    if args.workers < 1:
        print("workerid verify: --workers must be at least 1", file=sys.stderr)
        return 2
    if args.mod_wsgi_so:
        if args.server not in ("mod_wsgi-site", "all"):
            print(
                f"workerid verify: --mod-wsgi-so is for --server mod_wsgi-site, not {args.server} "
                "(mod_wsgi-express loads the module it was built with)",
                file=sys.stderr,
            )
            return 2
        python = f"{sys.version_info[0]}.{sys.version_info[1]}"
        problem = wsgi_so_problem(resolve_wsgi_so(args.mod_wsgi_so), python)
        if problem is not None:
            print(f"workerid verify: --mod-wsgi-so {args.mod_wsgi_so}: {problem}", file=sys.stderr)
            return 2
    names = ALL if args.server == "all" else (args.server,)
    root = Path(tempfile.mkdtemp(prefix="workerid-verify-"))
    os.chmod(root, 0o755)  # noqa: S103 - the worker user must reach its dirs inside
    report = Report()
    denied: PermissionError | None = None
    try:
        for name in names:
            began = time.monotonic()
            try:
                verify_server(name, root, args, report)
            except PermissionError as exc:
                # Popen(user=...) of a server in a venv the worker user cannot
                # read (servers/_process.py): nothing after it can run either.
                denied = exc
                report.add(name, "setup", "startable", Verdict("server starts", str(exc), False))
                break
            report.seconds[name] = time.monotonic() - began
    finally:
        print(format_table(report))
        for topic, note in report.notes.items():
            print(f"  {topic}: {note}")
        if args.json:
            report.write_json(args.json)
        if args.keep or not report.ok:
            print(f"run directory kept: {root}")
            for server in report.failed_servers():
                for path in report.logs.get(server, []):
                    print(f"  {server} log: {path}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    if denied is not None:
        print(_denied_message(denied, args.user), file=sys.stderr)
        return 1
    return 0 if report.ok else 1


def _denied_message(exc: PermissionError, user: str) -> str:
    path = exc.filename or sys.prefix
    return (
        f"workerid verify: the worker user {user} cannot run {path} ({exc.strerror}): "
        f"make the venv world-readable (chmod -R a+rX {sys.prefix} and a+x on every "
        "directory above it) or pass --user with a user who can read it"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="workerid verify",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _arguments(parser)
    return run(parser.parse_args(argv))
