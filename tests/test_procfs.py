"""What workerid reads from /proc, checked against the kernel's own files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from workerid import _procfs


def test_boot_id_is_the_kernels_and_is_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_procfs, "_boot_id", None)
    kernel = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert _procfs.boot_id() == kernel
    # it cannot change while the process lives: a second call does not read /proc again
    monkeypatch.setattr(_procfs, "_PROC", "/nonexistent")
    assert _procfs.boot_id() == kernel


def test_boot_id_is_none_without_procfs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_procfs, "_boot_id", None)
    monkeypatch.setattr(_procfs, "_PROC", "/nonexistent")
    assert _procfs.boot_id() is None
    monkeypatch.setattr(_procfs, "_PROC", "/proc")
    assert _procfs.boot_id() is not None  # an absent /proc is not remembered


def test_start_ticks_tell_a_process_from_its_pid_successor() -> None:
    mine = _procfs.start_ticks(os.getpid())
    parent = _procfs.start_ticks(os.getppid())
    assert mine is not None and parent is not None and parent <= mine
    assert _procfs.start_ticks(2**22 + 1) is None  # above pid_max: no such process
