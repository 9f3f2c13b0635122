"""`python -m server` with a hub model that is neither cached nor downloadable: one clear message, at once."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support.paths import REPO
from tests.support.servers import free_port

MODEL = "dongpo-tests/never-cached-model"
# Where the hub cache could come from other than HF_HOME: the test must see an empty cache.
_CACHE_VARS = ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


@pytest.fixture
def closed_endpoint():
    """A 127.0.0.1 port that is bound but never listens: every connection is refused, nothing leaves the host."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def _start(tmp_path, endpoint: str, **extra: str) -> tuple[subprocess.CompletedProcess, float]:
    env = {k: v for k, v in os.environ.items() if k not in _CACHE_VARS}
    env.update(MODEL=MODEL, LLM_BACKEND="transformers", HF_HOME=str(tmp_path / "hf"), HF_ENDPOINT=endpoint,
               NO_PROXY="127.0.0.1,localhost", DATA_DIR=str(tmp_path / "data"), EMBED_WORKERS="thread",
               LOG_FORMAT="json", PYTHONPATH=str(REPO), **extra)
    (tmp_path / "hf").mkdir()
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "server", "--port", str(free_port())], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    return proc, time.monotonic() - started


@pytest.mark.parametrize("offline", [False, True], ids=["hub-unreachable", "HF_HUB_OFFLINE"])
def test_an_uncached_hub_model_without_network_fails_fast_with_one_message(tmp_path, closed_endpoint, offline):
    proc, elapsed = _start(tmp_path, closed_endpoint, **({"HF_HUB_OFFLINE": "1"} if offline else {}))
    output = proc.stdout + proc.stderr

    assert proc.returncode != 0, output
    assert elapsed < 10, f"took {elapsed:.1f}s to fail:\n{output[-3000:]}"
    assert output.count("is not in the Hugging Face cache") == 1, output[-3000:]
    assert f"hf download {MODEL}" in output
    assert "huggingface-cli" not in output
    # A way out that works from a fresh clone, without any network.
    assert "python -m trainer --from-scratch tiny" in output and "MODEL=models/poet scripts/serve.sh" in output
    assert "Retrying" not in output


def test_a_search_provider_without_its_key_stops_the_server_first_with_one_line(tmp_path, closed_endpoint):
    proc, elapsed = _start(tmp_path, closed_endpoint, SEARCH_PROVIDER="brave", GOOGLE_API_KEY="AIza-secret-value")
    output = proc.stdout + proc.stderr

    assert proc.returncode == 1, output
    assert elapsed < 10, f"took {elapsed:.1f}s to fail:\n{output[-3000:]}"
    # checked before the model (which is not cached here either), named as the operator sets it, key unechoed
    assert output.strip() == "error: SEARCH_PROVIDER=brave needs BRAVE_API_KEY", output[-3000:]

# ------------------------------------------------------------------ the check itself, in process
# (offline=False: this process runs with HF_HUB_OFFLINE=1, see tests/conftest.py)


def test_a_local_directory_needs_neither_cache_nor_network(tmp_path, closed_endpoint):
    from server.llm.hub import ensure_model_available

    ensure_model_available(str(tmp_path), endpoint=closed_endpoint, cache_dir=tmp_path / "empty", offline=False)


def test_a_cached_hub_model_starts_without_asking_the_hub(tmp_path, closed_endpoint):
    from server.llm.hub import ensure_model_available

    # The hub cache's own layout: refs/main names the snapshot that holds the files.
    repo = tmp_path / "cache" / "models--dongpo-tests--cached-model"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    (repo / "snapshots" / ("0" * 40)).mkdir(parents=True)
    (repo / "snapshots" / ("0" * 40) / "config.json").write_text("{}")

    ensure_model_available("dongpo-tests/cached-model", endpoint=closed_endpoint, cache_dir=tmp_path / "cache",
                           offline=False)


def test_an_uncached_model_is_left_to_the_normal_download_when_the_hub_answers(tmp_path):
    from server.llm.hub import ensure_model_available

    class NotFound(BaseHTTPRequestHandler):
        def do_HEAD(self):  # any answer at all means the hub is reachable
            self.send_response(404)
            self.end_headers()

        do_GET = do_HEAD

        def log_message(self, *args):
            pass

    hub = ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=hub.serve_forever, daemon=True).start()
    try:
        ensure_model_available(MODEL, endpoint=f"http://127.0.0.1:{hub.server_port}", cache_dir=tmp_path, offline=False)
    finally:
        hub.shutdown()
        hub.server_close()


def test_the_check_raises_a_startup_error_naming_both_ways_out(tmp_path, closed_endpoint):
    from server.errors import StartupError
    from server.llm.hub import ensure_model_available

    with pytest.raises(StartupError) as failure:
        ensure_model_available(MODEL, endpoint=closed_endpoint, cache_dir=tmp_path, offline=False)
    message = str(failure.value)
    assert f"hf download {MODEL}" in message and "--from-scratch tiny" in message
    assert closed_endpoint in message
