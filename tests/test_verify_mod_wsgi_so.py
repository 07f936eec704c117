"""``workerid verify --mod-wsgi-so``: the checks of a given mod_wsgi.so, without a server.

The real runs, on Debian's packaged module, are in tests/test_verify_servers.py.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from workerid.verify import cli
from workerid.verify.servers import mod_wsgi
from workerid.verify.servers.mod_wsgi import (
    DEBIAN_WSGI_SO,
    configured_line,
    mapped,
    resolve_wsgi_so,
    wsgi_so_problem,
)

SRC = Path(__file__).resolve().parent.parent / "src"
PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"


def _a_mapped_library() -> str:
    """A shared library this very process has mapped (libc at least)."""
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split(maxsplit=5)[-1].strip()
            if path.startswith("/") and ".so" in path:
                return path
    raise AssertionError("no shared library mapped in this process")


def test_debian_is_the_packaged_module_and_a_path_is_made_absolute(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert (
        resolve_wsgi_so("debian") == DEBIAN_WSGI_SO == Path("/usr/lib/apache2/modules/mod_wsgi.so")
    )
    monkeypatch.chdir(tmp_path)
    assert resolve_wsgi_so("mod_wsgi.so") == tmp_path / "mod_wsgi.so"
    assert resolve_wsgi_so("./debian") == tmp_path / "debian"


def test_a_missing_module_names_the_debian_package_or_the_shorthand(tmp_path: Path) -> None:
    missing = wsgi_so_problem(tmp_path / "mod_wsgi.so", PYTHON)
    assert missing is not None
    assert "no such file" in missing and "--mod-wsgi-so debian" in missing
    if not DEBIAN_WSGI_SO.exists():
        debian = wsgi_so_problem(DEBIAN_WSGI_SO, PYTHON)
        assert debian is not None and "apt-get install libapache2-mod-wsgi-py3" in debian


def test_a_directory_or_a_file_that_is_no_shared_object_is_refused(tmp_path: Path) -> None:
    assert "not a regular file" in (wsgi_so_problem(tmp_path, PYTHON) or "")
    text = tmp_path / "mod_wsgi.so"
    text.write_text("LoadModule wsgi_module x\n")
    assert "not a shared object" in (wsgi_so_problem(text, PYTHON) or "")


def test_a_module_of_another_python_is_refused_before_any_server_starts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    elf = tmp_path / "mod_wsgi.so"
    elf.write_bytes(b"\x7fELF" + bytes(60))
    monkeypatch.setattr(mod_wsgi, "linked_python", lambda so: ("3.99", []))
    problem = wsgi_so_problem(elf, PYTHON)
    assert problem is not None
    assert f"built for Python 3.99, but this venv is Python {PYTHON}" in problem
    monkeypatch.setattr(mod_wsgi, "linked_python", lambda so: (PYTHON, ["libfoo.so.1"]))
    assert "libfoo.so.1" in (wsgi_so_problem(elf, PYTHON) or "")
    monkeypatch.setattr(mod_wsgi, "linked_python", lambda so: (PYTHON, []))
    assert wsgi_so_problem(elf, PYTHON) is None


@pytest.mark.skipif(not DEBIAN_WSGI_SO.exists(), reason="libapache2-mod-wsgi-py3 not installed")
def test_debians_module_is_read_with_ldd() -> None:
    version, missing = mod_wsgi.linked_python(DEBIAN_WSGI_SO)
    assert version is not None and version.startswith("3."), version
    assert missing == []
    other = "2.7" if version != "2.7" else "3.0"
    assert f"built for Python {version}" in (wsgi_so_problem(DEBIAN_WSGI_SO, other) or "")


def test_mapped_sees_a_loaded_library_by_its_resolved_path() -> None:
    library = _a_mapped_library()
    assert mapped(os.getpid(), library)
    assert not mapped(os.getpid(), library + ".not-loaded")
    assert not mapped(2**22 + 1, library)  # no such process


def test_configured_line_is_the_last_version_line_of_the_error_log(tmp_path: Path) -> None:
    log = tmp_path / "error_log"
    assert configured_line(log) is None
    log.write_text(
        "[mpm_event:notice] AH00489: Apache/2.4.71 (Debian) mod_wsgi/4.9.4 Python/3.11 "
        "configured -- resuming normal operations\n"
        "[mpm_event:notice] AH00493: SIGUSR1 received.  Doing graceful restart\n"
        "[mpm_event:notice] AH00489: Apache/2.4.71 (Debian) mod_wsgi/6.1.1 Python/3.11 "
        "configured -- resuming normal operations\n"
    )
    assert configured_line(log) == "mod_wsgi/6.1.1 Python/3.11"


def test_only_mod_wsgi_site_loads_a_given_module() -> None:
    args = argparse.Namespace(mod_wsgi_so="debian")
    assert cli.wsgi_so_of("mod_wsgi-site", args) == DEBIAN_WSGI_SO
    for name in ("mod_wsgi", "gunicorn", "uwsgi", "uvicorn"):
        assert cli.wsgi_so_of(name, args) is None
    assert cli.wsgi_so_of("mod_wsgi-site", argparse.Namespace()) is None


def test_a_given_module_needs_no_mod_wsgi_express(tmp_path: Path) -> None:
    # an empty venv: neither mod_wsgi-express nor (unless on PATH) apache2
    without = cli.missing_binaries("mod_wsgi-site", tmp_path, DEBIAN_WSGI_SO)
    assert "mod_wsgi-express" not in without
    if not any((Path(d) / "mod_wsgi-express").exists() for d in os.get_exec_path()):
        assert "mod_wsgi-express" in cli.missing_binaries("mod_wsgi-site", tmp_path)


def _verify(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKERID_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "workerid", "verify", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="verify checks its arguments as root only")
@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("--server", "gunicorn", "--mod-wsgi-so", "debian"), "is for --server mod_wsgi-site"),
        (("--server", "mod_wsgi", "--mod-wsgi-so", "debian"), "is for --server mod_wsgi-site"),
        (("--server", "mod_wsgi-site", "--mod-wsgi-so", "/nonexistent/mod_wsgi.so"), "no such"),
        (("--mod-wsgi-so", "/etc/passwd"), "not a shared object"),
    ],
)
def test_a_bad_mod_wsgi_so_is_a_usage_error_before_any_server_starts(
    args: tuple[str, ...], said: str
) -> None:
    out = _verify(*args)
    assert out.returncode == 2, out
    assert out.stdout == ""  # no table: nothing ran
    (line,) = out.stderr.splitlines()
    assert line.startswith("workerid verify: ") and said in line, line
