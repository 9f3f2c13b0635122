"""Authentication, per-user namespaces, the websocket origin check, and turn limits."""

import aiohttp
import httpx
import pytest

from server import failpoints
from server.keys import CHAT
from tests.server.conftest import make_settings
from tests.support.client import connect
from tests.support.servers import ServerThread

ALICE = "alice-token-0123456789abcdef"
BOB = "bob-token-fedcba9876543210xyz"


@pytest.fixture(scope="module")
def secured(tiny_model_dir, tmp_path_factory):
    settings = make_settings(tiny_model_dir, tmp_path_factory.mktemp("secured"),
                             server_tokens=f"{ALICE}:alice,{BOB}:bob", allowed_origins="https://chat.example.org",
                             turns_per_minute=4, max_turns_per_user=1)
    server = ServerThread(settings).start()
    yield server
    server.stop()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("path", ["/health", "/metrics", "/sessions/x/history", "/v1/models"])
def test_http_requests_without_a_valid_token_get_401_with_a_reason(secured, path):
    for headers in ({}, auth("wrong-token-wrong-token"), {"Authorization": ALICE}):
        r = httpx.get(secured.url + path, headers=headers)
        assert r.status_code == 401, (path, headers)
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
        assert r.json()["error"]["code"] == "unauthorized" and r.json()["error"]["message"]
    assert httpx.get(secured.url + "/health", headers=auth(ALICE)).status_code == 200


async def test_websockets_without_a_valid_token_are_closed_with_1008_and_a_reason(secured):
    async with aiohttp.ClientSession() as http:
        for kwargs in ({}, {"headers": auth("nope-nope-nope-nope-nope")}):
            ws = await http.ws_connect(secured.ws_url, **kwargs)
            msg = await ws.receive(timeout=10)
            assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == aiohttp.WSCloseCode.POLICY_VIOLATION
            assert msg.extra in ("invalid token", "authentication required: send Authorization: Bearer <token>")


async def test_a_browser_passes_its_token_in_the_query_string(secured):
    async with aiohttp.ClientSession() as http:
        client = await connect(http, f"{secured.ws_url}?token={ALICE}")
        assert (await client.turn("query-token", "hello")).end is not None


async def test_the_memory_namespace_is_the_token_user_never_the_client_choice(secured):
    async with aiohttp.ClientSession() as http:
        alice = await connect(http, secured.ws_url, headers=auth(ALICE))
        bob = await connect(http, secured.ws_url, headers=auth(BOB))
        assert (await alice.turn("alice-diary", "my diary entry")).end is not None
        stolen = await bob.turn("alice-diary", "let me continue alice's session")
        assert stolen.error["code"] == "forbidden"
    assert httpx.get(f"{secured.url}/sessions/alice-diary/history", headers=auth(BOB)).status_code == 403
    assert httpx.delete(f"{secured.url}/sessions/alice-diary", headers=auth(BOB)).status_code == 403
    history = httpx.get(f"{secured.url}/sessions/alice-diary/history", headers=auth(ALICE)).json()["turns"]
    assert [t["user"] for t in history] == ["my diary entry"]


def test_with_tokens_naming_another_user_never_opens_their_conversation(secured):
    turns = secured.app[CHAT].services.turns
    secured.call(turns.begin_turn("api:bob", "user:bob", "bob's own /v1 conversation"))
    for method, path in (("GET", "/sessions/api:bob/history"), ("DELETE", "/sessions/api:bob")):
        for params in ({}, {"user": "bob"}):
            r = httpx.request(method, secured.url + path, params=params, headers=auth(ALICE))
            assert r.status_code == 403, (method, path, params)
    history = httpx.get(f"{secured.url}/sessions/api:bob/history", params={"user": "alice"}, headers=auth(BOB))
    assert [t["user"] for t in history.json()["turns"]] == ["bob's own /v1 conversation"]


async def test_websockets_from_foreign_browser_origins_are_refused(secured):
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(secured.ws_url, headers={**auth(ALICE), "Origin": "https://evil.example.com"})
        assert refused.value.status == 403
        allowed = await connect(http, secured.ws_url, headers={**auth(ALICE), "Origin": "https://chat.example.org"})
        assert (await allowed.turn("origin-ok", "hi")).end is not None
        same_host = await connect(http, secured.ws_url, headers={**auth(ALICE), "Origin": secured.url})
        assert (await same_host.turn("origin-same", "hi")).end is not None


async def test_turns_past_the_per_minute_rate_get_rate_limited_with_retry_after(tiny_model_dir, tmp_path):
    settings = make_settings(tiny_model_dir, tmp_path, server_tokens=f"{ALICE}:alice", turns_per_minute=3)
    server = ServerThread(settings).start()
    try:
        async with aiohttp.ClientSession() as http:
            client = await connect(http, server.ws_url, headers=auth(ALICE))
            for i in range(3):
                assert (await client.turn(f"rate-{i}", "hello")).end is not None
            limited = await client.turn("rate-x", "one too many")
        assert limited.error["code"] == "rate_limited" and 1 <= limited.error["retry_after"] <= 60
        r = httpx.post(f"{server.url}/v1/chat/completions", headers=auth(ALICE),
                       json={"model": httpx.get(f"{server.url}/v1/models", headers=auth(ALICE)).json()["data"][0]["id"],
                             "messages": [{"role": "user", "content": "and over http"}]})
        assert r.status_code == 429 and 1 <= int(r.headers["Retry-After"]) <= 60
    finally:
        server.stop()


async def test_a_user_gets_too_many_turns_past_their_concurrent_limit(secured, monkeypatch):
    monkeypatch.setitem(failpoints._ARMED, "generate.before", "sleep:1")
    async with aiohttp.ClientSession() as http:
        first = await connect(http, secured.ws_url, headers=auth(BOB))
        second = await connect(http, secured.ws_url, headers=auth(BOB))
        await first.send({"type": "chat", "session": "bob-1", "text": "slow one"})
        assert (await first.receive())["type"] == "start"
        refused = await second.turn("bob-2", "at the same time")
        assert refused.error["code"] == "too_many_turns"
        assert (await first.collect()).end is not None


def test_invalid_token_configuration_stops_the_start_without_echoing_the_token(tiny_model_dir, tmp_path):
    from server.app import build_app
    from server.errors import StartupError

    with pytest.raises(StartupError) as bad:
        build_app(make_settings(tiny_model_dir, tmp_path, server_tokens="short:alice"))
    assert "short" not in str(bad.value)
