#!/usr/bin/env bash
# Build the Sphinx documentation (docs/) with warnings as errors, nitpicky.
#
#   bash scripts/docs.sh                     # build into a temp dir, removed afterwards
#   DOCS_OUT=/tmp/workerid-docs bash scripts/docs.sh   # keep the HTML there
#   DOCS_VENV=/path/to/venv bash scripts/docs.sh       # a venv that has sphinx + myst-parser
#
# Without DOCS_VENV, /tmp/workerid-docs-venv is created (with /usr/bin/python3) and sphinx
# and myst-parser installed into it from PyPI, once. autodoc imports this tree's src/, not an
# installed workerid. Exit status: 0 only if the build had no warning at all.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
start=$(date +%s.%N)

if [[ -n "${DOCS_VENV:-}" ]]; then
    venv=$DOCS_VENV
    if ! "$venv/bin/python" -c 'import sphinx, myst_parser' 2>/dev/null; then
        echo "docs.sh: DOCS_VENV=$venv has no sphinx and myst-parser" \
            "(pip install sphinx myst-parser into it)" >&2
        exit 2
    fi
else
    venv=/tmp/workerid-docs-venv
    if ! "$venv/bin/python" -c 'import sphinx, myst_parser' 2>/dev/null; then
        echo "docs.sh: creating $venv (sphinx, myst-parser)" >&2
        /usr/bin/python3 -m venv "$venv"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check sphinx myst-parser
    fi
fi

if [[ -n "${DOCS_OUT:-}" ]]; then
    out=$DOCS_OUT
    mkdir -p "$out"
else
    out=$(mktemp -d "${TMPDIR:-/tmp}/workerid-docs.XXXXXX")
    trap 'rm -rf "$out"' EXIT
fi

versions=$("$venv/bin/python" -c \
    'import sphinx, myst_parser, docutils; print(f"Sphinx {sphinx.__version__}, myst-parser {myst_parser.__version__}, docutils {docutils.__version__}")')
echo "docs.sh: $versions; output in $out"

status=0
# -W: warnings are errors; --keep-going: report them all; -n: nitpicky (every reference
# must resolve); -E: read every source afresh; -d: doctrees out of the tree.
PYTHONPATH="$repo/src${PYTHONPATH:+:$PYTHONPATH}" \
    "$venv/bin/python" -m sphinx -b html -W --keep-going -n -E -q \
    -d "$out/.doctrees" -w "$out/warnings.log" "$repo/docs" "$out/html" || status=$?

elapsed=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
if [[ $status -ne 0 ]]; then
    echo "docs.sh: FAILED (sphinx-build exit $status) after ${elapsed}s" >&2
    exit 1
fi
echo "docs.sh: OK in ${elapsed}s: $out/html/index.html"
