"""Our OpenAI-compatible API, driven by the official `openai` client and by raw HTTP, against a real server
on 127.0.0.1 (transformers backend, tiny local model): streaming, usage, memory namespaces, errors."""

import asyncio
import json
import sqlite3
import uuid

import httpx
import openai
import pytest

from server import failpoints
from server.keys import CHAT
from server.prompt import MEMORY_PREAMBLE
from tests.support.memory import documents, wait_for_documents


def new_user() -> str:
    return f"u-{uuid.uuid4().hex[:10]}"


def client(server) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60)


def history(server, session: str):
    return server.call(server.app[CHAT].history(session))


def prompt_for(server, text: str):
    return next(p for p in reversed(server.prompts) if p.messages[-1].content == text)


def user_sessions(server, user: str) -> list[str]:
    """The stored conversations of a named user, newest first."""
    return [s.id for s in server.call(server.app[CHAT].sessions(f"user:{user}", 100))]


async def test_the_official_client_streams_a_reply_with_usage_and_the_turn_is_stored(api_server):
    user = new_user()
    async with client(api_server) as oai:
        stream = await oai.chat.completions.create(
            model=api_server.model, messages=[{"role": "user", "content": "Tell me about the moon over the river"}],
            stream=True, stream_options={"include_usage": True}, user=user)
        chunks = [chunk async for chunk in stream]
    content = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert content, "the reply streams as several content deltas"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-2].choices[0].finish_reason in ("stop", "length")
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0 and chunks[-1].usage.prompt_tokens > 0
    assert len({c.id for c in chunks}) == 1 and chunks[0].model == api_server.model
    (session,) = user_sessions(api_server, user)
    assert session.startswith(f"api:{user}:"), "a conversation that names no session is named by how it began"
    (turn,) = history(api_server, session)
    assert turn.user_text == "Tell me about the moon over the river"
    assert turn.response == "".join(content) and turn.status == "complete"
    assert chunks[0].id == f"chatcmpl-{turn.id}"


