"""``workerid`` command line: status, identity (and, later, verify and neutron)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence


def _cmd_status(args: argparse.Namespace) -> int:
    from . import _config, status

    lock_dir = args.dir or os.environ.get(_config.ENV_DIR) or _config.default_lock_dir()
    report = status.scan(lock_dir)
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(status.format_text(report))
    return 1 if report["errors"] else 0


def _cmd_identity(args: argparse.Namespace) -> int:
    from . import _identity

    # Look, do not touch: a CLI call must not record a run or take an ID.
    ident = _identity.peek()
    if args.json:
        json.dump(ident.as_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for key, value in ident.as_dict().items():
            print(f"{key:20} {value}")
    return 0


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

    workers = args.workers
    if workers is None:
        lock_dir = args.lock_dir or os.path.join(neutron_config.lock_path()[0], "workerid")
        workers = _live_workers(lock_dir)
    try:
        checks = check.run(
            args.db_url,
            args.api,
            host=args.host,
            workers=workers,
            tunnel_types=args.tunnel_types.split(",") if args.tunnel_types else None,
            token=args.token or os.environ.get("OS_TOKEN"),
        )
    except check.CheckError as exc:
        print(f"workerid neutron-check: {exc}", file=sys.stderr)
        return 2
    if args.json:
        json.dump([c.__dict__ for c in checks], sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(check.format_table(checks))
    return 0 if all(c.ok for c in checks) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="workerid",
        description="Worker ID, worker count and server start time for any WSGI/ASGI server.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("status", help="show who holds which worker ID in a lock directory")
    p.add_argument("--dir", help="lock directory (default: WORKERID_DIR or the per-user default)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_status)

    p = sub.add_parser("identity", help="show what workerid resolves for this very process")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_identity)

    from .verify import cli as verify_cli

    verify_cli.add_parser(sub)

    p = sub.add_parser("neutron", help="files for serving OpenStack Neutron with workerid")
    nsub = p.add_subparsers(dest="neutron_command", required=True)
    nsub.add_parser("wsgi-path", help="print the path of the shipped neutron-api.wsgi")
    nsub.add_parser("site-config", help="print an Apache site for Neutron under mod_wsgi")
    p.set_defaults(func=_cmd_neutron)

    p = sub.add_parser(
        "neutron-check", help="check a Neutron deployment's segment ranges, hash ring and API"
    )
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
    p.add_argument("--lock-dir", help="workerid lock dir (default: <lock_path>/workerid)")
    p.add_argument("--tunnel-types", help="comma-separated (default: from [ml2] type_drivers)")
    p.add_argument("--token", help="Keystone token (default: $OS_TOKEN; none with noauth)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_neutron_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
