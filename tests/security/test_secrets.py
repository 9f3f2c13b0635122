"""Recognisable fake keys, every error path driven, and all output grepped: no key appears anywhere."""

import asyncio
import json

import aiohttp
import httpx
import pytest

from tests.search.fakeweb import GOOGLE_CSE, GOOGLE_KEY, FakeWeb
from tests.support.client import connect
from tests.support.scripted_openai import Reply, ScriptedOpenAI
from tests.support.servers import ServerProcess

pytestmark = pytest.mark.slow

OPENAI_KEY = "sk-FAKE-openai-key-7e57c0ffee7e57c0ffee"
TOKEN = "tok-FAKE-server-token-5ecre7-a11ce"
OTHER_TOKEN = "tok-FAKE-server-token-5ecre7-b0b00"
SECRETS = [OPENAI_KEY, GOOGLE_KEY, TOKEN, OTHER_TOKEN]


async def test_no_key_appears_in_logs_frames_errors_metrics_or_health(tmp_path):
    upstream = ScriptedOpenAI().start()
    web = FakeWeb().start()
    env = {"LLM_BACKEND": "openai", "OPENAI_BASE_URL": upstream.url, "OPENAI_API_KEY": OPENAI_KEY,
           "MODEL": upstream.model, "OPENAI_MAX_RETRIES": "1", "OPENAI_TIMEOUT": "2",
           "SEARCH_PROVIDER": "google", "SEARCH_URL": web.api_url("google"), "GOOGLE_API_KEY": GOOGLE_KEY,
           "GOOGLE_CSE_ID": GOOGLE_CSE, "SEARCH_FETCH_ALLOW": f"127.0.0.1:{web.ports['pages']}",
           "SEARCH_BREAKER_FAILURES": "100", "SERVER_TOKENS": f"{TOKEN}:alice,{OTHER_TOKEN}:bob",
           "DATA_DIR": str(tmp_path / "data"), "LOG_LEVEL": "DEBUG", "LOG_FORMAT": "json"}
    server = ServerProcess(tmp_path, env).start()
    seen: list[str] = []  # everything a client or an operator could read
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        async with aiohttp.ClientSession() as http:
            for headers in ({}, {"Authorization": "Bearer wrong-token-wrong-token"}):
                ws = await http.ws_connect(server.ws_url, headers=headers)
                msg = await ws.receive(timeout=10)
                seen.append(f"{msg.data} {msg.extra}")
            client = await connect(http, server.ws_url, headers=auth)

            async def turn(session: str, text: str, *replies: Reply) -> None:
                upstream.push(*replies)
                seen.append(json.dumps((await client.turn(session, text)).frames))

            refused = {"error": {"message": f"Incorrect API key provided: {OPENAI_KEY}. You can find your API key "
                                 "at https://platform.openai.com/account/api-keys.", "type": "invalid_request_error",
                                 "code": "invalid_api_key"}}
            await turn("s1", "hello there", Reply(status=401, error=refused))
            await turn("s1", "and again", Reply(status=500, error={"error": {"message": f"boom {OPENAI_KEY}"}}),
                       Reply(status=500))
            await turn("s1", "a reply cut short", Reply(after="drop"))
            await turn("s1", "an error event", Reply(after="error"))
            await turn("s1", "a stall", Reply(before="stall", stall_s=5), Reply(before="stall", stall_s=5))
            await turn("s1", "rate limited", Reply(status=429, headers={"Retry-After": "60"}))
            for mode in ("forbidden", "disabled", "quota", "error", "ok"):
                web.mode = mode
                await turn(f"search-{mode}", "How do you perform a deadlift properly?", Reply())
            for raw in ("{bad", json.dumps({"type": "chat", "session": "s1", "text": "x" * 5000})):
                await client.ws.send_str(raw)
                seen.append(json.dumps(await client.receive()))
            bob = await connect(http, server.ws_url, headers={"Authorization": f"Bearer {OTHER_TOKEN}"})
            seen.append(json.dumps((await bob.turn("s1", "let me in")).frames))
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as h:
            for path in ("/health", "/metrics", "/v1/models", "/sessions/s1/history"):
                for headers in ({}, {"Authorization": "Bearer nope-nope-nope-nope"}, auth):
                    r = await h.get(path, headers=headers)
                    seen.append(f"{r.status_code} {dict(r.headers)} {r.text}")
            upstream.push(Reply(status=401, error=refused))
            r = await h.post("/v1/chat/completions", headers=auth, json={
                "model": upstream.model, "messages": [{"role": "user", "content": "via http"}]})
            seen.append(f"{r.status_code} {r.text}")
            r = await h.post("/v1/chat/completions", headers=auth, json={"model": "nope", "messages": []})
            seen.append(f"{r.status_code} {r.text}")
        await asyncio.to_thread(server.terminate)
    finally:
        server.stop()
        upstream.stop()
        web.stop()

    logs = server.logs()
    assert "model endpoint failed" in logs and "search" in logs, "the error paths did run"
    assert any('"skipped": "provider_forbidden"' in s or '"skipped":"provider_forbidden"' in s for s in seen)
    everything = "\n".join(seen) + "\n" + logs
    leaks = [secret for secret in SECRETS if secret in everything]
    assert leaks == [], f"secrets leaked: {leaks}"
    # the scrubber had work to do: remote error texts quoting the key reach the log, redacted
    assert "[redacted]" in logs
