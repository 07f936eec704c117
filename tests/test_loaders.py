"""Loader detection, with fake server modules (the real servers run in the verify suite)."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest

import workerid
from workerid import _identity, loaders
from workerid.loaders import _cmdline, mod_wsgi


@pytest.fixture
def fake_module(monkeypatch: pytest.MonkeyPatch) -> Any:
    def install(name: str, **attrs: Any) -> types.ModuleType:
        mod = types.ModuleType(name)
        for key, value in attrs.items():
            setattr(mod, key, value)
        monkeypatch.setitem(sys.modules, name, mod)
        return mod

    return install


def test_uwsgi_values_pass_through_untouched(fresh: Path, fake_module: Any) -> None:
    fake_module(
        "uwsgi",
        worker_id=lambda: 3,
        numproc=4,
        masterpid=lambda: 1,
        started_on=1700000000,
        opt={"start-time": b"1700000123"},
    )
    _identity._reset_for_tests()
    ident = workerid.identity()
    assert (ident.worker_id, ident.worker_id_source) == (3, "uwsgi")
    assert (ident.worker_count, ident.worker_count_source) == (4, "uwsgi")
    assert (ident.start_time, ident.start_time_source) == (1700000123, "uwsgi")
    assert ident.loader == "uwsgi"


def test_uwsgi_started_on_when_no_start_time_option(fresh: Path, fake_module: Any) -> None:
    fake_module(
        "uwsgi", worker_id=lambda: 1, numproc=2, masterpid=lambda: 1, started_on=1700000000, opt={}
    )
    _identity._reset_for_tests()
    assert workerid.start_time() == 1700000000


def test_uwsgi_master_has_no_worker_id(fresh: Path, fake_module: Any) -> None:
    fake_module(
        "uwsgi", worker_id=lambda: 0, numproc=2, masterpid=lambda: 1, started_on=1700000000, opt={}
    )
    _identity._reset_for_tests()
    assert workerid.worker_id() is None
    assert workerid.start_time() == 1700000000


def test_mod_wsgi_daemon_with_metrics(fresh: Path, fake_module: Any) -> None:
    fake_module(
        "mod_wsgi",
        process_group="neutron-api",
        application_group="",
        maximum_processes=4,
        server_metrics=lambda: {"restart_time": 1700000000.5, "running_generation": 2},
    )
    _identity._reset_for_tests()
    ident = workerid.identity()
    assert ident.loader == "mod_wsgi"
    assert ident.namespace == "mod_wsgi.neutron-api"
    assert (ident.worker_count, ident.worker_count_source) == (4, "mod_wsgi")
    assert ident.worker_id is not None
    assert ident.start_time is not None and ident.start_time >= 1700000000
    assert ident.degraded == ()


def test_mod_wsgi_without_metrics_says_what_to_enable(fresh: Path, fake_module: Any) -> None:
    fake_module("mod_wsgi", process_group="", maximum_processes=2, server_metrics=lambda: None)
    _identity._reset_for_tests()
    ident = workerid.identity()
    assert ident.namespace == "mod_wsgi.embedded"
    assert mod_wsgi.METRICS_OFF in ident.degraded


def test_mod_wsgi_pypi_package_alone_is_not_apache(fake_module: Any) -> None:
    fake_module("mod_wsgi")  # mod_wsgi-express's package: no process_group
    assert mod_wsgi.detect() is None


def test_two_daemon_groups_get_separate_namespaces(fake_module: Any) -> None:
    fake_module("mod_wsgi", process_group="api/one", maximum_processes=2)
    first = loaders.detect().namespace
    fake_module("mod_wsgi", process_group="api two", maximum_processes=2)
    assert first != loaders.detect().namespace
    assert first == "mod_wsgi.api_one"


def test_lone_process_is_worker_1_of_1(fresh: Path) -> None:
    ident = workerid.identity()
    assert ident.loader == "generic"
    assert (ident.worker_id, ident.worker_count) == (1, 1)
    assert ident.supervisor_pid is None


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["gunicorn", "-w", "4", "app"], 4),
        (["gunicorn", "-w4", "app"], 4),
        (["gunicorn", "--workers=3", "app"], 3),
        (["gunicorn", "--workers", "2", "-w", "5"], 5),
        (["uvicorn", "--workers", "x"], None),
        (["gunicorn", "-w", "0"], None),
        (["gunicorn", "app"], None),
    ],
)
def test_worker_count_from_a_master_command_line(argv: list[str], expected: int | None) -> None:
    assert _cmdline.option_int(argv, "-w", "--workers") == expected


def test_configure_beats_environment_beats_detection(
    fresh: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKERID_COUNT", "7")
    _identity._reset_for_tests()
    assert (workerid.worker_count(), workerid.identity().worker_count_source) == (7, "env")
    workerid.configure(worker_count=5)
    assert (workerid.worker_count(), workerid.identity().worker_count_source) == (5, "config")


@pytest.mark.parametrize("value", ["abc", "0", "-1", "99999"])
def test_bad_environment_values_are_ignored_with_a_warning(
    fresh: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, value: str
) -> None:
    monkeypatch.setenv("WORKERID_COUNT", value)
    _identity._reset_for_tests()
    assert workerid.worker_count() == 1  # detected, as if unset
    assert any("WORKERID_COUNT" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"namespace": "../etc"},
        {"namespace": ""},
        {"worker_count": 0},
        {"lock_dir": "relative"},
        {"max_slots": True},
    ],
)
def test_configure_rejects_bad_values_at_once(kwargs: dict[str, Any]) -> None:
    with pytest.raises((TypeError, ValueError)):
        workerid.configure(**kwargs)
