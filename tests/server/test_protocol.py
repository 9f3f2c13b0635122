"""The websocket protocol against a real server on 127.0.0.1: frames, bad input, history, forgetting."""

import asyncio
import json
import uuid

import aiohttp
import httpx
import pytest

from server import failpoints
from tests.support.client import connect


def new_session() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


async def test_a_turn_streams_start_then_tokens_then_end_whose_text_is_the_tokens_joined(shared_server):
    async with aiohttp.ClientSession() as http:
        client = await connect(http, shared_server.ws_url)
        turn = await client.turn(new_session(), "Tell me a poem about the moon")
    kinds = [f["type"] for f in turn.frames]
    assert kinds[0] == "start" and kinds[-1] == "end"
    assert set(kinds[1:-1]) == {"token"}
    assert turn.tokens, "a reply streams at least one token"
    assert turn.end["text"] == "".join(turn.tokens)
    assert turn.end["turn"] == turn.start["turn"]
    assert turn.end["usage"]["completion_tokens"] > 0 and turn.end["usage"]["prompt_tokens"] > 0
    # the memories its prompt held, by id (which ones depends on what the user's other chats said)
    assert isinstance(turn.end["memories"], list) and all(isinstance(i, int) for i in turn.end["memories"])


BAD_FRAMES = [
    ("{not json", "bad_json"),
    ("[1, 2, 3]", "invalid_frame"),
    ('"chat"', "invalid_frame"),
    (json.dumps({"type": "dance", "session": "s"}), "unknown_type"),
    (json.dumps({"session": "s", "text": "hi"}), "invalid_frame"),
    (json.dumps({"type": 5, "session": "s", "text": "hi"}), "invalid_frame"),
    (json.dumps({"type": "chat", "text": "hi"}), "invalid_frame"),
    (json.dumps({"type": "chat", "session": "s"}), "invalid_frame"),
    (json.dumps({"type": "chat", "session": "s", "text": 42}), "invalid_frame"),
    (json.dumps({"type": "chat", "session": ["s"], "text": "hi"}), "invalid_frame"),
    (json.dumps({"type": "chat", "session": "s" * 500, "text": "hi"}), "invalid_frame"),
    (json.dumps({"type": "chat", "session": "s", "text": ""}), "empty_text"),
    (json.dumps({"type": "chat", "session": "s", "text": " \n\t "}), "empty_text"),
    (json.dumps({"type": "chat", "session": "s", "text": "x" * 4001}), "message_too_long"),
    (json.dumps({"type": "cancel"}), "no_turn"),
]


@pytest.mark.parametrize(("raw", "code"), BAD_FRAMES, ids=[c for _, c in BAD_FRAMES])
async def test_bad_frames_get_an_error_with_a_stable_code_and_the_connection_stays_usable(shared_server, raw, code):
    async with aiohttp.ClientSession() as http:
        client = await connect(http, shared_server.ws_url)
        await client.ws.send_str(raw)
        error = await client.receive()
        assert error["type"] == "error" and error["code"] == code, error
        assert error["message"]
        turn = await client.turn(new_session(), "still there?")
        assert turn.end is not None


async def test_binary_frames_get_an_error_and_the_connection_stays_usable(shared_server):
    async with aiohttp.ClientSession() as http:
        client = await connect(http, shared_server.ws_url)
        await client.ws.send_bytes(b"\x00\x01binary")
        assert (await client.receive())["code"] == "binary_frame"
        assert (await client.turn(new_session(), "hello")).end is not None


async def test_a_frame_over_the_size_limit_closes_with_1009_and_a_reason_and_other_clients_carry_on(shared_server):
    async with aiohttp.ClientSession() as http:
        bystander = await connect(http, shared_server.ws_url)
        client = await connect(http, shared_server.ws_url)
        limit = shared_server.settings.max_frame_bytes
        await client.ws.send_str(json.dumps({"type": "chat", "session": "s", "text": "x" * (limit + 10)}))
        msg = await client.ws.receive(timeout=10)
        assert msg.type == aiohttp.WSMsgType.CLOSE
        assert msg.data == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
        assert "MAX_FRAME_BYTES" in msg.extra and str(limit) in msg.extra, f"close reason: {msg.extra!r}"
        assert (await bystander.turn(new_session(), "still here?")).end is not None