async def test_the_raw_stream_is_server_sent_events_ending_in_done(api_server):
    body = {"model": api_server.model, "messages": [{"role": "user", "content": "hello"}], "stream": True}
    async with httpx.AsyncClient(timeout=60) as http, \
            http.stream("POST", f"{api_server.url}/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line async for line in response.aiter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(line[6:]) for line in lines[:-1]]
    assert all(e["object"] == "chat.completion.chunk" for e in events)
    assert all("usage" not in e for e in events), "usage only when stream_options.include_usage asks for it"


async def test_a_non_streaming_request_returns_one_completion_with_usage(api_server):
    async with client(api_server) as oai:
        completion = await oai.chat.completions.create(
            model=api_server.model, messages=[{"role": "system", "content": "Answer briefly."},
                                              {"role": "user", "content": "How was your day?"}])
    assert completion.object == "chat.completion"
    (choice,) = completion.choices
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens


async def test_the_user_field_names_the_memory_namespace_and_memories_never_cross_users(api_server):
    alice, bob = new_user(), new_user()
    facts = ["My ginger cat Marmalade sleeps on the piano.", "I am training for a marathon in Kyoto."]
    session = f"cat-{alice}"
    async with client(api_server) as oai:
        for text in facts:  # FLUSH_EVERY=2 on this server: two turns become a memory per message
            await oai.chat.completions.create(model=api_server.model, user=alice, messages=[
                {"role": "user", "content": text}], extra_headers={"X-Session-Id": session})
        docs = await asyncio.to_thread(wait_for_documents, api_server.data_dir, session, 2)
        assert {d["namespace"] for d in docs} == {f"user:{alice}"}
        question = "Where does my ginger cat Marmalade sleep?"
        for user in (alice, bob):
            await oai.chat.completions.create(model=api_server.model, user=user,
                                              messages=[{"role": "user", "content": question}])
    prompts = [p for p in api_server.prompts if p.messages[-1].content == question][-2:]
    alice_prompt, bob_prompt = prompts
    assert docs[0]["id"] in alice_prompt.memory_ids
    assert MEMORY_PREAMBLE in alice_prompt.messages[0].content
    assert bob_prompt.memory_ids == [] and "Marmalade sleeps" not in bob_prompt.messages[0].content


async def test_a_session_id_continues_a_conversation_and_anonymous_requests_share_nothing(api_server):
    session = f"s-{uuid.uuid4().hex[:10]}"
    first, second = f"My name is Su {session}.", "What is my name?"
    async with client(api_server) as oai:
        for text in (first, second):
            await oai.chat.completions.create(model=api_server.model, messages=[{"role": "user", "content": text}],
                                              extra_headers={"X-Session-Id": session})
        anonymous = f"An anonymous question {session}"
        await oai.chat.completions.create(model=api_server.model, messages=[{"role": "user", "content": anonymous}])
        via_metadata = f"Through metadata {session}"
        await oai.chat.completions.create(model=api_server.model, messages=[{"role": "user", "content": via_metadata}],
                                          metadata={"session": session})
    assert [t.user_text for t in history(api_server, session)] == [first, second, via_metadata]
    assert first in [m.content for m in prompt_for(api_server, second).messages], "the buffer carries the session"
    assert [m.role for m in prompt_for(api_server, anonymous).messages] == ["system", "user"]


async def test_models_lists_the_served_model_and_its_context_window(api_server):
    async with client(api_server) as oai:
        models = await oai.models.list()
        (card,) = models.data
        assert card.id == api_server.model and card.object == "model"
        assert card.model_extra["max_model_len"] == 2048
        assert (await oai.models.retrieve(api_server.model)).id == api_server.model
        with pytest.raises(openai.NotFoundError):
            await oai.models.retrieve("gpt-4o")


def _body(**overrides):
    return {"model": "MODEL", "messages": [{"role": "user", "content": "hi"}], **overrides}


BAD_REQUESTS = [
    ("not json", b"{nope", 400, "bad_json", None),
    ("not an object", b"[1, 2]", 400, "invalid_request", None),
    ("no messages", _body(messages=[]), 400, "invalid_request", "messages"),
    ("unknown role", _body(messages=[{"role": "wizard", "content": "hi"}]), 400, "invalid_request",
     "messages.0.role"),
    ("last is not the user", _body(messages=[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]),
     400, "invalid_request", "messages.1.role"),
    ("image part", _body(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]),
     400, "invalid_request", "messages.0.content"),
    ("empty text", _body(messages=[{"role": "user", "content": "  "}]), 400, "empty_text", "messages.0.content"),
    ("too long", _body(messages=[{"role": "user", "content": "x" * 4001}]), 413, "message_too_long",
     "messages.0.content"),
    ("n=2", _body(n=2), 400, "invalid_request", "n"),
    ("stream is a string", _body(stream="yes"), 400, "invalid_request", "stream"),
    ("temperature 9", _body(temperature=9), 400, "invalid_request", "temperature"),
    ("bad user", _body(user="x" * 500), 400, "invalid_request", "user"),
    ("unknown model", _body(model="gpt-4o"), 404, "model_not_found", "model"),
    ("body over the limit", _body(messages=[{"role": "user", "content": "y" * 1_100_000}]), 413, "request_too_large",
     None),
]


@pytest.mark.parametrize(("body", "status", "code", "param"), [b[1:] for b in BAD_REQUESTS],
                         ids=[b[0] for b in BAD_REQUESTS])
async def test_bad_requests_get_openai_shaped_errors_with_stable_codes(api_server, body, status, code, param):
    if isinstance(body, dict) and body["model"] == "MODEL":
        body = {**body, "model": api_server.model}
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.post(f"{api_server.url}/v1/chat/completions", content=content,
                                   headers={"Content-Type": "application/json"})
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code and error["param"] == param and error["message"]
    assert error["type"] == ("not_found_error" if status == 404 else "invalid_request_error")


async def test_the_official_client_raises_its_own_error_classes(api_server):
    async with client(api_server) as oai:
        with pytest.raises(openai.BadRequestError) as bad:
            await oai.chat.completions.create(model=api_server.model, messages=[])
        assert bad.value.code == "invalid_request" and bad.value.param == "messages"
        with pytest.raises(openai.NotFoundError):
            await oai.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])


