#!/usr/bin/env bash
# Prepare a fresh machine: a virtualenv in .venv holding exactly the versions in locks/ (which CI passed
# with), plus the project itself (editable).
#   scripts/setup.sh            runtime only                      (locks/requirements-runtime.txt)
#   scripts/setup.sh test       + test tools, redis-server and chromium (Debian packages) when missing
#   scripts/setup.sh bench      + test tools and benchmark-only packages (Scrapy, TRL)
#   scripts/setup.sh vllm       a second venv, .venv-vllm: runtime + test tools + vLLM's CPU build
#                               (locks/requirements-vllm.txt), for the vllm backend's tests and bench/gpu_check.py; .venv
#                               is left as it is
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "error: Python 3.11 or newer is required (set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi

# One venv serves the server, the tests and the benches: a runtime set-up after a test set-up keeps the
# test tools (the venv is synced to the widest lock it has been asked for).
levels=(runtime test bench)
want=${1:-runtime}
case "$want" in runtime|test|bench|vllm) ;; *) echo "usage: scripts/setup.sh [test|bench|vllm]" >&2; exit 2 ;; esac

source scripts/uv.sh
# sync: exactly the lock (hashes verified) plus this project, editable; what the lock does not list is
# removed. About a second when nothing changed.
# Extra arguments go to uv.
sync_venv() {
  local venv=$1 lock=$2
  shift 2
  [ -x "$venv/bin/python" ] || "$UV" venv --quiet --python "$PYTHON" "$venv"
  if ! "$UV" pip sync --quiet --python "$venv/bin/python" "$@" "$lock" <(printf -- '-e %s\n' "$PWD"); then
    echo "error: could not install $lock. If uv found no torch==2.13.0+cpu: that CPU build is not" \
         "on PyPI; set UV_FIND_LINKS to a directory holding its wheel, or UV_EXTRA_INDEX_URL to PyTorch's CPU" \
         "wheel index, and run this again." >&2
    exit 1
  fi
}

if [ "$want" = vllm ]; then
  sync_venv .venv-vllm locks/requirements-vllm.txt
  exit 0
fi
had=$(cat .venv/.lock-level 2>/dev/null || echo runtime)
rank() { local i; for i in "${!levels[@]}"; do [ "${levels[$i]}" = "$1" ] && echo "$i"; done; }
[ "$(rank "$had")" ] && [ "$(rank "$had")" -gt "$(rank "$want")" ] && want=$had

# Bytecode compiled once here, on every core (about 30 s on a fresh venv): otherwise the server's first start
# compiles torch, transformers and sentence-transformers as it imports them (about 17 s of a 27 s start on 2 cores),
# and every process that starts before one has finished (test workers, servers) compiles them again.
sync_venv .venv "locks/requirements-$want.txt" --compile-bytecode
echo "$want" > .venv/.lock-level

need_apt=()
if [ "$want" != runtime ]; then
  command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
  command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
  # the web UI's browser tests check that Chinese and emoji render (not as boxes): they need these fonts
  for font in fonts-noto-cjk fonts-noto-color-emoji; do
    dpkg-query -W -f='${Status}' "$font" 2>/dev/null | grep -q "ok installed" || need_apt+=("$font")
  done
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "installing Debian packages: ${need_apt[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
