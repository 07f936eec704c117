"""Sphinx configuration for workerid's documentation (built by scripts/docs.sh)."""

from __future__ import annotations

import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
# Document this tree, not an installed copy (scripts/docs.sh sets PYTHONPATH too).
sys.path.insert(0, os.path.join(ROOT, "src"))

import workerid  # noqa: E402  (importing it does nothing: nothing runs at import time)

project = "workerid"
author = "workerid developers"
copyright = "workerid developers"
release = workerid.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
]
# No intersphinx: the build must not need the network.

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# MyST: README-style Markdown (design.md, CHANGELOG.md) as it is; "page.md#heading" links work.
myst_heading_anchors = 3

# autodoc: the docstrings are plain reST (``literals`` and :func: roles), no napoleon needed.
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
# ``degraded: Degraded`` in signatures links to the entry in api.rst.
autodoc_type_aliases = {"Degraded": "workerid.Degraded"}

nitpicky = True
# Standard-library names that would need intersphinx (not allowed: no network at build time).
nitpick_ignore = [
    ("py:class", "os.PathLike"),
    ("py:class", "collections.abc.Callable"),
    ("py:func", "functools.partial"),
]

html_theme = "alabaster"
html_theme_options = {
    "description": "uWSGI's worker ID, worker count and start time, under any loader",
    "fixed_sidebar": True,
}
html_static_path: list[str] = []
