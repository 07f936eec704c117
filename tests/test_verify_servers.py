"""``workerid verify`` for real: each server started, signalled and checked by the harness."""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from workerid.verify import cli
from workerid.verify.report import Report, format_table

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
