"""The ``workerid`` command line, run for real: ``python -m workerid`` from this tree."""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import workerid

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKERID_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def cli(
    *args: str, python: str = sys.executable, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    if "stdout" not in kwargs and "stderr" not in kwargs:
        kwargs["capture_output"] = True
    env = kwargs.pop("env", None) or _env()
    return subprocess.run(
        [python, "-m", "workerid", *args],
        env=env,
        text=True,
        timeout=120,
        check=False,
        **kwargs,
    )


# --- 1. --version -------------------------------------------------------------


def test_version_prints_the_package_version() -> None:
    out = cli("--version")
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"workerid {workerid.__version__}\n"


# --- 2. help ----------------------------------------------------------------------

SUBCOMMANDS = [
    ["status"],
    ["identity"],
    ["verify"],
    ["neutron"],
    ["neutron", "wsgi-path"],
    ["neutron", "site-config"],
    ["neutron", "check"],
]


@pytest.mark.parametrize("command", SUBCOMMANDS, ids=" ".join)
def test_every_subcommand_has_user_help_with_an_example(command: list[str]) -> None:
    out = cli(*command, "--help")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    rest = text.partition("\n\n")[2]
    description = rest.split("\n\n")[0]
    assert not description.startswith(("positional", "options")), "no description"
    assert re.search(r"^examples?:\n  (sudo )?workerid ", text, re.M), text
    # user help, not the module's developer docstring
    for developer_words in ("``", "Hook for", "add_parser", ":func:", "sub-command and"):
        assert developer_words not in text, text


def test_main_help_lists_each_subcommand_with_one_line() -> None:
    out = cli("--help")
    assert out.returncode == 0
    for name in ("status", "identity", "verify", "neutron", "neutron-check"):
        line = re.search(rf"^    {re.escape(name)}\s+(\S.*)$", out.stdout, re.M)
        wrapped = re.search(rf"^    {re.escape(name)}\n\s+(\S.*)$", out.stdout, re.M)
        assert line or wrapped, f"{name} has no one-line help:\n{out.stdout}"
    assert "deprecated" in out.stdout


# --- 10. exit codes ------------------------------------------------------------------


def test_exit_codes_are_documented_in_help_and_readme() -> None:
    help_text = cli("--help").stdout
    section = (ROOT / "README.md").read_text().split("## Command line")[1].split("\n## ")[0]
    for text in (help_text, section):
        assert "exit code" in text.lower()
        for code, words in (("0", "ok"), ("1", "degraded"), ("2", "usage"), ("141", "head")):
            assert re.search(rf"^\W*{code}\W.*{words}", text, re.M | re.I), (code, text)


def test_a_usage_error_exits_2() -> None:
    assert cli("no-such-command").returncode == 2
    assert cli("status", "--no-such-option").returncode == 2


# --- 3. closed stdout -------------------------------------------------------------------


@pytest.mark.parametrize("extra", [[], ["--json"]], ids=["text", "json"])
def test_status_into_a_closed_pipe_exits_quietly(
    start_server: Any, lock_dir: Path, extra: list[str]
) -> None:
    start_server(workers=2).identities()
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first write, as after `| head -1`
    try:
        out = cli("status", "--dir", str(lock_dir), *extra, stdout=write, stderr=subprocess.PIPE)
    finally:
        os.close(write)
    assert out.returncode == 141
    assert out.stderr == ""


def test_status_piped_into_head_prints_no_traceback(start_server: Any, lock_dir: Path) -> None:
    start_server(workers=4).identities()
    cmd = f"{sys.executable} -m workerid status --json --dir {lock_dir} | head -c 1"
    for _ in range(5):
        out = subprocess.run(
            ["sh", "-c", cmd], env=_env(), check=False, capture_output=True, text=True, timeout=60
        )
        assert out.stdout == "{"
        assert "Traceback" not in out.stderr and "BrokenPipe" not in out.stderr, out.stderr


# --- 4. what is a namespace ---------------------------------------------------------------


def test_status_of_proc_is_not_a_lock_directory() -> None:
    out = cli("status", "--dir", "/proc", "--json")
    assert out.returncode == 1
    report = json.loads(out.stdout)
    assert report["namespaces"] == []
    assert any("not a workerid lock directory" in e for e in report["errors"]), report
    text = cli("status", "--dir", "/proc")
    assert text.returncode == 1
    assert "not a workerid lock directory" in text.stdout
    assert "namespace 1:" not in text.stdout


def test_status_lists_only_directories_with_a_slots_file(start_server: Any, lock_dir: Path) -> None:
    idents = start_server(workers=1).identities()
    (lock_dir / "stray").mkdir()
    (lock_dir / "stray" / "notes.txt").write_text("not ours")
    out = cli("status", "--dir", str(lock_dir), "--json")
    assert out.returncode == 0, out.stdout
    report = json.loads(out.stdout)
    assert [ns["namespace"] for ns in report["namespaces"]] == [idents[0]["namespace"]]


def test_an_empty_directory_is_not_a_lock_directory(shared_tmp: Path) -> None:
    (shared_tmp / "sub").mkdir()
    out = cli("status", "--dir", str(shared_tmp))
    assert out.returncode == 1
    assert "not a workerid lock directory" in out.stdout


# --- 5. identity ---------------------------------------------------------------------------


def test_identity_with_an_ignored_setting_exits_1_one_reason_per_line(
    shared_tmp: Path,
) -> None:
    env = _env(WORKERID_DIR=str(shared_tmp / "locks"), WORKERID_COUNT="banana")
    out = cli("identity", env=env)
    assert out.returncode == 1, out.stdout
    assert not re.search(r"^degraded\s+[(\[]", out.stdout, re.M), out.stdout  # no tuple
    lines = out.stdout.splitlines()
    start = lines.index("degraded")
    reasons = []
    for line in lines[start + 1 :]:
        if not line.startswith("  - "):
            break
        reasons.append(line[4:])
    assert any("WORKERID_COUNT" in r for r in reasons), out.stdout
    assert "read-only" in lines[0]  # said once, above the values; not a degraded reason
    as_json = cli("identity", "--json", env=env)
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout)["degraded"] == reasons


