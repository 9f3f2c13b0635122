"""Websocket turns through the openai backend: a real chain of two servers of ours, and a server whose
endpoint fails on purpose (a failure after tokens ends the turn with an `error` frame)."""

import json
import sqlite3
import uuid

import aiohttp
import httpx
import pytest

from server.keys import CHAT
from server.prompt import MEMORY_PREAMBLE
from tests.server.conftest import make_settings
from tests.support.client import connect
from tests.support.scripted_openai import Reply
from tests.support.servers import ServerProcess, ServerThread

KEY = "sk-chain-SeCrEt9876543210fedcba"


def stored_turns(data_dir, user_text: str) -> list[tuple[str, str]]:
    con = sqlite3.connect(f"file:{data_dir / 'chat.sqlite3'}?mode=ro", uri=True)
    try:
        return con.execute("SELECT response, status FROM turns WHERE user_text = ?", (user_text,)).fetchall()
    finally:
        con.close()


def front_system(front_url: str, persona: str, text: str) -> str:
    """The system prompt the front server builds for `text`: its persona, then the memories its memory API says a
    turn with that message gets (`GET /memories?query=`: exactly those, in prompt order)."""
    found = httpx.get(f"{front_url}/memories", params={"query": text}).json()["memories"]
    lines = [f"- [{m['created'][:10]}] {m['text']}" for m in found]
    return "\n\n".join([persona, "\n".join([MEMORY_PREAMBLE, *lines])] if lines else [persona])


@pytest.mark.slow
async def test_a_second_server_whose_openai_backend_points_at_the_first_serves_websocket_turns(api_server,
                                                                                               tiny_model_dir,
                                                                                               tmp_path):
    """The front server's persona and memories reach the back server's prompt whole, the back's persona first."""
    front_persona = "You are the front desk of a chain of two servers."
    (tmp_path / "front.md").write_text(front_persona, encoding="utf-8")
    relay = ServerProcess(tmp_path, {
        "LLM_BACKEND": "openai", "MODEL": str(tiny_model_dir), "OPENAI_BASE_URL": f"{api_server.url}/v1",
        "OPENAI_API_KEY": KEY, "DATA_DIR": str(tmp_path / "relay-data"), "MAX_NEW_TOKENS": "16",
        "PERSONA_FILE": str(tmp_path / "front.md")}).start()
    try:
        assert httpx.get(f"{relay.url}/health").json()["backend"] == "openai"
        session, tag = "chain", uuid.uuid4().hex[:8]
        memory = f"My favourite flower is the plum blossom {tag}."
        assert httpx.post(f"{relay.url}/memories", json={"text": memory}).status_code == 201
        texts = [f"Write a line about plum blossoms {tag}", f"And one about the west lake {tag}"]
        systems = [front_system(relay.url, front_persona, text) for text in texts]
        assert memory in systems[0], "the front remembers something for the back to see"
        async with aiohttp.ClientSession() as http:
            client = await connect(http, relay.ws_url)
            turns = [await client.turn(session, text) for text in texts]
        for text, turn in zip(texts, turns, strict=True):
            assert turn.frames[0]["type"] == "start" and turn.end is not None, turn.frames
            assert turn.tokens and turn.end["text"] == "".join(turn.tokens)
            assert turn.end["usage"]["completion_tokens"] > 0 and turn.end["usage"]["prompt_tokens"] > 0
            # the relay's anonymous calls are stateless: the relay keeps the conversation, the first
            # server stores nothing of it
            assert stored_turns(api_server.data_dir, text) == []
        # the back server's whole prompt: its persona, the front's system prompt (persona and memories), the
        # conversation the front keeps, its own replies included
        back_persona = api_server.app[CHAT].settings.persona.strip()
        prompts = [next(p for p in reversed(api_server.prompts) if p.messages[-1].content == t) for t in texts]
        assert [(m.role, m.content) for m in prompts[0].messages] == [
            ("system", f"{back_persona}\n\n{systems[0]}"), ("user", texts[0])]
        assert [(m.role, m.content) for m in prompts[1].messages] == [
            ("system", f"{back_persona}\n\n{systems[1]}"), ("user", texts[0]), ("assistant", turns[0].end["text"]),
            ("user", texts[1])]
        relay_turns = httpx.get(f"{relay.url}/sessions/{session}/history").json()["turns"]
        assert [(t["user"], t["status"]) for t in relay_turns] == [(t, "complete") for t in texts]
    finally:
        relay.stop()
    logs = relay.logs()
    ready = next(json.loads(line) for line in logs.splitlines() if "openai backend ready" in line)
    assert ready["context_window"] == 2048 and ready["token_counts"] == "tokenizer"
    assert KEY not in logs


