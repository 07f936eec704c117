"""``workerid`` command line: status, identity, verify, prometheus and neutron."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

#: exit status when stdout was closed early (``workerid status | head -1``):
#: what a shell reports for a process killed by SIGPIPE (128 + 13)
EXIT_BROKEN_PIPE = 141

_EXIT_CODES = """\
exit codes:
  0    ok
  1    a check failed, the identity is degraded, or status found errors
  2    usage: bad arguments, or the command cannot run as invoked (verify not as root)
  141  stdout was closed before all output was written (piped into head, say)
"""

_MAIN_EPILOG = f"""\
examples:
  workerid status                  who holds which worker ID, per namespace
  workerid identity                what this process would resolve, and why
  sudo workerid verify --server gunicorn

{_EXIT_CODES}"""

_STATUS_DESCRIPTION = """\
Show a lock directory as the workers see it: the server runs recorded in its
ledger (the newest one, and older ones whose workers are still draining) and,
per namespace, which process holds which worker ID. Reads only; changes
nothing."""

_STATUS_EPILOG = """\
examples:
  workerid status
  workerid status --dir /run/neutron/workerid --json

Exit code 0 if the directory was read cleanly, 1 if it could not be read, is
not a workerid lock directory, or has errors (listed in the output)."""

_IDENTITY_DESCRIPTION = """\
Show what workerid would resolve for this very process: worker ID, worker
count, start time, the run (generation), and where each value came from.
Writes nothing and takes no worker ID, so run from a shell it shows what a
process started there would get."""

_IDENTITY_EPILOG = """\
examples:
  workerid identity
  WORKERID_DIR=/run/myapp/workerid workerid identity --json

Exit code 0 when nothing is degraded, 1 when "degraded" lists any reason (each
reason is printed on a line of its own)."""

_NEUTRON_DESCRIPTION = """\
Serve OpenStack Neutron under Apache mod_wsgi (or uWSGI) with workerid: print
the shipped .wsgi file's path or an Apache site, and check a deployment."""

_NEUTRON_EPILOG = """\
examples:
  workerid neutron wsgi-path
  workerid neutron site-config > /etc/apache2/sites-available/neutron-api.conf
  workerid neutron check --db-url mysql+pymysql://neutron:SECRET@localhost/neutron"""

_CHECK_DESCRIPTION = """\
Check a Neutron deployment's worker-dependent state: the Neutron release in
this Python environment (run it from Neutron's) is a supported one, workerid's
install() is active in the serving processes (they hold workerid's lock
directory, as /proc/locks shows), the default network segment ranges (exactly
one per tunnel type), the OVN hash ring (one row per API worker of this host,
one start time, none stale) and, with --api, that a network can be created.
Reads the database only; the test network is deleted again."""

_CHECK_EPILOG = """\
examples:
  workerid neutron check --db-url mysql+pymysql://neutron:SECRET@localhost/neutron \\
      --api http://127.0.0.1:9696

Exit code 0 if every check passed, 1 if one failed or the checks could not run
(no PyMySQL, database unreachable), 2 on bad arguments."""


def _dump(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2)
    sys.stdout.write("\n")


def _cmd_status(args: argparse.Namespace) -> int:
    from . import _config, status

    if args.backend:  # the cluster's holders, from the engine (issue 13)
        found = status.scan_backend(args.backend)
        if args.json:
            _dump(found)
        else:
            print(status.format_backend_text(found))
        return 1 if found["errors"] else 0
    lock_dir = args.dir or os.environ.get(_config.ENV_DIR) or _config.default_lock_dir()
    report = status.scan(lock_dir)
    if args.json:
        _dump(report)
    else:
        print(status.format_text(report))
    return 1 if report["errors"] else 0


def _cmd_identity(args: argparse.Namespace) -> int:
    from . import _identity

    # Look, do not touch: a CLI call must not record a run or take an ID.
    ident = _identity.peek()
    if args.json:
        _dump(ident.as_dict())
    else:
        print("(read-only: nothing recorded, no worker ID taken; the values it would get)")
        for key, value in ident.as_dict().items():
            if key == "degraded" and value:
                print(key)
                for reason in value:
                    print(f"  - {reason}")
            elif key == "degraded":
                print(f"{key:20} (none)")
            else:
                print(f"{key:20} {value}")
    return 1 if ident.degraded else 0


def _cmd_neutron(args: argparse.Namespace) -> int:
    from importlib import resources

    files = resources.files("workerid.neutron")
    wsgi = str(files / "neutron-api.wsgi")
    if args.neutron_command == "wsgi-path":
        print(wsgi)
    else:
        template = (files / "neutron-api.conf").read_text(encoding="utf-8")
        print(
            template.replace("@WSGI_PATH@", wsgi).replace("@WSGI_DIR@", os.path.dirname(wsgi)),
            end="",
        )
    return 0


def _live_workers(lock_dir: str) -> int | None:
    from . import status

    report = status.scan(lock_dir)
    counts = [len(ns["slots"]) for ns in report["namespaces"] if ns["runs"]]
    return sum(counts) if counts else None


