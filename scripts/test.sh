#!/usr/bin/env bash
# Set everything up, then run the linter and the whole test suite (unit, integration, browser), then the
# vllm backend's tests on vLLM's real engine (its CPU build) in their own venv, .venv-vllm.
# Arguments go to both pytest runs (e.g. -k memory, -x); fails when either run fails.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
scripts/setup.sh vllm
.venv/bin/ruff check .
status=0
.venv/bin/python -m pytest -m "not vllm" "$@" || status=$?
vllm_status=0
.venv-vllm/bin/python -m pytest -m vllm tests/vllm "$@" || vllm_status=$?
# 5: no test selected, as when arguments pick only the tests of the other run
if [ $# -gt 0 ]; then
  [ "$status" -eq 5 ] && status=0
  [ "$vllm_status" -eq 5 ] && vllm_status=0
fi
[ "$status" -ne 0 ] && exit "$status"
exit "$vllm_status"
