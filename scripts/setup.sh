#!/usr/bin/env bash
# Prepare a fresh machine: a virtualenv in .venv holding exactly the versions in locks/ (which CI passed
# with), plus the project itself (editable).
#   scripts/setup.sh            runtime only                      (locks/runtime.txt)
#   scripts/setup.sh test       + test tools, redis-server and chromium (Debian packages) when missing
#   scripts/setup.sh bench      + test tools and benchmark-only packages (Scrapy, TRL)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "error: Python 3.11 or newer is required (set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi

lock=locks/runtime.txt
case "${1:-}" in
  "") ;;
  test) lock=locks/test.txt ;;
  bench) lock=locks/bench.txt ;;
  *) echo "usage: scripts/setup.sh [test|bench]" >&2; exit 2 ;;
esac

source scripts/uv.sh
[ -x .venv/bin/python ] || "$UV" venv --quiet --python "$PYTHON" .venv
# sync: installs what the lock lists, removes what it does not (a no-op in a second when up to date).
"$UV" pip sync --quiet --require-hashes --python .venv/bin/python "$lock"
"$UV" pip install --quiet --no-deps --python .venv/bin/python -e .

need_apt=()
if [ "$lock" != locks/runtime.txt ]; then
  command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
  command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "installing Debian packages: ${need_apt[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