async def test_a_second_turn_on_a_busy_session_waits_for_the_first(api_server, monkeypatch):
    """Up to API_SESSION_WAIT (3 s here); past it, 409 with Retry-After (tests/backends/test_api_conversations.py)."""
    session = f"busy-{uuid.uuid4().hex[:8]}"
    monkeypatch.setitem(failpoints._ARMED, "generate.before", "sleep:1")
    async with client(api_server) as oai:
        first = asyncio.create_task(oai.chat.completions.create(
            model=api_server.model, messages=[{"role": "user", "content": "first"}],
            extra_headers={"X-Session-Id": session}))
        await asyncio.sleep(0.5)
        second = await oai.chat.completions.create(model=api_server.model,
                                                   messages=[{"role": "user", "content": "second"}],
                                                   extra_headers={"X-Session-Id": session})
        assert second.choices[0].message.content is not None and (await first).choices
    assert [(t.user_text, t.status) for t in history(api_server, session)] == [("first", "complete"),
                                                                              ("second", "complete")]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_a_generation_failure_before_any_token_is_an_http_502_and_the_message_is_kept(api_server, monkeypatch,
                                                                                             stream):
    user = new_user()
    monkeypatch.setitem(failpoints._ARMED, "generate.before", "raise")
    async with client(api_server) as oai:
        with pytest.raises(openai.InternalServerError) as failed:
            response = await oai.chat.completions.create(
                model=api_server.model, messages=[{"role": "user", "content": "this will fail"}], user=user,
                stream=stream)
            if stream:
                [chunk async for chunk in response]
    assert failed.value.status_code == 502 and failed.value.code == "generation_failed"
    (session,) = user_sessions(api_server, user)
    assert [(t.user_text, t.status) for t in history(api_server, session)] == [("this will fail", "failed")]


async def test_a_named_users_conversations_are_read_and_forgotten_over_http_without_tokens(api_server):
    user, side = new_user(), f"side-{uuid.uuid4().hex[:10]}"
    facts = [f"My kestrel {user} nests on the chimney.", f"My kestrel {user} eats beetles."]
    async with client(api_server) as oai:
        first = await oai.chat.completions.create(model=api_server.model, user=user,
                                                  messages=[{"role": "user", "content": facts[0]}])
        # the client sends the conversation so far: FLUSH_EVERY=2, so its two turns become a memory per message
        await oai.chat.completions.create(model=api_server.model, user=user, messages=[
            {"role": "user", "content": facts[0]}, {"role": "assistant", "content": first.choices[0].message.content},
            {"role": "user", "content": facts[1]}])
        await oai.chat.completions.create(model=api_server.model, user=user, extra_headers={"X-Session-Id": side},
                                          messages=[{"role": "user", "content": "a side conversation"}])
    (conversation,) = [s for s in user_sessions(api_server, user) if s != side]
    docs = await asyncio.to_thread(wait_for_documents, api_server.data_dir, conversation, 2)
    async with httpx.AsyncClient(base_url=api_server.url, timeout=30) as http:
        read = await http.get(f"/sessions/{conversation}/history")  # its id names its user
        assert read.status_code == 200, read.text
        assert [t["user"] for t in read.json()["turns"]] == facts
        listed = await http.get("/sessions", params={"user": user})
        assert {s["id"] for s in listed.json()["sessions"]} == {conversation, side}
        # a session the caller named itself: the caller names the user too, as it does on /v1
        assert (await http.get(f"/sessions/{side}/history")).status_code == 403
        assert (await http.get(f"/sessions/{side}/history", params={"user": new_user()})).status_code == 403
        mine = await http.get(f"/sessions/{side}/history", params={"user": user})
        assert [t["user"] for t in mine.json()["turns"]] == ["a side conversation"]

        forgotten = await http.delete(f"/sessions/{conversation}")
        assert forgotten.status_code == 200 and forgotten.json()["memories_removed"] == len(docs)
        assert (await http.get(f"/sessions/{conversation}/history")).status_code == 404
        assert (await http.delete(f"/sessions/{side}", params={"user": user})).status_code == 200
    assert documents(api_server.data_dir, conversation) == []
    assert history(api_server, conversation) == [] and history(api_server, side) == []


@pytest.fixture(scope="module")
def token_server(tiny_model_dir, tmp_path_factory, scripted_endpoint):
    from tests.server.conftest import make_settings
    from tests.support.servers import ServerThread

    # answers come from the scripted endpoint: this test is about who the turn belongs to
    settings = make_settings(tiny_model_dir, tmp_path_factory.mktemp("token-data"), llm_backend="openai",
                             openai_base_url=scripted_endpoint.url, server_tokens="tok-alice-0123456789:alice")
    server = ServerThread(settings).start()
    server.model = str(tiny_model_dir)
    yield server
    server.stop()


async def test_with_server_tokens_the_token_names_the_user_whatever_the_user_field_says(token_server):
    oai = openai.AsyncOpenAI(base_url=f"{token_server.url}/v1", api_key="tok-alice-0123456789", max_retries=0)
    async with oai:
        await oai.chat.completions.create(model=token_server.model, user="mallory",
                                          messages=[{"role": "user", "content": "Who am I?"}])
    (session,) = user_sessions(token_server, "alice")
    assert session.startswith("api:alice:") and user_sessions(token_server, "mallory") == []
    async with openai.AsyncOpenAI(base_url=f"{token_server.url}/v1", api_key="wrong", max_retries=0) as stranger:
        with pytest.raises(openai.AuthenticationError):
            await stranger.chat.completions.create(model=token_server.model,
                                                   messages=[{"role": "user", "content": "hi"}])