def _cmd_neutron_check(args: argparse.Namespace) -> int:
    from .neutron import _config as neutron_config
    from .neutron import check

    if args.command == "neutron-check":
        print(
            "workerid: 'neutron-check' is deprecated and will be removed in the next release; "
            "use 'workerid neutron check'",
            file=sys.stderr,
        )
    workers = args.workers
    lock_dir = args.lock_dir or os.path.join(neutron_config.lock_path()[0], "workerid")
    if workers is None:
        workers = _live_workers(lock_dir)
    try:
        checks = check.run(
            args.db_url,
            args.api,
            host=args.host,
            workers=workers,
            tunnel_types=args.tunnel_types.split(",") if args.tunnel_types else None,
            token=args.token or os.environ.get("OS_TOKEN"),
            lock_dir=lock_dir,
        )
    except check.CheckError as exc:
        print(f"workerid neutron check: {exc}", file=sys.stderr)
        return 1
    if args.json:
        _dump([c.__dict__ for c in checks])
    else:
        print(check.format_table(checks))
    return 0 if all(c.ok for c in checks) else 1


def _check_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db-url", required=True, help="Neutron's [database] connection URL")
    p.add_argument("--api", help="Neutron API URL (e.g. http://127.0.0.1:9696); omit to skip")
    p.add_argument(
        "--host", help="Neutron's [DEFAULT] host (default: from its config, else hostname)"
    )
    p.add_argument(
        "--workers",
        type=int,
        help="API workers expected on this host (default: live workers in workerid's lock dir)",
    )
    p.add_argument(
        "--lock-dir",
        help="workerid lock dir: its live workers, and whether install() is active in the "
        "serving processes (default: <lock_path>/workerid)",
    )
    p.add_argument("--tunnel-types", help="comma-separated (default: from [ml2] type_drivers)")
    p.add_argument("--token", help="Keystone token (default: $OS_TOKEN; none with noauth)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_neutron_check)


def _add(
    sub: Any, name: str, summary: str, description: str, epilog: str
) -> argparse.ArgumentParser:
    """A sub-command with a one-line ``summary`` (in ``--help``) and its own help page."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=summary,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="workerid",
        description="Worker ID, worker count and server start time for any WSGI/ASGI server.",
        epilog=_MAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"workerid {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _add(
        sub,
        "status",
        "show the server runs and who holds which worker ID in a lock directory",
        _STATUS_DESCRIPTION,
        _STATUS_EPILOG,
    )
    p.add_argument("--dir", help="lock directory (default: WORKERID_DIR or the per-user default)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument(
        "--backend",
        metavar="URL",
        help="list the holders of a backend (postgresql://..., etcd://...) instead",
    )
    p.set_defaults(func=_cmd_status)

    p = _add(
        sub,
        "identity",
        "show what workerid resolves for this very process, and why",
        _IDENTITY_DESCRIPTION,
        _IDENTITY_EPILOG,
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_identity)

    from .verify import cli as verify_cli

    verify_cli.add_parser(sub)

    from .prometheus import _cli as prometheus_cli

    prometheus_cli.add_parser(sub)

    p = _add(
        sub,
        "neutron",
        "serve OpenStack Neutron with workerid: .wsgi file, Apache site, deployment check",
        _NEUTRON_DESCRIPTION,
        _NEUTRON_EPILOG,
    )
    nsub = p.add_subparsers(dest="neutron_command", required=True, metavar="COMMAND")
    q = _add(
        nsub,
        "wsgi-path",
        "print the path of the shipped neutron-api.wsgi",
        "Print the path of the neutron-api.wsgi file shipped with workerid, for\n"
        "Apache's WSGIScriptAlias.",
        "example:\n  workerid neutron wsgi-path",
    )
    q.set_defaults(func=_cmd_neutron)
    q = _add(
        nsub,
        "site-config",
        "print an Apache site for Neutron under mod_wsgi",
        "Print an Apache site for Neutron under mod_wsgi (Ubuntu's neutron-api.conf\n"
        "plus server-metrics and WSGIImportScript), pointing at the shipped .wsgi file.",
        "example:\n  workerid neutron site-config > /etc/apache2/sites-available/neutron-api.conf",
    )
    q.set_defaults(func=_cmd_neutron)
    q = _add(
        nsub,
        "check",
        "check segment ranges, hash ring and API of a Neutron deployment",
        _CHECK_DESCRIPTION,
        _CHECK_EPILOG,
    )
    _check_arguments(q)

    p = _add(
        sub,
        "neutron-check",
        "deprecated alias of 'neutron check' (removed in the next release)",
        _CHECK_DESCRIPTION + "\n\nDeprecated: use 'workerid neutron check'.",
        _CHECK_EPILOG.replace("neutron check", "neutron-check"),
    )
    _check_arguments(p)
    return parser


def _quiet_stdout() -> None:
    """Point stdout at /dev/null: the reader is gone, and the final flush must not fail."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = int(args.func(args))
        sys.stdout.flush()  # here, where a closed pipe can still be caught
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_BROKEN_PIPE
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
