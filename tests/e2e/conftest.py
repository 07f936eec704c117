"""The end-to-end tests need real Neutron, MariaDB and OVN: opt in with WORKERID_E2E=1.

``bash scripts/e2e-neutron.sh`` sets everything up and runs them; the default suite only
collects them and skips them.
"""

from __future__ import annotations

import os

import pytest

OPT_IN = "WORKERID_E2E"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "e2e: end-to-end against real Neutron (26.0.x-29.0.x) + MariaDB + OVN under mod_wsgi "
        f"(slow, root only; run with {OPT_IN}=1, see scripts/e2e-neutron.sh)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get(OPT_IN) == "1":
        return
    skip = pytest.mark.skip(
        reason=f"end-to-end Neutron test: needs {OPT_IN}=1 and the environment of "
        "tests/e2e/neutron_env.sh (run: bash scripts/e2e-neutron.sh)"
    )
    for item in items:
        if item.get_closest_marker("e2e") is not None:
            item.add_marker(skip)
