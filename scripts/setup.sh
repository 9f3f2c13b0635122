#!/usr/bin/env bash
# Prepare a fresh machine: a virtualenv in .venv with the project installed.
#   scripts/setup.sh            runtime only
#   scripts/setup.sh test       + test tools, redis-server and chromium (Debian packages) when missing
#   scripts/setup.sh bench      + benchmark-only packages (Scrapy, TRL)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "error: Python 3.11 or newer is required (set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi

extras=""
for want in "$@"; do extras="${extras:+$extras,}$want"; done

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# torch is pinned to 2.13.0 in pyproject.toml: a range would pull a multi-GB CUDA build.
stamp=".venv/.installed-${extras:-runtime}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet -e ".${extras:+[$extras]}"
  touch "$stamp"
fi

need_apt=()
if [[ ",$extras," == *",test,"* ]]; then
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