async def test_a_second_chat_while_a_turn_streams_on_the_session_is_refused(shared_server, monkeypatch):
    session = new_session()
    monkeypatch.setitem(failpoints._ARMED, "generate.before", "sleep:1.5")  # hold the first turn open
    async with aiohttp.ClientSession() as http:
        first = await connect(http, shared_server.ws_url)
        other = await connect(http, shared_server.ws_url)
        await first.send({"type": "chat", "session": session, "text": "first"})
        await first.send({"type": "chat", "session": session, "text": "second, too soon"})
        await first.send({"type": "chat", "session": new_session(), "text": "another session, same connection"})
        await other.send({"type": "chat", "session": session, "text": "from another tab"})
        assert (await other.receive())["code"] == "turn_in_progress"
        frames = (await first.collect()).frames
        frames += (await first.collect()).frames if frames[-1]["type"] == "error" else []
        frames += (await first.collect()).frames if frames[-1]["type"] == "error" else []
        errors = [f["code"] for f in frames if f["type"] == "error"]
        assert errors == ["turn_in_progress", "turn_in_progress"]
        assert [f["type"] for f in frames if f["type"] in ("start", "end")] == ["start", "end"]
        monkeypatch.delitem(failpoints._ARMED, "generate.before")
        assert (await first.turn(session, "after the end, the session takes turns again")).end is not None


async def test_generation_failure_ends_the_turn_with_an_error_and_keeps_the_user_message(shared_server, monkeypatch):
    session = new_session()
    monkeypatch.setitem(failpoints._ARMED, "generate.before", "raise")
    async with aiohttp.ClientSession() as http:
        client = await connect(http, shared_server.ws_url)
        turn = await client.turn(session, "this turn will fail")
        assert turn.frames[0]["type"] == "start"
        assert turn.error["code"] == "generation_failed"
        monkeypatch.delitem(failpoints._ARMED, "generate.before")
        assert (await client.turn(session, "and this one works")).end is not None
    history = httpx.get(f"{shared_server.url}/sessions/{session}/history").json()["turns"]
    assert [(t["user"], t["status"]) for t in history] == [("this turn will fail", "failed"),
                                                           ("and this one works", "complete")]


async def test_history_lists_the_session_turns_and_delete_forgets_them(shared_server):
    session = new_session()
    async with aiohttp.ClientSession() as http:
        client = await connect(http, shared_server.ws_url)
        ends = [(await client.turn(session, f"message {i}")).end for i in range(2)]
    history = httpx.get(f"{shared_server.url}/sessions/{session}/history").json()
    assert [t["user"] for t in history["turns"]] == ["message 0", "message 1"]
    assert [t["response"] for t in history["turns"]] == [e["text"] for e in ends]
    assert httpx.delete(f"{shared_server.url}/sessions/{session}").json()["forgotten"] is True
    gone = httpx.get(f"{shared_server.url}/sessions/{session}/history")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"


async def test_health_and_metrics_report_the_server_state(shared_server):
    health = httpx.get(f"{shared_server.url}/health").json()
    assert health["status"] == "ok" and health["backend"] == "transformers"
    async with aiohttp.ClientSession() as http:
        await (await connect(http, shared_server.ws_url)).turn(new_session(), "count me")
    metrics = httpx.get(f"{shared_server.url}/metrics").text
    for name in ("chat_turns_total", "chat_time_to_first_token_seconds_bucket", "chat_generation_tokens_total",
                 "chat_memory_flushes_total", "chat_retrieval_seconds_bucket", "chat_errors_total"):
        assert name in metrics


async def test_a_client_that_disconnects_mid_turn_leaves_the_turn_recorded_as_interrupted(shared_server):
    session = new_session()
    async with aiohttp.ClientSession() as http:
        client = await connect(http, shared_server.ws_url)
        await client.send({"type": "chat", "session": session, "text": "goodbye mid-sentence"})
        assert (await client.receive())["type"] == "start"
        await client.ws.close()
    for _ in range(100):
        turns = httpx.get(f"{shared_server.url}/sessions/{session}/history").json()["turns"]
        if turns[0]["status"] != "pending":
            break
        await asyncio.sleep(0.05)
    assert turns[0]["status"] in {"interrupted", "complete"}
