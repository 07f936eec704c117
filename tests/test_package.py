"""The packaging metadata says what the project is, once, in a form Debian 12 can build.

Cheap and offline: reads pyproject.toml, MANIFEST.in and LICENSE of this tree (or of an
unpacked sdist, which carries all three). scripts/check-package.sh does the real builds.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest

import workerid

tomllib = pytest.importorskip("tomllib", reason="tomllib is Python 3.11+")

ROOT = Path(__file__).resolve().parent.parent
DEV_TOOLS = {"pytest", "hypothesis", "mypy", "ruff"}
PYTHONS = ["3.10", "3.11", "3.12", "3.13", "3.14"]
# Debian 12's python3-setuptools; `python3 -m build --no-isolation` must work with it.
DEBIAN12_SETUPTOOLS = (66, 1, 1)


@pytest.fixture(scope="module")
def pyproject() -> dict[str, Any]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def req_name(req: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
    assert match, req
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def test_one_version_source(pyproject: dict[str, Any]) -> None:
    project = pyproject["project"]
    assert "version" not in project
    assert "version" in project["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "workerid.__version__"}
    # setuptools reads it without importing the package: one literal assignment.
    tree = ast.parse((ROOT / "src" / "workerid" / "__init__.py").read_text())
    values = [
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets)
    ]
    assert len(values) == 1
    assert isinstance(values[0], ast.Constant)
    assert values[0].value == workerid.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+((a|b|rc)\d+)?(\.dev\d+)?", workerid.__version__)


def test_builds_with_debian12_setuptools(pyproject: dict[str, Any]) -> None:
    (setuptools,) = [
        r for r in pyproject["build-system"]["requires"] if req_name(r) == "setuptools"
    ]
    for bound in re.findall(r">=?\s*([\d.]+)", setuptools):
        assert tuple(int(p) for p in bound.split(".")) <= DEBIAN12_SETUPTOOLS, setuptools
    # A PEP 639 license expression (`license = "..."`) needs setuptools 77.
    assert not isinstance(pyproject["project"].get("license"), str)
    assert "license-files" not in pyproject["project"]


def test_license_is_apache_2(pyproject: dict[str, Any]) -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License\n")
    assert "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert "APPENDIX: How to apply the Apache License to your work." in text
    assert (
        "License :: OSI Approved :: Apache Software License" in pyproject["project"]["classifiers"]
    )


def test_classifiers(pyproject: dict[str, Any]) -> None:
    project = pyproject["project"]
    classifiers = project["classifiers"]
    assert len(classifiers) == len(set(classifiers))
    for version in PYTHONS:
        assert f"Programming Language :: Python :: {version}" in classifiers
    assert project["requires-python"] == f">={PYTHONS[0]}"


def test_extras_are_for_users(pyproject: dict[str, Any]) -> None:
    extras = pyproject["project"]["optional-dependencies"]
    offered = {req_name(r) for reqs in extras.values() for r in reqs}
    assert not offered & DEV_TOOLS
    groups = pyproject["dependency-groups"]
    grouped = {req_name(r) for name in ("test", "lint") for r in groups[name]}
    assert grouped >= DEV_TOOLS


def test_neutron_extra_bounded(pyproject: dict[str, Any]) -> None:
    (neutron,) = [
        r
        for r in pyproject["project"]["optional-dependencies"]["neutron"]
        if req_name(r) == "neutron"
    ]
    assert re.search(r">=\s*28\b", neutron), neutron
    assert re.search(r"<\s*30\b", neutron), neutron


def test_sdist_carries_what_its_tests_need() -> None:
    lines = [
        line.split("#", 1)[0].split() for line in (ROOT / "MANIFEST.in").read_text().splitlines()
    ]
    grafted = {words[1] for words in lines if words[:1] == ["graft"]}
    included = {w for words in lines if words[:1] == ["include"] for w in words[1:]}
    assert grafted >= {"src", "tests", "docs", "bench", "scripts"}
    assert included >= {"LICENSE", "README.md", "CHANGELOG.md", "pyproject.toml"}
    for path in included | grafted:
        assert (ROOT / path).exists(), path
    for needed in ("tests/conftest.py", "tests/prefork.py", "tests/helpers", "tests/e2e"):
        assert (ROOT / needed).exists(), needed
