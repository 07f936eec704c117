"""Pieces of the end-to-end lab (tests/e2e/lab) that can be checked without Neutron or OVN."""

from __future__ import annotations

import pytest
from tests.e2e.lab import db


def test_clear_ovn_nb_destroys_every_neutron_root_row_in_one_transaction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rows = {
        "Logical_Switch": "ls-1\n",
        "Port_Group": "pg-1\npg-2\n",  # a security group's, neutron_pg_drop
        "DHCP_Options": "",
    }
    calls: list[list[str]] = []

    def run(cmd: list[str], **_: object) -> str:
        calls.append(cmd)
        return rows[cmd[-1]] if "list" in cmd else ""

    monkeypatch.setattr(db, "run", run)
    db.clear_ovn_nb()
    *lists, destroy = calls
    assert [c[-1] for c in lists] == ["Logical_Switch", "Port_Group", "DHCP_Options"]
    assert destroy[0] == "ovn-nbctl"
    assert " ".join(destroy).split(" -- ")[1:] == [
        "--if-exists destroy Logical_Switch ls-1",
        "--if-exists destroy Port_Group pg-1",
        "--if-exists destroy Port_Group pg-2",
    ]


def test_clear_ovn_nb_with_nothing_to_clear_writes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(db, "run", lambda cmd, **_: calls.append(cmd) or "")
    db.clear_ovn_nb()
    assert all("list" in c for c in calls) and len(calls) == 3
