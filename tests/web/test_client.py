"""web/client.py against a real server on 127.0.0.1: turns, cancel, history, forgetting, errors."""

import asyncio

import pytest

from server import failpoints
from tests.support.memory import wait_for_documents
from tests.support.servers import free_port
from tests.web.conftest import TOKEN, new_session
from web.client import ChatClient
from web.endpoints import http_base
from web.wire import Ended, ServerError, ServerUnreachable, Started, Token


def client_for(server) -> ChatClient:
    return ChatClient(server.ws_url, TOKEN)


async def run_turn(client: ChatClient, session: str, text: str) -> list:
    async with client.turn(session, text) as turn:
        return [event async for event in turn]


async def test_a_turn_streams_started_then_tokens_then_ended_whose_text_is_the_tokens_joined(chat_server):
    events = await run_turn(client_for(chat_server), new_session(), "Tell me a poem about the moon")
    assert isinstance(events[0], Started) and isinstance(events[-1], Ended)
    tokens = [e.text for e in events if isinstance(e, Token)]
    assert tokens and all(isinstance(e, Token) for e in events[1:-1])
    end = events[-1]
    assert end.text == "".join(tokens) and end.turn == events[0].turn and not end.stopped
    assert end.usage["completion_tokens"] > 0


async def test_history_lists_the_sessions_turns_and_a_session_the_server_never_saw_has_none(chat_server):
    client, session = client_for(chat_server), new_session()
    ends = [(await run_turn(client, session, f"message {i}"))[-1] for i in range(2)]
    history = await client.history(session)
    assert [(t.user, t.response, t.status) for t in history] == [
        ("message 0", ends[0].text, "complete"), ("message 1", ends[1].text, "complete")]
    assert [t.turn for t in history] == [e.turn for e in ends]
    assert await client.history(new_session()) == []


async def test_forget_deletes_the_session_on_the_server_and_forgetting_an_unknown_session_is_harmless(chat_server):
    client, session = client_for(chat_server), new_session()
    await run_turn(client, session, "remember me")
    assert await client.forget(session) == 0  # one turn is below FLUSH_EVERY: no memories yet
    assert await client.history(session) == []
    assert await client.forget(new_session()) == 0


async def test_cancel_from_another_task_ends_the_turn_as_stopped_and_the_server_records_it_interrupted(
        chat_server, monkeypatch):
    monkeypatch.setitem(failpoints._ARMED, "generate.before", "sleep:5")  # a turn that is still running
    client, session = client_for(chat_server), new_session()
    async with client.turn(session, "a long answer, please") as turn:
        events = []
        async for event in turn:
            events.append(event)
            if isinstance(event, Started):
                stopper = asyncio.create_task(turn.cancel())  # as the UI's Stop button does
    await stopper
    assert isinstance(events[-1], Ended) and events[-1].stopped
    history = await client.history(session)
    assert history[0].status == "interrupted" and history[0].response == events[-1].text


async def test_cancel_before_the_server_acknowledged_the_message_still_stops_the_turn(chat_server, monkeypatch):
    monkeypatch.setitem(failpoints._ARMED, "generate.before", "sleep:5")
    client, session = client_for(chat_server), new_session()
    async with client.turn(session, "stop at once") as turn:
        await turn.cancel()  # `start` has not arrived yet: the cancel waits for it
        events = [event async for event in turn]
    assert isinstance(events[-1], Ended) and events[-1].stopped
    assert (await client.history(session))[0].status == "interrupted"


async def test_the_memories_a_turn_used_are_reported_in_ended(chat_server):
    client, session = client_for(chat_server), new_session()
    flush_every = chat_server.settings.flush_every
    for i in range(flush_every):
        await run_turn(client, session, f"My cat likes fish, part {i}")
    await asyncio.to_thread(wait_for_documents, chat_server.settings.data_dir, session, flush_every)
    end = (await run_turn(client, session, "What does my cat like?"))[-1]
    assert len(end.memories) == chat_server.settings.memory_top_k


async def test_an_error_frame_raises_a_server_error_with_the_servers_code_and_readable_message(chat_server):
    too_long = "x" * (chat_server.settings.max_message_chars + 1)
    with pytest.raises(ServerError) as caught:
        await run_turn(client_for(chat_server), new_session(), too_long)
    assert caught.value.code == "message_too_long"
    assert str(caught.value).startswith("the message has") and "Traceback" not in str(caught.value)


async def test_a_server_that_is_not_running_gives_a_readable_error_for_turns_and_history():
    client = ChatClient(f"ws://127.0.0.1:{free_port()}/ws")
    refused = r"cannot reach the chat server at ws://127\.0\.0\.1:\d+/ws \(connection refused"
    with pytest.raises(ServerUnreachable, match=refused):
        await run_turn(client, new_session(), "hello?")
    with pytest.raises(ServerUnreachable, match=r"cannot reach the chat server at http://127\.0\.0\.1:\d+ "):
        await client.history(new_session())


def test_the_token_travels_as_a_bearer_header_and_never_in_the_clients_repr():
    client = ChatClient("ws://127.0.0.1:8080/ws", "s3cret-token")
    assert client.headers == {"Authorization": "Bearer s3cret-token"}
    assert "s3cret" not in repr(client)
    assert ChatClient("ws://127.0.0.1:8080/ws").headers == {}


@pytest.mark.parametrize(("ws_url", "http_url"), [
    ("ws://127.0.0.1:8080/ws", "http://127.0.0.1:8080"),
    ("wss://chat.example.org/ws", "https://chat.example.org"),
    ("wss://example.org/dongpo/ws/", "https://example.org/dongpo"),
    ("ws://[::1]:9000/ws?x=1", "http://[::1]:9000"),
])
def test_the_http_endpoints_are_found_beside_the_websocket(ws_url, http_url):
    assert http_base(ws_url) == http_url


@pytest.mark.parametrize("bad", ["http://127.0.0.1:8080/ws", "127.0.0.1:8080", "ws:///ws"])
def test_a_server_url_that_is_not_a_websocket_url_is_refused_with_an_explanation(bad):
    with pytest.raises(ValueError, match="must look like ws://"):
        http_base(bad)


async def test_without_the_api_token_the_server_refuses_and_the_client_says_why(chat_server):
    client = ChatClient(chat_server.ws_url)
    with pytest.raises(ServerError, match="refused the connection: authentication required"):
        await run_turn(client, new_session(), "let me in")
    with pytest.raises(ServerError, match="authentication required"):
        await client.history(new_session())
    with pytest.raises(ServerError, match="invalid token"):
        await run_turn(ChatClient(chat_server.ws_url, "not-the-token-at-all"), new_session(), "let me in")
