"""The page's handlers against a real server: streaming, Stop, errors, loading and forgetting chats."""

import asyncio

from server import failpoints
from tests.support.servers import free_port
from tests.web.conftest import TOKEN, new_session
from web.client import ChatClient
from web.handlers import ChatHandlers
from web.render import reply_message, user_message

SESSION, CHATBOT, SHOWN, TEXTBOX, SEND, STOP, NEW, FORGET = range(8)


def handlers_for(server) -> ChatHandlers:
    return ChatHandlers(ChatClient(server.ws_url, TOKEN))


async def test_a_turn_streams_into_the_chatbot_and_leaves_the_controls_as_they_were(chat_server):
    handlers, session = handlers_for(chat_server), new_session()
    updates = [u async for u in handlers.respond("Tell me about the moon", session, [])]
    first, last = updates[0], updates[-1]
    assert first[SESSION] == session and first[TEXTBOX] == ""
    assert first[STOP]["visible"] is True and first[SEND]["visible"] is False and first[FORGET]["interactive"] is False
    assert last[STOP]["visible"] is False and last[SEND]["visible"] is True and last[NEW]["interactive"] is True
    reply = (await handlers.client.history(session))[0].response
    assert last[CHATBOT] == last[SHOWN]
    assert last[SHOWN][:2] == [user_message("Tell me about the moon"), reply_message(reply)]
    # all these tests chat as one user, whose earlier turns may come back as memories
    assert all(m["metadata"]["title"].startswith("🧠 Memories used") for m in last[SHOWN][2:])
    assert handlers.running == {}


async def test_stop_ends_the_streaming_turn_on_the_server_and_the_chat_says_it_stopped(chat_server, monkeypatch):
    monkeypatch.setitem(failpoints._ARMED, "generate.before", "sleep:5")
    handlers, session = handlers_for(chat_server), new_session()
    stream = handlers.respond("a long reply", session, [])
    await anext(stream)  # the Stop button is showing now
    stopper = asyncio.create_task(handlers.stop(session))
    updates = [u async for u in stream]
    await stopper
    assert updates[-1][CHATBOT][-1]["metadata"]["title"] == "⏹ Stopped"
    assert (await handlers.client.history(session))[0].status == "interrupted"


async def test_a_server_error_appears_in_the_chat_as_a_readable_message(chat_server):
    handlers = handlers_for(chat_server)
    too_long = "x" * (chat_server.settings.max_message_chars + 1)
    last = [u async for u in handlers.respond(too_long, new_session(), [])][-1]
    assert last[CHATBOT][-1] == {"role": "assistant", "content": f"⚠️ The message has {len(too_long)} characters; "
                                                                 f"the limit is {len(too_long) - 1}"}


async def test_loading_the_page_restores_the_browsers_chat_or_starts_a_new_session(chat_server):
    handlers, session = handlers_for(chat_server), new_session()
    shown = [u async for u in handlers.respond("remember this", session, [])][-1][SHOWN]
    restored, chatbot, state, info = await handlers.restore(session)
    assert (restored, chatbot, state) == (session, shown[:2], shown[:2]) and session in info  # without memories
    fresh, chatbot, _, _ = await handlers.restore(None)
    assert fresh.startswith("web-") and fresh != session and chatbot == []


async def test_forget_deletes_the_chat_on_the_server_and_moves_the_browser_to_a_new_session(chat_server):
    handlers, session = handlers_for(chat_server), new_session()
    [u async for u in handlers.respond("forget me", session, [])]
    new, chatbot, shown, info = await handlers.forget(session)
    assert new != session and chatbot == shown == [] and "Forgot the previous chat" in info
    assert await handlers.client.history(session) == []


async def test_an_unreachable_server_is_explained_on_the_page_instead_of_failing():
    handlers = ChatHandlers(ChatClient(f"ws://127.0.0.1:{free_port()}/ws"))
    session, chatbot, _, info = await handlers.restore(None)
    assert chatbot == [] and "Could not load this chat: cannot reach the chat server" in info
    last = [u async for u in handlers.respond("hello?", session, [])][-1]
    assert last[CHATBOT][-1]["content"].startswith("⚠️ Cannot reach the chat server at ws://127.0.0.1:")
