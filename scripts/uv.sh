# Sourced by setup.sh and lock.sh: a pinned uv in .uv/ (outside .venv, which `uv pip sync` keeps to
# exactly the lock), and where uv finds torch's CPU build.
UV_VERSION=0.13.9
UV=.uv/bin/uv
if [[ "$("$UV" --version 2>/dev/null)" != "uv $UV_VERSION "* ]]; then
  rm -rf .uv
  "${PYTHON:-python3}" -m venv .uv
  .uv/bin/python -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi
# torch 2.13.0+cpu is not on PyPI (PyPI's torch is the multi-GB CUDA build). uv looks for it where pip
# is told to look (a machine's wheel directory in PIP_FIND_LINKS) unless UV_FIND_LINKS or
# UV_EXTRA_INDEX_URL (PyTorch's CPU wheel index) says otherwise.
if [ -z "${UV_FIND_LINKS:-}" ] && [ -z "${UV_EXTRA_INDEX_URL:-}" ] && [ -n "${PIP_FIND_LINKS:-}" ]; then
  export UV_FIND_LINKS="$PIP_FIND_LINKS"
fi
