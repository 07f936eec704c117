#!/usr/bin/env bash
# The project's test command (README, .ci/run): lint, types, then the suite
# against the installed package in the world-readable venv that
# scripts/setup-system.sh built (tests run workers as other users).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${WORKERID_VENV:-/opt/workerid/venv}"
cd "$ROOT"
echo "== ruff"; "$VENV/bin/ruff" check src tests bench
echo "== ruff format"; "$VENV/bin/ruff" format --check src tests bench
echo "== mypy"; "$VENV/bin/mypy"
echo "== pytest"
# -p no:cacheprovider: the clone may be read-only for the test run's users.
exec "$VENV/bin/python" -m pytest -p no:cacheprovider "$@"