@pytest.fixture(scope="module")
def relay_to_scripted(scripted_endpoint, tiny_model_dir, tmp_path_factory):
    settings = make_settings(tiny_model_dir, tmp_path_factory.mktemp("relay"), llm_backend="openai",
                             openai_base_url=scripted_endpoint.url, openai_api_key=KEY, openai_timeout=2.0,
                             openai_max_retries=2)
    server = ServerThread(settings).start()
    yield server
    server.stop()


async def test_a_failure_after_tokens_ends_the_turn_with_an_error_frame_and_keeps_the_partial_reply(
        relay_to_scripted, scripted):
    session = f"cut-{uuid.uuid4().hex[:8]}"
    scripted.push(Reply(tokens=["Half", " a", " reply"], after="drop"))
    async with aiohttp.ClientSession() as http:
        client = await connect(http, relay_to_scripted.ws_url)
        turn = await client.turn(session, "this reply will be cut off")
        kinds = [f["type"] for f in turn.frames]
        assert kinds[0] == "start" and kinds[-1] == "error" and set(kinds[1:-1]) == {"token"}
        assert "".join(turn.tokens) == "Half a reply"  # tokens that arrive together may share a frame
        assert turn.error["code"] == "generation_failed" and "cut off" in turn.error["message"]
        assert KEY not in json.dumps(turn.frames)
        assert len(scripted.requests) == 1, "no retry once tokens were sent"

        # the connection stays usable; a 429 before the first token is retried invisibly
        scripted.push(Reply(status=429, headers={"Retry-After": "1"}))
        retried = await client.turn(session, "and this one is rate limited once")
        assert retried.end is not None and retried.end["text"] == "Hello from the endpoint."
        assert [f["type"] for f in retried.frames].count("error") == 0
        assert len(scripted.requests) == 3
    records = relay_to_scripted.call(relay_to_scripted.app[CHAT].history(session))
    assert [(r.response, r.status) for r in records] == [("Half a reply", "failed"),
                                                         ("Hello from the endpoint.", "complete")]


async def test_an_endpoint_that_keeps_failing_gives_the_turn_an_error_frame_after_the_retries(
        relay_to_scripted, scripted):
    scripted.push(*[Reply(status=503)] * 3)
    async with aiohttp.ClientSession() as http:
        client = await connect(http, relay_to_scripted.ws_url)
        turn = await client.turn(f"down-{uuid.uuid4().hex[:8]}", "is anyone there?")
    assert [f["type"] for f in turn.frames] == ["start", "error"]
    assert turn.error["code"] == "generation_failed" and "503" in turn.error["message"]
    assert len(scripted.requests) == 3


async def test_an_api_client_that_goes_away_mid_stream_stops_the_generation_upstream(relay_to_scripted, scripted):
    import asyncio

    scripted.push(Reply(tokens=[f" w{i}" for i in range(200)], token_delay_s=0.05))
    user = f"leaver-{uuid.uuid4().hex[:8]}"
    body = {"model": relay_to_scripted.settings.model, "messages": [{"role": "user", "content": "talk forever"}],
            "stream": True, "user": user}
    async with httpx.AsyncClient(timeout=30) as http, \
            http.stream("POST", f"{relay_to_scripted.url}/v1/chat/completions", json=body) as response:
        async for line in response.aiter_lines():
            if '"content":" w' in line:
                break  # one token is enough: hang up
    for _ in range(100):
        if scripted.requests and scripted.requests[0].disconnected:
            break
        await asyncio.sleep(0.05)
    assert scripted.requests[0].disconnected, "the relay closed its upstream stream when its client left"
    chat = relay_to_scripted.app[CHAT]
    (session,) = [s.id for s in relay_to_scripted.call(chat.sessions(f"user:{user}", 10))]
    for _ in range(100):
        (record,) = relay_to_scripted.call(chat.history(session))
        if record.status != "pending":
            break
        await asyncio.sleep(0.05)
    assert record.status == "interrupted" and record.response.startswith(" w0")
