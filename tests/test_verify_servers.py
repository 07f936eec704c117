"""``workerid verify`` for real: each server started, signalled and checked by the harness."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from workerid.verify import cli, client, records, workspace
from workerid.verify.report import Report, format_table
from workerid.verify.servers import Options
from workerid.verify.servers.mod_wsgi import DEBIAN_PACKAGE, DEBIAN_WSGI_SO, ModWsgiSite

SRC = Path(__file__).resolve().parent.parent / "src"
PREFIX = cli.Options.__dataclass_fields__["prefix"].default

pytestmark = [
    pytest.mark.servers,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (Apache, workers as www-data)"),
]


@pytest.mark.parametrize("server", cli.ALL)
def test_verify(server: str) -> None:
    missing = cli.missing_binaries(server, cli.Options.__dataclass_fields__["prefix"].default)
    if missing:
        pytest.skip(f"{server}: not installed: {missing}")
    root = Path(tempfile.mkdtemp(prefix="workerid-verify-test-"))
    os.chmod(root, 0o755)
    args = argparse.Namespace(workers=2, restarts=2, user="www-data")
    report = Report()
    try:
        cli.verify_server(server, root, args, report)
        failed = [r for r in report.rows if not r.ok]
        assert report.rows and not failed, format_table(report)
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --- Debian's packaged mod_wsgi (libapache2-mod-wsgi-py3), as Debian and Ubuntu serve Neutron ---


def _debian_mod_wsgi() -> str:
    """The upstream version of the installed libapache2-mod-wsgi-py3 (4.9.4 on Debian 12).

    scripts/setup-system.sh installs it, so CI must have it: missing there is a failure,
    elsewhere a skip.
    """
    version = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", DEBIAN_PACKAGE],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    if not DEBIAN_WSGI_SO.exists() or not version:
        why = f"{DEBIAN_PACKAGE} is not installed (scripts/setup-system.sh installs it)"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return version.split(":")[-1].split("-")[0]


def test_verify_mod_wsgi_site_on_debians_packaged_module(shared_tmp: Path) -> None:
    upstream = _debian_mod_wsgi()
    if cli.missing_binaries("mod_wsgi-site", PREFIX, DEBIAN_WSGI_SO):
        pytest.skip("apache2 is not installed")
    # One plain start first: the workers import this tree's workerid (not an installed copy)
    # through Debian's module, whose version Apache logs.
    opts = Options(
        4,
        shared_tmp / "run",
        shared_tmp / "state",
        shared_tmp / "locks",
        shared_tmp / "state" / "verify.sqlite",
        wsgi_so=DEBIAN_WSGI_SO,
    )
    workspace.prepare_dirs(shared_tmp, opts)
    records.prepare(str(opts.db_path), *workspace.worker_user(opts)).close()
    server = ModWsgiSite(opts)
    server.start()
    try:
        (loads,) = server.started_checks()
        answer = client.get(server.port)
    finally:
        server.stop()
    assert loads[1].ok, loads
    assert f"error log: mod_wsgi/{upstream} Python/" in loads[1].observed, loads
    assert os.path.realpath(DEBIAN_WSGI_SO) in loads[1].expected
    assert answer is not None and answer["worker_count"] == 4, answer
    assert answer["module"] == str(SRC / "workerid" / "__init__.py"), answer
    assert f"mod_wsgi/{upstream} " in (shared_tmp / "run" / "error_log").read_text()

    # Then every scenario, through the command's own code path, with 4 processes.
    args = argparse.Namespace(workers=4, restarts=2, user="www-data", mod_wsgi_so="debian")
    report = Report()
    cli.verify_server("mod_wsgi-site", shared_tmp / "verify", args, report)
    failed = [r for r in report.rows if not r.ok]
    assert report.rows and not failed, format_table(report)
    (loaded,) = [r for r in report.rows if r.check == "loads the mod_wsgi.so"]
    assert loaded.scenario == "cold start"
    assert os.path.realpath(DEBIAN_WSGI_SO) in loaded.expected, loaded
    assert f"mod_wsgi/{upstream} Python/" in loaded.observed, loaded
    assert {"cold start", "kill -9", "graceful reload", "degraded lock dir"} <= {
        r.scenario for r in report.rows
    }
