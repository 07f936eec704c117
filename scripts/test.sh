#!/usr/bin/env bash
# The project's test command (README, .ci/run): lint, types, then the suite.
# The suite runs against this work tree, never a stale installed copy: the
# tree is installed (non-editable) into the world-readable venv that
# scripts/setup-system.sh built (real servers and workers running as other
# users import it from there), and src/ is put first on PYTHONPATH for the
# test process and the pre-fork servers it starts. tests/conftest.py fails
# the run if what it imported is not this tree's code.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${WORKERID_VENV:-/opt/workerid/venv}"
cd "$ROOT"
echo "== ruff"; "$VENV/bin/ruff" check src tests bench examples
echo "== ruff format"; "$VENV/bin/ruff" format --check src tests bench examples
echo "== mypy"; "$VENV/bin/mypy"
echo "== install this tree into $VENV"
SRC_COPY="$(mktemp -d /tmp/workerid-src.XXXXXX)"
trap 'rm -rf "$SRC_COPY"' EXIT
tar -C "$ROOT" --exclude=./.git --exclude=./build --exclude=./dist --exclude='*.egg-info' \
    --exclude=__pycache__ -cf - pyproject.toml README.md src | tar -C "$SRC_COPY" -xf -
"$VENV/bin/python" -m pip install -q --no-cache-dir --force-reinstall --no-deps "$SRC_COPY"
chmod -R a+rX "$VENV"
echo "== pytest"
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
# -p no:cacheprovider: the clone may be read-only for the test run's users.
"$VENV/bin/python" -m pytest -p no:cacheprovider "$@"
echo "== package (sdist + wheel, PyPI's and Debian 12's toolchains, the sdist's tests)"
bash "$ROOT/scripts/check-package.sh"
echo "== docs (Sphinx, warnings are errors)"
bash "$ROOT/scripts/docs.sh"
echo "== Debian package (dpkg-buildpackage, lintian, autopkgtest against Debian's mod_wsgi)"
bash "$ROOT/scripts/check-debian.sh"
