#!/usr/bin/env bash
# Set everything up, then start the chat server on its embedded defaults (SQLite + FAISS, local model).
# Arguments go to `python -m server` (e.g. --host 0.0.0.0 --port 8080); settings come from .env.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m server "$@"
