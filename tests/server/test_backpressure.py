"""A client that stops reading: the server's memory stays flat, and the turn is cancelled with a reason."""

import asyncio
import subprocess
import sys

import aiohttp
import httpx
import psutil
import pytest

from tests.support.paths import REPO
from tests.support.servers import ServerProcess, free_port, wait_http

pytestmark = pytest.mark.slow


@pytest.fixture
def flood_upstream():
    """The fake OpenAI-compatible upstream, streaming a huge reply as fast as it can."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(REPO / "bench" / "fake_upstream.py"), "--port", str(port),
                             "--rate", "20000", "--ttft", "0", "--tokens", "400000",
                             "--token-chars", "500"])
    try:
        wait_http(f"http://127.0.0.1:{port}/v1/models")
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(10)


async def test_a_client_that_stops_reading_keeps_server_memory_flat_and_loses_its_turn(flood_upstream, tmp_path):
    env = {"LLM_BACKEND": "openai", "OPENAI_BASE_URL": flood_upstream, "OPENAI_API_KEY": "sk-local-unused",
           "MODEL": "fake", "DATA_DIR": str(tmp_path / "data"), "MAX_NEW_TOKENS": "400000",
           "CONTEXT_TOKENS": "1000000", "SEND_TIMEOUT": "3"}
    server = ServerProcess(tmp_path, env).start()
    try:
        process = psutil.Process(server.proc.pid)
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(server.ws_url, max_msg_size=0)
            await ws.send_json({"type": "chat", "session": "slow", "text": "tell me everything"})
            baseline = None
            samples = []
            for _ in range(24):  # never read; watch the server
                await asyncio.sleep(0.5)
                rss = process.memory_info().rss
                baseline = baseline or rss
                samples.append(rss)
            history = httpx.get(f"{server.url}/sessions/slow/history").json()["turns"]
            await ws.close()
        mib = [round(x / 2**20) for x in samples]
        # the socket buffers and the reply so far fill in the first seconds; after that, nothing grows
        assert max(samples) - baseline < 96 * 2**20, mib
        assert max(samples[12:]) - samples[12] < 8 * 2**20, mib
        assert history[0]["status"] == "interrupted"
        assert 0 < len(history[0]["response"]) < 400000 * 500
        assert "client is not reading" in server.logs() or history[0]["status"] == "interrupted"
    finally:
        server.stop()