def test_identity_exits_0_when_nothing_is_degraded(shared_tmp: Path) -> None:
    out = cli("identity", env=_env(WORKERID_DIR=str(shared_tmp / "locks")))
    assert out.returncode == 0, out.stdout
    assert re.search(r"^degraded\s+\(none\)$", out.stdout, re.M), out.stdout
    assert not (shared_tmp / "locks").exists(), "identity created the lock directory"


# --- 6. runs and spawned workers in status ---------------------------------------------------


def test_status_labels_the_newest_run_and_older_ones_still_draining(
    start_server: Any, lock_dir: Path
) -> None:
    env = {"WORKERID_NAMESPACE": "shared", "WORKERID_COUNT": "2"}
    old = start_server(workers=1, **env).identities()[0]
    new = start_server(workers=1, **env).identities()[0]
    assert old["generation"] != new["generation"]
    text = cli("status", "--dir", str(lock_dir)).stdout
    assert re.search(rf"^  newest run {new['generation']} \(current\) ", text, re.M), text
    assert re.search(rf"^  older run {old['generation']} \(still draining\) ", text, re.M), text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_status_names_uvicorn_workers_by_their_server(shared_tmp: Path, lock_dir: Path) -> None:
    uvicorn = Path(sys.executable).parent / "uvicorn"
    if not uvicorn.exists():
        pytest.skip("uvicorn is not installed next to this Python")
    (shared_tmp / "app.py").write_text(
        "import workerid\nworkerid.worker_id()\nasync def app(scope, receive, send):\n    pass\n"
    )
    port = str(_free_port())
    proc = subprocess.Popen(
        [str(uvicorn), "--workers", "2", "--port", port, "--app-dir", str(shared_tmp), "app:app"],
        env=_env(WORKERID_DIR=str(lock_dir)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        slots: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            out = cli("status", "--dir", str(lock_dir), "--json")
            if out.returncode == 0:
                slots = [s for ns in json.loads(out.stdout)["namespaces"] for s in ns["slots"]]
                if len(slots) == 2:
                    break
            time.sleep(0.2)
        assert len(slots) == 2, slots
        for slot in slots:
            assert "spawn_main" in slot["cmdline"]  # the raw command line stays
            assert "uvicorn" in slot["spawned_by"]
            command = f"uvicorn --workers 2 --port {port} --app-dir {shared_tmp} app:app"
            assert slot["command"] == f"uvicorn worker (spawned by: {command})"
        text = cli("status", "--dir", str(lock_dir)).stdout
        assert text.count("uvicorn worker (spawned by: uvicorn --workers 2") == 2, text
        assert "spawn_main" not in text
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)


# --- 7. neutron check -------------------------------------------------------------------------


def test_neutron_check_is_a_neutron_subcommand() -> None:
    out = cli("neutron", "check", "--db-url", "sqlite:///nowhere", "--workers", "1")
    assert out.returncode == 1
    assert "unsupported database URL scheme" in out.stderr
    assert "deprecated" not in out.stderr


def test_neutron_check_old_spelling_still_works_with_a_deprecation_note() -> None:
    out = cli("neutron-check", "--db-url", "sqlite:///nowhere", "--workers", "1")
    assert out.returncode == 1
    first, *rest = out.stderr.splitlines()
    assert "deprecated" in first and "workerid neutron check" in first
    assert "unsupported database URL scheme" in rest[0]
    new_help = cli("neutron", "check", "--help").stdout
    old_help = cli("neutron-check", "--help").stdout
    options = re.compile(r"^  (--[a-z-]+)", re.M)
    assert options.findall(new_help) == options.findall(old_help)
    assert "--db-url" in options.findall(new_help)


# --- 8. verify with a venv the worker user cannot read ------------------------------------------


def test_verify_with_an_unreadable_venv_says_what_to_do(shared_tmp: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("verify runs as root")
    try:
        pwd.getpwnam("www-data")
    except KeyError:
        pytest.skip("no www-data user")
    gunicorn = Path(sys.executable).parent / "gunicorn"
    if not gunicorn.exists():
        pytest.skip("gunicorn is not installed next to this Python")
    # A venv in a directory only root can enter: the worker user cannot run its gunicorn.
    private = shared_tmp / "private"
    private.mkdir(mode=0o700)
    os.chmod(private, 0o700)
    venv = private / "venv"
    (venv / "bin").mkdir(parents=True)
    base = Path(os.path.realpath(sys.executable))
    (venv / "pyvenv.cfg").write_text(
        f"home = {base.parent}\ninclude-system-site-packages = false\n"
    )
    (venv / "bin" / "python").symlink_to(base)
    shutil.copy(gunicorn, venv / "bin" / "gunicorn")
    out = cli("verify", "--server", "gunicorn", "--workers", "1", python=str(venv / "bin/python"))
    kept = re.search(r"^run directory kept: (\S+)$", out.stdout, re.M)
    if kept:
        shutil.rmtree(kept.group(1), ignore_errors=True)
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    (line,) = out.stderr.splitlines()
    assert str(venv / "bin" / "gunicorn") in line
    assert "www-data" in line and "world-readable" in line and "--user" in line


# --- 9. configure() errors name the argument ------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lock_dir": 123},
        {"lock_dir": b"/tmp/x"},
        {"lock_dir": "relative"},
        {"namespace": 5},
        {"namespace": "../etc"},
        {"worker_count": "many"},
        {"worker_count": 1.5},
        {"worker_count": 0},
        {"max_slots": True},
        {"max_slots": 10**6},
        {"settle_timeout": "5"},
        {"settle_timeout": -1},
    ],
    ids=repr,
)
def test_configure_errors_start_with_the_argument_name(kwargs: dict[str, Any]) -> None:
    (name,) = kwargs
    with pytest.raises((TypeError, ValueError)) as caught:
        workerid.configure(**kwargs)
    assert str(caught.value).startswith(name), caught.value
