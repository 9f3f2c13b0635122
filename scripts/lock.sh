#!/usr/bin/env bash
# Refresh the lock files in locks/ from pyproject.toml (run after changing a dependency; commit the result):
#   scripts/lock.sh                   keep every pin that still satisfies pyproject.toml
#   scripts/lock.sh --upgrade         move every package to its newest allowed release
# bench.txt (runtime + test + bench) is resolved first; runtime.txt and test.txt are resolved under its
# pins, so one package has one version on every install path.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/uv.sh

target=(--python-version 3.11 --python-platform x86_64-manylinux_2_28 --generate-hashes --quiet)
compile() {
  local out=$1; shift
  "$UV" pip compile pyproject.toml "${target[@]}" --custom-compile-command scripts/lock.sh "$@" -o "$out"
}
compile locks/bench.txt --extra test --extra bench "$@"
compile locks/test.txt --extra test --constraint locks/bench.txt
compile locks/runtime.txt --constraint locks/bench.txt
grep -q '^torch==2.13.0+cpu ' locks/runtime.txt || {
  echo "error: the lock did not resolve torch's CPU build (torch==2.13.0+cpu); see scripts/uv.sh" >&2
  exit 1
}
echo "locks/ refreshed; commit them with the change to pyproject.toml"
