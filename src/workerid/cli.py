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
    import workerid

    ident = workerid.identity()
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

    p = sub.add_parser("neutron", help="files for serving OpenStack Neutron with workerid")
    nsub = p.add_subparsers(dest="neutron_command", required=True)
    nsub.add_parser("wsgi-path", help="print the path of the shipped neutron-api.wsgi")
    nsub.add_parser("site-config", help="print an Apache site for Neutron under mod_wsgi")
    p.set_defaults(func=_cmd_neutron)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
