#!/usr/bin/env bash
# Set everything up, then run the linter and the whole test suite (unit, integration, browser), then the
# vllm backend's tests on vLLM's real engine (its CPU build) in their own venv, .venv-vllm.
# Arguments go to both pytest runs (e.g. -k memory, -x); fails when either run fails.
# The main run spreads its modules over TEST_WORKERS pytest-xdist workers (default 2; 0 runs it in one
# process). The vllm run, mostly vLLM's engine starting, goes alongside it; its output follows the main run's.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
scripts/setup.sh vllm
.venv/bin/ruff check .

vllm_log=$(mktemp "${TMPDIR:-/tmp}/vllm-tests.XXXXXX")
# In a session of its own (setsid), so that an interrupted run stops the vllm run's server and engine with it;
# niced, so that on a small machine it takes the cores the main run leaves idle (its workers wait on servers
# often) rather than slowing the main run, which is the longer one.
setsid --wait nice -n 15 .venv-vllm/bin/python -m pytest -m vllm tests/vllm "$@" >"$vllm_log" 2>&1 &
vllm_pid=$!
trap 'exit 130' INT TERM
trap '[ -n "$vllm_pid" ] && kill -TERM -- "-$vllm_pid" 2>/dev/null; rm -f "$vllm_log"' EXIT

status=0
.venv/bin/python -m pytest -m "not vllm" -n "${TEST_WORKERS:-2}" --dist loadscope --no-loadscope-reorder "$@" \
  || status=$?
vllm_status=0
wait "$vllm_pid" || vllm_status=$?
vllm_pid=
echo
echo "=== vllm run: .venv-vllm/bin/python -m pytest -m vllm tests/vllm $* ==="
cat "$vllm_log"
# 5: no test selected, as when arguments pick only the tests of the other run
if [ $# -gt 0 ]; then
  [ "$status" -eq 5 ] && status=0
  [ "$vllm_status" -eq 5 ] && vllm_status=0
fi
[ "$status" -ne 0 ] && exit "$status"
exit "$vllm_status"
