#!/usr/bin/env bash
# Set everything up, then start the chat server (embedded defaults: SQLite + FAISS, local model) and the web UI
# together, and print the address to open. Ctrl-C stops both.
# HOST/PORT: the server's (default 127.0.0.1:8080); WEB_HOST/WEB_PORT: the UI's (default 127.0.0.1:7860).
# Other arguments go to `python -m server`; settings come from .env. `python -m server` alone serves only the API.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
HOST=${HOST:-127.0.0.1} PORT=${PORT:-8080} WEB_HOST=${WEB_HOST:-127.0.0.1} WEB_PORT=${WEB_PORT:-7860}
url="http://${WEB_HOST/0.0.0.0/127.0.0.1}:$WEB_PORT"
export WEB_URL=${WEB_URL:-$url}  # the server's `/` sends a browser there

pids=()
stop() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait; }
trap stop EXIT
trap 'exit 130' INT TERM
.venv/bin/python -m server --host "$HOST" --port "$PORT" "$@" & pids+=($!)
.venv/bin/python -m web --server "ws://${HOST/0.0.0.0/127.0.0.1}:$PORT/ws" --host "$WEB_HOST" --port "$WEB_PORT" \
  & pids+=($!)
# the URL once the UI answers (the model may still be loading in the server: the page says so until it is up)
.venv/bin/python - "$url" <<'EOF' &
import sys, time, urllib.request
for _ in range(600):
    try:
        urllib.request.urlopen(sys.argv[1], timeout=1)
        print(f"\n  Dongpo chat is up: open {sys.argv[1]}\n", flush=True)
        break
    except OSError:
        time.sleep(0.5)
EOF
wait -n "${pids[@]}"