async def test_max_tokens_in_the_request_lowers_the_reply_length_and_reports_length(api_server):
    async with client(api_server) as oai:
        reply = await oai.chat.completions.create(
            model=api_server.model, messages=[{"role": "user", "content": "say a lot"}], max_tokens=2,
            temperature=0)
    assert reply.usage.completion_tokens <= 2
    assert reply.choices[0].finish_reason == "length"


def stored_sessions(data_dir, user_text: str) -> list[str]:
    """Sessions in the real store (the server's SQLite file) holding a turn with this message."""
    con = sqlite3.connect(f"file:{data_dir / 'chat.sqlite3'}?mode=ro", uri=True)
    try:
        return [row[0] for row in con.execute("SELECT session FROM turns WHERE user_text = ?", (user_text,))]
    finally:
        con.close()


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_an_anonymous_request_stores_nothing_and_answers_from_the_conversation_it_sends(api_server, stream):
    tag = uuid.uuid4().hex[:10]
    earlier, reply, question = f"My name is Su {tag}.", f"Hello Su {tag}!", f"What is my name? {tag}"
    messages = [{"role": "system", "content": f"Answer as a poet {tag}."},
                {"role": "user", "content": earlier}, {"role": "assistant", "content": reply},
                {"role": "user", "content": question}]
    async with client(api_server) as oai:
        response = await oai.chat.completions.create(model=api_server.model, messages=messages, stream=stream)
        if stream:
            assert [chunk async for chunk in response][-1].choices[0].finish_reason in ("stop", "length")
        else:
            assert response.choices[0].message.content is not None
    await asyncio.sleep(0.2)  # a background flush would have been scheduled by now
    assert stored_sessions(api_server.data_dir, question) == [], "nobody could ever read or delete it"
    assert stored_sessions(api_server.data_dir, earlier) == []
    prompt = prompt_for(api_server, question)
    assert [(m.role, m.content) for m in prompt.messages[1:]] == [("user", earlier), ("assistant", reply),
                                                                 ("user", question)]
    assert prompt.messages[0].content.endswith(f"Answer as a poet {tag}."), "the client's system prompt is kept"


@pytest.fixture(scope="module")
def limited_server(tiny_model_dir, tmp_path_factory, scripted_endpoint):
    from tests.server.conftest import make_settings
    from tests.support.servers import ServerThread

    settings = make_settings(tiny_model_dir, tmp_path_factory.mktemp("limited-data"), llm_backend="openai",
                             openai_base_url=scripted_endpoint.url, turns_per_minute=3, max_turns_per_user=1)
    server = ServerThread(settings).start()
    server.model = str(tiny_model_dir)
    yield server
    server.stop()


async def _anonymous_turn(server, http: httpx.AsyncClient, text: str) -> httpx.Response:
    return await http.post(f"{server.url}/v1/chat/completions",
                           json={"model": server.model, "messages": [{"role": "user", "content": text}]})


async def test_anonymous_requests_from_one_address_share_the_turn_limits(limited_server, scripted, monkeypatch):
    async with httpx.AsyncClient(timeout=30) as http, \
            httpx.AsyncClient(timeout=30, transport=httpx.AsyncHTTPTransport(local_address="127.0.0.2")) as other:
        monkeypatch.setitem(failpoints._ARMED, "generate.before", "sleep:1.5")  # hold the first turn open
        held = asyncio.create_task(_anonymous_turn(limited_server, http, "a slow one"))
        await asyncio.sleep(0.5)
        at_once = await _anonymous_turn(limited_server, http, "and another at the same time")
        assert at_once.status_code == 429 and at_once.json()["error"]["code"] == "too_many_turns"
        assert (await held).status_code == 200
        monkeypatch.delitem(failpoints._ARMED, "generate.before")
        for i in range(2):  # TURNS_PER_MINUTE=3, the held turn included
            assert (await _anonymous_turn(limited_server, http, f"turn {i}")).status_code == 200
        refused = await _anonymous_turn(limited_server, http, "one too many")
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limited"
        assert int(refused.headers["Retry-After"]) >= 1
        assert (await _anonymous_turn(limited_server, other, "from another address")).status_code == 200
