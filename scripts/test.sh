#!/usr/bin/env bash
# Set everything up, then run the linter and the whole test suite (unit, integration, browser).
# Arguments go to pytest (e.g. -k memory, -x).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
